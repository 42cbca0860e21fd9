//! What the two baseline servers share: the route and response of grace's
//! steady config (`/` answers the message as `text/plain; charset=utf-8`,
//! anything else 404, as grace does), the command line, the multi-thread
//! runtime grace uses (`new_multi_thread().enable_all()`) and the accept
//! loop. They differ only in the hyper-util builder they serve with.
//!
//! Usage: `BINARY [ADDR]` (default `127.0.0.1:0`). The server prints
//! `listening on ADDR` on stderr once bound, like grace, so the harness
//! starts every server the same way.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Must match the `message` the harness gives grace, so both send the same bytes.
const BODY: &str = "Before hot reload";

/// Parses the address, starts the runtime and serves every connection
/// with `builder` until killed.
pub fn main_with(builder: auto::Builder<TokioExecutor>) -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: bad listen address: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(serve(addr, Arc::new(builder))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(69)
        }
    }
}

async fn serve(
    addr: SocketAddr,
    builder: Arc<auto::Builder<TokioExecutor>>,
) -> std::io::Result<()> {
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
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(respond))
                .await;
        });
    }
}

async fn respond(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/" => (StatusCode::OK, BODY),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(res)
}
