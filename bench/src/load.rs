//! The load generator: a fixed number of workers, each sending one request
//! at a time, until a deadline or a request count is reached.
//!
//! It never retries a request: a request that fails is counted by kind and
//! the worker moves on to the next one. Opening a new connection because the
//! previous one was closed *before* a request was written on it is not a
//! retry (every HTTP client does it); losing a request written on a
//! connection the server then closed is a failure, and that is exactly what
//! the drills look for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::failure::{FailureKind, Failures};

/// HTTP/2 streams that share one connection in keep-alive mode.
const H2_STREAMS_PER_CONN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connections are reused; HTTP/2 multiplexes `H2_STREAMS_PER_CONN`
    /// workers on one connection.
    KeepAlive,
    /// One connection per request (`Connection: close` on HTTP/1.1).
    ConnPerRequest,
}

/// What a successful response must look like.
#[derive(Debug, Clone)]
pub enum Expect {
    /// This exact body.
    Body(Bytes),
    /// Any body, as long as it equals the `x-version` header: both come
    /// from one config generation (the torn-read check).
    VersionEcho,
    /// Any 2xx response.
    Any,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub protocol: Protocol,
    pub mode: Mode,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: u64,
    /// Per request, connect included.
    pub timeout: Duration,
    pub expect: Expect,
    /// Keep one sample per request for a timeline.
    pub record_samples: bool,
    /// Zero point of sample times, shared by runs that are plotted together.
    pub origin: Instant,
}

impl LoadSpec {
    pub fn new(addr: SocketAddr, protocol: Protocol, mode: Mode, concurrency: usize) -> Self {
        LoadSpec {
            addr,
            path: "/".to_string(),
            protocol,
            mode,
            concurrency,
            duration: Duration::from_secs(1),
            max_requests: u64::MAX,
            timeout: Duration::from_secs(5),
            expect: Expect::Any,
            record_samples: false,
            origin: Instant::now(),
        }
    }
}

/// One completed request, for timelines.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the request finished, from `LoadSpec::origin`.
    pub done_at: Duration,
    pub latency_us: u64,
    pub ok: bool,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Failures,
    /// Latency of successful requests, in microseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// When the last successful response was complete.
    pub last_ok_at: Option<Instant>,
    pub samples: Vec<Sample>,
    /// Distinct bodies seen with `Expect::VersionEcho` (proof that reloads
    /// were served, not only accepted).
    pub versions_seen: usize,
}

impl LoadReport {
    fn empty() -> Self {
        LoadReport {
            ok: 0,
            failures: Failures::default(),
            latency: new_histogram(),
            elapsed: Duration::ZERO,
            last_ok_at: None,
            samples: Vec::new(),
            versions_seen: 0,
        }
    }

    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// Adds another run's figures (runs that went on at the same time).
    pub fn merge(&mut self, other: LoadReport) {
        self.ok += other.ok;
        self.failures.merge(&other.failures);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.elapsed = self.elapsed.max(other.elapsed);
        self.last_ok_at = self.last_ok_at.max(other.last_ok_at);
        self.samples.extend(other.samples);
        self.versions_seen = self.versions_seen.max(other.versions_seen);
    }
}

/// 1 µs to 60 s at three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

struct Shared {
    spec: LoadSpec,
    issued: AtomicU64,
    deadline: Instant,
    /// HTTP/2 keep-alive connections, shared by groups of workers.
    h2_slots: Vec<Mutex<Option<http2::SendRequest<Empty<Bytes>>>>>,
}

impl Shared {
    /// Takes the right to send one more request, if time and count allow.
    fn next_ticket(&self) -> bool {
        Instant::now() < self.deadline
            && self.issued.fetch_add(1, Ordering::Relaxed) < self.spec.max_requests
    }
}

/// Runs the load and returns once every worker is done: the deadline or the
/// count is reached and every request in flight has finished (each bounded
/// by the request timeout).
pub async fn run(spec: LoadSpec) -> LoadReport {
    let started = Instant::now();
    let slots = match (spec.protocol, spec.mode) {
        (Protocol::H2c, Mode::KeepAlive) => spec.concurrency.div_ceil(H2_STREAMS_PER_CONN),
        _ => 0,
    };
    let shared = Arc::new(Shared {
        deadline: started + spec.duration,
        issued: AtomicU64::new(0),
        h2_slots: (0..slots).map(|_| Mutex::new(None)).collect(),
        spec,
    });
    let workers: Vec<_> = (0..shared.spec.concurrency)
        .map(|id| tokio::spawn(worker(shared.clone(), id)))
        .collect();
    let mut report = LoadReport::empty();
    let mut versions = std::collections::HashSet::new();
    for handle in workers {
        match handle.await {
            Ok(stats) => {
                versions.extend(stats.versions);
                report.merge(stats.report);
            }
            // A worker only panics on a harness bug; count it rather than hide it.
            Err(_) => report.failures.add(FailureKind::Other),
        }
    }
    report.elapsed = started.elapsed();
    report.versions_seen = versions.len();
    report
}

struct WorkerStats {
    report: LoadReport,
    versions: std::collections::HashSet<Bytes>,
}

/// A connection a worker holds between requests.
enum Held {
    None,
    Http1(http1::SendRequest<Empty<Bytes>>),
}

async fn worker(shared: Arc<Shared>, id: usize) -> WorkerStats {
    let spec = &shared.spec;
    let mut stats = WorkerStats {
        report: LoadReport::empty(),
        versions: Default::default(),
    };
    let mut held = Held::None;
    while shared.next_ticket() {
        let begun = Instant::now();
        let outcome =
            match tokio::time::timeout(spec.timeout, one_request(&shared, id, &mut held)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    held = Held::None;
                    Err(FailureKind::Timeout)
                }
            };
        let done = Instant::now();
        let latency_us = (done - begun).as_micros() as u64;
        let outcome =
            outcome.and_then(|(status, version, body)| check(spec, status, version, body));
        let ok = match outcome {
            Ok(seen) => {
                stats.report.ok += 1;
                stats.report.last_ok_at = Some(done);
                // Values beyond the histogram's bounds are clamped, not lost.
                stats.report.latency.saturating_record(latency_us.max(1));
                if let Some(version) = seen {
                    stats.versions.insert(version);
                }
                true
            }
            Err(kind) => {
                stats.report.failures.add(kind);
                held = Held::None;
                false
            }
        };
        if spec.record_samples {
            stats.report.samples.push(Sample {
                done_at: done.saturating_duration_since(spec.origin),
                latency_us,
                ok,
            });
        }
    }
    stats
}

/// Status, `x-version` header, body.
type Response = (StatusCode, Option<Bytes>, Bytes);

fn check(
    spec: &LoadSpec,
    status: StatusCode,
    version: Option<Bytes>,
    body: Bytes,
) -> Result<Option<Bytes>, FailureKind> {
    if !status.is_success() {
        return Err(FailureKind::Non2xx);
    }
    match &spec.expect {
        Expect::Any => Ok(None),
        Expect::Body(expected) if *expected == body => Ok(None),
        Expect::Body(_) => Err(FailureKind::WrongBody),
        Expect::VersionEcho if version.as_ref() == Some(&body) => Ok(Some(body)),
        Expect::VersionEcho => Err(FailureKind::Torn),
    }
}

async fn one_request(shared: &Shared, id: usize, held: &mut Held) -> Result<Response, FailureKind> {
    let spec = &shared.spec;
    match (spec.protocol, spec.mode) {
        (Protocol::Http1, Mode::KeepAlive) => {
            let reused = match std::mem::replace(held, Held::None) {
                Held::Http1(mut sender) => sender.ready().await.is_ok().then_some(sender),
                Held::None => None,
            };
            // A connection the server closed while idle is replaced before
            // anything is written on it.
            let mut sender = match reused {
                Some(sender) => sender,
                None => connect_http1(spec.addr).await?,
            };
            let (response, keep) = send_http1(&mut sender, spec, false).await?;
            if keep {
                *held = Held::Http1(sender);
            }
            Ok(response)
        }
        (Protocol::Http1, Mode::ConnPerRequest) => {
            let mut sender = connect_http1(spec.addr).await?;
            Ok(send_http1(&mut sender, spec, true).await?.0)
        }
        (Protocol::H2c, Mode::KeepAlive) => {
            let slot = &shared.h2_slots[id % shared.h2_slots.len()];
            let mut sender = {
                let mut guard = slot.lock().await;
                match guard.as_ref() {
                    Some(sender) if !sender.is_closed() => sender.clone(),
                    _ => {
                        let fresh = connect_h2(spec.addr).await?;
                        *guard = Some(fresh.clone());
                        fresh
                    }
                }
            };
            send_h2(&mut sender, spec).await
        }
        (Protocol::H2c, Mode::ConnPerRequest) => {
            let mut sender = connect_h2(spec.addr).await?;
            send_h2(&mut sender, spec).await
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<TokioIo<TcpStream>, FailureKind> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| FailureKind::of_connect(&e))?;
    // Requests are single small writes; without this, Nagle can hold the
    // next request behind the previous response's ACK.
    let _ = stream.set_nodelay(true);
    Ok(TokioIo::new(stream))
}

async fn connect_http1(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>, FailureKind> {
    let io = connect(addr).await?;
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn connect_h2(addr: SocketAddr) -> Result<http2::SendRequest<Empty<Bytes>>, FailureKind> {
    let io = connect(addr).await?;
    let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?;
    tokio::spawn(conn);
    Ok(sender)
}

fn request(spec: &LoadSpec, close: bool) -> Result<Request<Empty<Bytes>>, FailureKind> {
    let mut builder = Request::get(spec.path.as_str());
    if spec.protocol == Protocol::Http1 {
        builder = builder.header(header::HOST, spec.addr.to_string());
    } else {
        builder = builder.uri(format!("http://{}{}", spec.addr, spec.path));
    }
    if close {
        builder = builder.header(header::CONNECTION, "close");
    }
    builder.body(Empty::new()).map_err(|_| FailureKind::Other)
}

/// Sends one request; also says whether the connection may be reused.
async fn send_http1(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    spec: &LoadSpec,
    close: bool,
) -> Result<(Response, bool), FailureKind> {
    let res = sender
        .send_request(request(spec, close)?)
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?;
    let keep = !close
        && !res
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?
        .to_bytes();
    let version = parts
        .headers
        .get("x-version")
        .map(|v| Bytes::copy_from_slice(v.as_bytes()));
    Ok(((parts.status, version, body), keep))
}

async fn send_h2(
    sender: &mut http2::SendRequest<Empty<Bytes>>,
    spec: &LoadSpec,
) -> Result<Response, FailureKind> {
    sender
        .ready()
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?;
    let res = sender
        .send_request(request(spec, false)?)
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| FailureKind::of_hyper(&e))?
        .to_bytes();
    let version = parts
        .headers
        .get("x-version")
        .map(|v| Bytes::copy_from_slice(v.as_bytes()));
    Ok((parts.status, version, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expect: Expect) -> LoadSpec {
        let mut spec = LoadSpec::new(
            ([127, 0, 0, 1], 1).into(),
            Protocol::Http1,
            Mode::KeepAlive,
            1,
        );
        spec.expect = expect;
        spec
    }

    #[test]
    fn torn_responses_are_told_apart_from_wrong_bodies() {
        let v1 = Bytes::from_static(b"v1");
        let echo = spec(Expect::VersionEcho);
        assert_eq!(
            check(&echo, StatusCode::OK, Some(v1.clone()), v1.clone()),
            Ok(Some(v1.clone()))
        );
        assert_eq!(
            check(
                &echo,
                StatusCode::OK,
                Some(v1.clone()),
                Bytes::from_static(b"v2")
            ),
            Err(FailureKind::Torn)
        );
        assert_eq!(
            check(&echo, StatusCode::OK, None, v1.clone()),
            Err(FailureKind::Torn)
        );
        let body = spec(Expect::Body(v1.clone()));
        assert_eq!(
            check(&body, StatusCode::OK, None, Bytes::new()),
            Err(FailureKind::WrongBody)
        );
        assert_eq!(
            check(&body, StatusCode::SERVICE_UNAVAILABLE, None, v1),
            Err(FailureKind::Non2xx)
        );
    }

    /// An in-process hyper server answering `v1` in body and header.
    async fn echo_server() -> SocketAddr {
        use hyper_util::server::conn::auto;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        let res = http::Response::builder()
                            .header("x-version", "v1")
                            .body(http_body_util::Full::new(Bytes::from_static(b"v1")));
                        res.map_err(|e| e.to_string())
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn every_protocol_and_mode_serves_exactly_the_count() {
        let addr = echo_server().await;
        for protocol in [Protocol::Http1, Protocol::H2c] {
            for mode in [Mode::KeepAlive, Mode::ConnPerRequest] {
                let mut spec = LoadSpec::new(addr, protocol, mode, 4);
                spec.max_requests = 40;
                spec.expect = Expect::VersionEcho;
                spec.record_samples = true;
                let report = run(spec).await;
                assert_eq!(report.failures.describe(), "none", "{protocol:?} {mode:?}");
                assert_eq!(report.ok, 40, "{protocol:?} {mode:?}");
                assert_eq!(report.samples.len(), 40);
                assert_eq!(report.versions_seen, 1);
            }
        }
    }

    /// Nothing listens on the port: every request is one refused connect,
    /// and the count bound holds.
    #[tokio::test]
    async fn refused_connects_are_counted_once_per_request() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mut spec = LoadSpec::new(
            ([127, 0, 0, 1], port).into(),
            Protocol::Http1,
            Mode::KeepAlive,
            2,
        );
        spec.max_requests = 10;
        let report = run(spec).await;
        assert_eq!(report.ok, 0);
        assert_eq!(report.failures.get(FailureKind::ConnectRefused), 10);
        assert_eq!(report.failures.total(), 10);
    }
}
