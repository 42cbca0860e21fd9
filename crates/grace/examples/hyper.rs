//! A plain hyper service under grace's lifecycle.
//!
//! ```sh
//! echo hello > greeting.txt
//! cargo run --example hyper -- greeting.txt 127.0.0.1:3000
//! curl localhost:3000/readyz     # ready (503 once a shutdown began)
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{service::service_fn, Response};

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

    let load = move || std::fs::read_to_string(&path);
    let outcome = grace::Server::new(load)
        .listen(addr)
        .run_blocking(|greeting, shutdown| {
            // /healthz and /readyz, answered as the grace binary does.
            let health = grace::health::Health::new(&shutdown);
            service_fn(move |request| {
                let response = health.answer(&request).unwrap_or_else(|| {
                    // One snapshot per request: a reload never tears a response.
                    let body = Bytes::from(greeting.load().trim().to_owned());
                    Response::new(Full::new(body))
                });
                async move { Ok::<_, Infallible>(response) }
            })
        })?;
    std::process::exit(if outcome.is_clean() { 0 } else { 75 });
}
