//! Ready-made liveness and readiness probes, the ones the `grace` binary
//! answers: `GET /healthz` is `200 ok` while the process runs, `GET /readyz`
//! is `200 ready` until a shutdown begins and `503 shutting down` from then
//! on, so a load balancer or Kubernetes stops sending new traffic while the
//! requests already here finish.
//!
//! * [`Health::answer`]: a plain function for a hyper `service_fn` (or any
//!   service): `Some(response)` for the two paths, `None` for the rest.
//! * `HealthLayer` / `HealthService` (feature `tower`): a tower layer in
//!   front of any service with a body that converts from `&'static str`
//!   (axum's `Body`, `Full<Bytes>`, `String`), such as an axum `Router`.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use grace::{health::Health, ShutdownTrigger};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let trigger = ShutdownTrigger::new(); // the lifecycle's, in a real server
//! let health = Health::new(trigger.watcher());
//! let probe = |path: &str| {
//!     let req = Request::get(path).body(()).unwrap();
//!     health.answer::<_, Full<Bytes>>(&req).map(|res| res.status())
//! };
//! assert_eq!(probe("/readyz"), Some(StatusCode::OK));
//! assert_eq!(probe("/"), None); // the application's
//! trigger.begin(grace::DrainSettings::default());
//! assert_eq!(probe("/readyz"), Some(StatusCode::SERVICE_UNAVAILABLE));
//! assert_eq!(probe("/healthz"), Some(StatusCode::OK)); // alive, draining
//! # }
//! ```

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::drain::Shutdown;

/// The liveness probe's path.
pub const HEALTH_PATH: &str = "/healthz";
/// The readiness probe's path.
pub const READY_PATH: &str = "/readyz";

/// Answers `/healthz` and `/readyz` from a readiness source: a
/// [`Shutdown`], or any function. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("ready", &(self.ready)())
            .finish()
    }
}

impl Health {
    /// Ready until `shutdown` begins (see [`Shutdown::is_ready`]).
    pub fn new(shutdown: &Shutdown) -> Health {
        let shutdown = shutdown.clone();
        Health::from_fn(move || shutdown.is_ready())
    }

    /// Ready while `ready` returns true: to add conditions of your own
    /// (a database reachable, a cache warm) to the shutdown's.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use grace::{health::Health, ShutdownTrigger};
    ///
    /// let trigger = ShutdownTrigger::new();
    /// let shutdown = trigger.watcher();
    /// let warm = Arc::new(AtomicBool::new(false));
    /// let (s, w) = (shutdown.clone(), warm.clone());
    /// let health = Health::from_fn(move || s.is_ready() && w.load(Ordering::Relaxed));
    /// assert!(!health.is_ready());
    /// warm.store(true, Ordering::Relaxed);
    /// assert!(health.is_ready());
    /// ```
    pub fn from_fn(ready: impl Fn() -> bool + Send + Sync + 'static) -> Health {
        Health {
            ready: Arc::new(ready),
        }
    }

    /// What `/readyz` reports now.
    pub fn is_ready(&self) -> bool {
        (self.ready)()
    }

    /// The probe's answer when `req` asks for `/healthz` or `/readyz`
    /// (any method), `None` otherwise: the request is the application's.
    /// Plain text, `Cache-Control: no-store`.
    pub fn answer<Req, B>(&self, req: &Request<Req>) -> Option<Response<B>>
    where
        B: From<&'static str>,
    {
        let (status, body) = match req.uri().path() {
            HEALTH_PATH => (StatusCode::OK, "ok\n"),
            READY_PATH if self.is_ready() => (StatusCode::OK, "ready\n"),
            READY_PATH => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            _ => return None,
        };
        let mut res = Response::new(B::from(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // A cached "ready" would outlive the shutdown it should announce.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(res)
    }

    /// A layer answering the probes in front of a tower service (feature
    /// `tower`).
    #[cfg(feature = "tower")]
    pub fn layer(&self) -> HealthLayer {
        HealthLayer {
            health: self.clone(),
        }
    }
}

#[cfg(feature = "tower")]
pub use tower_support::{HealthFuture, HealthLayer, HealthService};

#[cfg(feature = "tower")]
mod tower_support {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http::{Request, Response};

    use super::Health;

    /// Answers `/healthz` and `/readyz` before the inner service sees the
    /// request (feature `tower`); made by [`Health::layer`].
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use grace::{health::Health, ShutdownTrigger};
    ///
    /// let trigger = ShutdownTrigger::new();
    /// let shutdown = trigger.watcher();
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .layer(Health::new(&shutdown).layer());
    /// # drop(app);
    /// ```
    #[derive(Debug, Clone)]
    pub struct HealthLayer {
        pub(super) health: Health,
    }

    impl<S> tower_layer::Layer<S> for HealthLayer {
        type Service = HealthService<S>;

        fn layer(&self, inner: S) -> HealthService<S> {
            HealthService {
                inner,
                health: self.health.clone(),
            }
        }
    }

    /// A service answering the probes, and passing every other request to
    /// its inner service.
    #[derive(Debug, Clone)]
    pub struct HealthService<S> {
        inner: S,
        health: Health,
    }

    impl<S> HealthService<S> {
        /// `inner` behind the probes of `health`.
        pub fn new(inner: S, health: Health) -> Self {
            HealthService { inner, health }
        }
    }

    impl<S, Req, B> tower_service::Service<Request<Req>> for HealthService<S>
    where
        S: tower_service::Service<Request<Req>, Response = Response<B>>,
        B: From<&'static str>,
    {
        type Response = Response<B>;
        type Error = S::Error;
        type Future = HealthFuture<S::Future, B>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: Request<Req>) -> Self::Future {
            match self.health.answer(&req) {
                Some(res) => HealthFuture::Answered { res: Some(res) },
                None => HealthFuture::Inner {
                    future: self.inner.call(req),
                },
            }
        }
    }

    pin_project_lite::pin_project! {
        /// The response of a [`HealthService`]: the probe's, or the inner
        /// service's.
        // pin_project_lite takes no docs on variant fields.
        #[allow(missing_docs)]
        #[project = HealthFutureProj]
        pub enum HealthFuture<F, B> {
            /// A probe, answered at once.
            Answered { res: Option<Response<B>> },
            /// Anything else: the inner service's future.
            Inner { #[pin] future: F },
        }
    }

    impl<F, B, E> Future for HealthFuture<F, B>
    where
        F: Future<Output = Result<Response<B>, E>>,
    {
        type Output = Result<Response<B>, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                HealthFutureProj::Answered { res } => Poll::Ready(Ok(res
                    .take()
                    .expect("invariant: HealthFuture polled after completion"))),
                HealthFutureProj::Inner { future } => future.poll(cx),
            }
        }
    }
}
