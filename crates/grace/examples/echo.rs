//! A non-HTTP TCP service (an echo server) using the lifecycle pieces
//! directly: listener hand-off on SIGUSR2, drain on SIGTERM.
//!
//! ```sh
//! cargo run --example echo -- 127.0.0.1:7000
//! nc localhost 7000
//! ```

use std::sync::Arc;

use grace::handoff::{Handoff, Inherited};
use grace::signals::Signals;
use grace::{DrainSettings, Lifecycle, Listener, Reloadable, Reloader, Shutdown, ShutdownTrigger};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    // Before the runtime starts its threads: the environment is read and
    // cleared, and the sockets owned, while no other thread can look.
    let inherited = Inherited::take()?;
    tokio::runtime::Runtime::new()?.block_on(serve(inherited))
}

async fn serve(mut inherited: Inherited) -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into())
        .parse()?;

    let signals = Signals::install()?;
    let listener = match inherited.listener("echo", addr) {
        Some(listener) => listener?,
        None => Listener::bind(addr)?.with_name("echo"),
    };
    let handoff = Arc::new(Handoff::from_current_process()?);
    handoff.register(&listener)?;
    eprintln!("listening on {}", listener.local_addr());

    // The lifecycle keeps the trigger; the accept loop and the connections
    // only watch.
    let trigger = ShutdownTrigger::new();
    let accepting = trigger.watcher().clone();
    trigger.watcher().spawn(async move {
        loop {
            tokio::select! {
                // Dropping the listener at the drain closes our copy.
                _ = accepting.draining() => break,
                Ok((stream, _)) = listener.accept() => {
                    accepting.spawn(echo(stream, accepting.clone()));
                }
            }
        }
    });
    if let Some(parent) = inherited.take_ready_pipe() {
        parent.notify()?;
    }

    // Nothing to reload in an echo server: a unit configuration.
    let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
    let outcome = Lifecycle::new(reloader, trigger, |_: &()| DrainSettings::default())
        .with_handoff(handoff)
        .run(signals)
        .await;
    std::process::exit(if outcome.is_clean() { 0 } else { 75 });
}

/// Echoes lines until the client closes, or until the drain: then the line
/// under way is finished and the connection closed.
async fn echo(stream: TcpStream, shutdown: Shutdown) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = shutdown.draining() => break,
        };
        match line {
            Ok(Some(line)) => {
                if write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            _ => break,
        }
    }
}
