//! An axum service with reloadable state, graceful drain and zero-downtime
//! upgrade.
//!
//! ```sh
//! echo hello > greeting.txt
//! cargo run --example axum -- greeting.txt 127.0.0.1:3000
//! curl localhost:3000/                  # hello
//! echo bonjour > greeting.txt; kill -HUP <pid>
//! kill -USR2 <pid>                      # same sockets, new process
//! kill -TERM <pid>                      # drain and exit 0
//! ```

use axum::{extract::State, routing::get, Router};
use grace::{Reloadable, Server};

async fn hello(State(greeting): State<Reloadable<String>>) -> String {
    greeting.load().to_string()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "greeting.txt".into());
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()?;

    // The lifecycle: a loader, an address, the router. That is all.
    let load = move || std::fs::read_to_string(&path).map(|text| text.trim().to_owned());
    let outcome = Server::new(load)
        .listen(addr)
        .run_tower_blocking(|greeting, _shutdown| {
            Router::new().route("/", get(hello)).with_state(greeting)
        })?;
    std::process::exit(if outcome.is_clean() { 0 } else { 75 });
}
