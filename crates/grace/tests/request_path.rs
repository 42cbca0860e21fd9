//! What serving one request costs the server's threads, counted
//! deterministically: heap allocations per
//! keep-alive HTTP/1 request, with the request tallies on. Counting instead
//! of timing: the bound holds on a loaded machine, and a new per-request
//! allocation (a timer, a boxed future, a cloned map) shows at once.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use grace::metrics::RequestStats;
use grace::{DrainSettings, Listener, ShutdownTrigger};
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

// Counts every thread's allocations: the client below makes none per
// request (one buffer, reused), so what is counted is the server's.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn allocations() -> usize {
    let stats = GLOBAL.stats();
    stats.allocations + stats.reallocations
}

const BODY: &str = "Before hot reload";

/// Sends one keep-alive request and reads its whole response.
fn get(stream: &mut TcpStream, buf: &mut [u8]) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "the server closed the connection");
        got += n;
        if buf[..got].ends_with(BODY.as_bytes()) {
            return;
        }
    }
}

fn respond() -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Allocations per request, after a warm-up.
fn allocations_per_request(addr: SocketAddr) -> f64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..200 {
        get(&mut stream, &mut buf);
    }
    const REQUESTS: u64 = 2000;
    let before = allocations();
    for _ in 0..REQUESTS {
        get(&mut stream, &mut buf);
    }
    (allocations() - before) as f64 / REQUESTS as f64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The same service on hyper's HTTP/1 connection alone, on its defaults:
/// what a user writes from hyper's examples.
fn plain_hyper() -> f64 {
    let runtime = runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service =
                    service_fn(|_req: Request<Incoming>| async { Ok::<_, Infallible>(respond()) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    allocations_per_request(addr)
}

#[test]
fn a_keep_alive_http1_request_allocates_no_more_than_in_plain_hyper() {
    let hyper = plain_hyper();
    let runtime = runtime();
    let trigger = ShutdownTrigger::new();
    let shutdown = trigger.watcher();
    let listener = runtime
        .block_on(async { Listener::bind("127.0.0.1:0".parse().unwrap()) })
        .unwrap();
    let addr = listener.local_addr();
    let service = service_fn(|_req: Request<Incoming>| async { Ok::<_, Infallible>(respond()) });
    let _running = runtime.block_on(async {
        grace::serve(vec![listener], service, shutdown)
            .observe(RequestStats::new())
            .start()
    });
    let grace = allocations_per_request(addr);
    eprintln!("allocations per request: plain hyper {hyper:.2}, grace {grace:.2}");
    assert!(
        grace <= hyper + 0.05,
        "{grace:.2} allocations per keep-alive request; plain hyper makes {hyper:.2}"
    );

    let outcome = runtime.block_on(async {
        trigger.begin(DrainSettings::default());
        shutdown.wait().await
    });
    assert!(outcome.is_clean(), "{outcome:?}");
}
