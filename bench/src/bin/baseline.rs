//! The baseline server: hyper's HTTP/1.1 + h2c auto builder on the same
//! tokio multi-thread runtime as grace (`new_multi_thread().enable_all()`),
//! with no lifecycle at all: no drain tracking, no reload, no signals.
//!
//! Usage: `grace-bench-baseline [ADDR]` (default `127.0.0.1:0`). It prints
//! `listening on ADDR` on stderr once bound, like grace, so the harness
//! starts both the same way, and answers every path with the body grace's
//! `/` serves in the steady scenario.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Must match the `message` the harness gives grace, so both send the same bytes.
const BODY: &str = "Before hot reload";

fn main() -> std::process::ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: bad listen address: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(71);
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(69)
        }
    }
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    eprintln!("baseline ready");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Per-connection errors (a peer that reset before accept) and
            // fd exhaustion alike: keep accepting, a benchmark must not stop.
            Err(_) => continue,
        };
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(respond))
                .await;
        });
    }
}

async fn respond(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(res)
}
