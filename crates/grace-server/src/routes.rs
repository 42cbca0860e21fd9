//! What the server answers: configured routes, and the health and readiness
//! probes.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::Service;

use crate::config::{Config, Routes, METRICS_PATH};
use crate::metrics::Metrics;
use grace::{Reloadable, Shutdown};

/// The server's HTTP service. Each request reads one configuration snapshot
/// and builds its whole response from it, so a reload can never mix two
/// generations in one response.
#[derive(Clone)]
pub struct App {
    config: Reloadable<Config>,
    shutdown: Shutdown,
    // Served at /metrics when set.
    metrics: Option<Arc<Metrics>>,
    // The admin listener answers only grace's own endpoints.
    admin: bool,
    // Tells this App's routes from another's in a thread's copy (see
    // `route`): clones share it, as they share the configuration.
    id: u64,
}

impl App {
    pub fn new(config: Reloadable<Config>, shutdown: Shutdown) -> Self {
        App {
            config,
            shutdown,
            metrics: None,
            admin: false,
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
        }
    }

    /// Serves `metrics` at `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Only grace's own endpoints: `/metrics`, `/healthz`, `/readyz`.
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    fn respond(&self, path: &str) -> (Response<Full<Bytes>>, Duration) {
        match path {
            METRICS_PATH if self.metrics.is_some() => (
                self.metrics.as_ref().map_or_else(
                    || plain(StatusCode::NOT_FOUND, "not found\n"),
                    |m| m.respond(),
                ),
                Duration::ZERO,
            ),
            "/healthz" => (plain(StatusCode::OK, "ok\n"), Duration::ZERO),
            "/readyz" if self.shutdown.is_ready() => {
                (plain(StatusCode::OK, "ready\n"), Duration::ZERO)
            }
            "/readyz" => (
                plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
                Duration::ZERO,
            ),
            _ if self.admin => (plain(StatusCode::NOT_FOUND, "not found\n"), Duration::ZERO),
            _ => self.route(path),
        }
    }

    /// A configured route's response, from this thread's copy of the
    /// current generation's routes.
    ///
    /// Each response clones the route's body and header values, and a clone
    /// of a shared buffer adds to its reference count: with one copy for
    /// every thread, that count's cache line would move between the cores on
    /// every request. A thread copies a generation's routes the first time
    /// it answers from it.
    fn route(&self, path: &str) -> (Response<Full<Bytes>>, Duration) {
        let current = self.config.read();
        LOCAL.with_borrow_mut(|local| {
            let local = match local {
                Some(copy) if copy.app == self.id && copy.generation == current.generation() => {
                    copy
                }
                stale => stale.insert(LocalRoutes {
                    app: self.id,
                    generation: current.generation(),
                    routes: current.routes.for_one_thread(),
                }),
            };
            match local.routes.get(path) {
                Some(route) => {
                    // Room for what hyper adds to an HTTP/2 response
                    // (`date`, `content-length`), and for the next request's
                    // head: HTTP/1 reuses a response's map for it. A map too
                    // small for either is grown, rehashed, per request.
                    let mut headers =
                        HeaderMap::with_capacity((route.headers.len() + 2).max(HEADER_ROOM));
                    for (name, value) in route.headers {
                        headers.append(name.clone(), value.clone());
                    }
                    let mut res = Response::new(Full::new(route.body));
                    *res.status_mut() = route.status;
                    *res.headers_mut() = headers;
                    (res, route.delay)
                }
                None => (plain(StatusCode::NOT_FOUND, "not found\n"), Duration::ZERO),
            }
        })
    }
}

/// Header fields a route's response map has room for at least: what hyper
/// allocates for a map's first field, and so what a plain hyper service's
/// response map gets.
const HEADER_ROOM: usize = 6;

thread_local! {
    /// This thread's copy of the routes it last answered from; see
    /// [`App::route`].
    static LOCAL: RefCell<Option<LocalRoutes>> = const { RefCell::new(None) };
}

struct LocalRoutes {
    // Which `App` (so which configuration) and generation it was copied
    // from: holding no reference, it keeps no old generation alive.
    app: u64,
    generation: u64,
    routes: Routes,
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl<B> Service<Request<B>> for App {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Reply;

    fn call(&self, req: Request<B>) -> Reply {
        let (response, delay) = self.respond(req.uri().path());
        Reply {
            response: Some(response),
            delay: (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay))),
        }
    }
}

/// A response, ready now or after the route's delay. Only delayed routes
/// allocate a timer.
pub struct Reply {
    response: Option<Response<Full<Bytes>>>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for Reply {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(delay) = self.delay.as_mut() {
            std::task::ready!(delay.as_mut().poll(cx));
            self.delay = None;
        }
        Poll::Ready(Ok(self
            .response
            .take()
            .expect("invariant: Reply polled after completion")))
    }
}
