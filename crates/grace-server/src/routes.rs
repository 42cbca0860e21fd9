//! What the server answers: configured routes, and the health and readiness
//! probes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::Service;

use std::sync::Arc;

use crate::config::{Config, METRICS_PATH};
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
}

impl App {
    pub fn new(config: Reloadable<Config>, shutdown: Shutdown) -> Self {
        App {
            config,
            shutdown,
            metrics: None,
            admin: false,
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

    fn respond(&self, path: &str) -> (Response<Full<Bytes>>, std::time::Duration) {
        match path {
            METRICS_PATH if self.metrics.is_some() => (
                self.metrics.as_ref().map_or_else(
                    || plain(StatusCode::NOT_FOUND, "not found\n"),
                    |m| m.respond(),
                ),
                Default::default(),
            ),
            "/healthz" => (plain(StatusCode::OK, "ok\n"), Default::default()),
            "/readyz" if self.shutdown.is_ready() => {
                (plain(StatusCode::OK, "ready\n"), Default::default())
            }
            "/readyz" => (
                plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
                Default::default(),
            ),
            _ if self.admin => (
                plain(StatusCode::NOT_FOUND, "not found\n"),
                Default::default(),
            ),
            _ => {
                let snapshot = self.config.read();
                match snapshot.routes.get(path) {
                    Some(route) => {
                        let mut res = Response::new(Full::new(route.body));
                        *res.status_mut() = route.status;
                        // Room for the `date` hyper adds to HTTP/2 responses:
                        // a clone has none, and growing it costs two more
                        // allocations per response.
                        let headers = res.headers_mut();
                        headers.reserve(route.headers.len() + 1);
                        headers.extend(route.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                        (res, route.delay)
                    }
                    None => (
                        plain(StatusCode::NOT_FOUND, "not found\n"),
                        Default::default(),
                    ),
                }
            }
        }
    }
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
