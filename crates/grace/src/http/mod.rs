//! Serving HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on the same
//! listeners, under a [`Shutdown`].

mod activity;
pub(crate) mod admission;
mod conn;
mod detect;
mod http2_io;
mod limits;
mod quiet;
mod reject;
mod tracked;
mod write_timeout;

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use tokio_util::sync::CancellationToken;

use crate::drain::{Outcome, Shutdown};
use crate::error::BoxError;
use crate::listener::Listener;
use crate::metrics::RequestStats;

use admission::Admission;
pub use limits::Limits;

/// Serves `service` on `listeners` under `shutdown`.
///
/// Returns a builder; awaiting it (or calling [`Serve::start`]) starts one
/// accept loop per listener on the shutdown's tracker.
///
/// # Return value
/// Awaiting resolves with the [`Outcome`] once a shutdown began (by
/// [`ShutdownTrigger::begin`](crate::ShutdownTrigger::begin), usually from a signal) and every connection is done,
/// or was cut at the deadline.
///
/// # Example
///
/// ```no_run
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{Request, Response, body::Incoming, service::service_fn};
/// use grace::{Listener, ShutdownTrigger};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("127.0.0.1:8080".parse()?)?;
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// let hello = service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let outcome = grace::serve(vec![listener], hello, &shutdown).await;
/// println!("{outcome:?}");
/// # Ok(()) }
/// ```
pub fn serve<S, B>(listeners: Vec<Listener>, service: S, shutdown: &Shutdown) -> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Serve {
        listeners,
        service: Arc::new(service),
        shutdown: shutdown.clone(),
        limits: Limits::default(),
        stats: None,
    }
}

/// As [`serve`], for a tower service such as an axum `Router`.
///
/// # Example
///
/// ```no_run
/// use grace::{Listener, ShutdownTrigger};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # fn router() -> axum::Router { axum::Router::new() }
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// let listener = Listener::bind("127.0.0.1:8080".parse()?)?;
/// let outcome = grace::serve_tower(vec![listener], router(), &shutdown).await;
/// # Ok(()) }
/// ```
#[cfg(feature = "tower")]
pub fn serve_tower<S, B>(
    listeners: Vec<Listener>,
    service: S,
    shutdown: &Shutdown,
) -> Serve<hyper_util::service::TowerToHyperService<S>>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve(
        listeners,
        hyper_util::service::TowerToHyperService::new(service),
        shutdown,
    )
}

/// A server ready to start; see [`serve`].
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{body::Incoming, service::service_fn, Request, Response};
/// use grace::{DrainSettings, Limits, Listener, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// let hello = service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let mut limits = Limits::default();
/// limits.max_connections = 100;
/// let listener = Listener::bind("127.0.0.1:0".parse()?)?;
/// let running = grace::serve(vec![listener], hello, &shutdown)
///     .limits(limits)
///     .start();
/// assert_eq!(running.limits().max_connections, 100);
///
/// trigger.begin(DrainSettings::default());
/// assert!(shutdown.wait().await.is_clean());
/// # Ok(()) }
/// ```
#[must_use = "nothing is served until the builder is awaited or started"]
pub struct Serve<S> {
    listeners: Vec<Listener>,
    service: Arc<S>,
    shutdown: Shutdown,
    limits: Limits,
    stats: Option<Arc<RequestStats>>,
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listeners", &self.listeners)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<S, B> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// How long a client may take to send a request's head (and, on a new
    /// connection, its first byte). Default: 30 s. See [`Limits`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// Sets every limit on clients at once. Default: [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Counts every request served here in `stats`, by status class, and
    /// times it from the call of the service to the end of its response
    /// body. Recording costs a few relaxed atomic additions: no lock.
    pub fn observe(mut self, stats: Arc<RequestStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Spawns the accept loops on the shutdown's tracker and returns a
    /// handle to add and remove listeners while serving.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(self) -> Running {
        let service = self.service;
        let stats = self.stats;
        let limits = Arc::new(ArcSwap::from_pointee(self.limits));
        let admission = Admission::new(self.limits.max_connections);
        let rejections = reject::Rejections::new(stats.clone());
        let shutdown = self.shutdown.clone();
        let spawn = {
            let limits = limits.clone();
            let admission = admission.clone();
            move |listener: Listener, stop: Stop| {
                let Stop {
                    token: stop,
                    stopped: listener_stopped,
                    open: open_conns,
                } = stop;
                let service = service.clone();
                let shutdown = shutdown.clone();
                let tracker = shutdown.tracker().clone();
                let conn_tracker = tracker.clone();
                let per_conn = stop.clone();
                let open = shutdown.track_listener();
                let limits = limits.clone();
                let admission = admission.clone();
                let stats = stats.clone();
                let rejections = rejections.clone();
                #[cfg(feature = "tls")]
                let tls = listener.tls().cloned();
                tracker.spawn(async move {
                    let _open = open;
                    listener
                        .accept_until(stop, &admission, move |stream, peer, slot| {
                            conn_tracker.spawn(conn::serve(
                                stream,
                                peer,
                                slot.count_in(&open_conns),
                                conn::Setup {
                                    service: service.clone(),
                                    shutdown: shutdown.clone(),
                                    drain: per_conn.clone(),
                                    listener_stopped: listener_stopped.clone(),
                                    limits: **limits.load(),
                                    stats: stats.clone(),
                                    rejections: rejections.clone(),
                                    #[cfg(feature = "tls")]
                                    tls: tls.clone(),
                                },
                            ));
                        })
                        .await;
                });
            }
        };
        let running = Running {
            inner: Arc::new(RunningInner {
                shutdown: self.shutdown,
                spawn: Box::new(spawn),
                stops: Mutex::new(HashMap::new()),
                limits,
                admission,
            }),
        };
        for listener in self.listeners {
            running.add(listener);
        }
        running
    }
}

/// The listeners a started [`Serve`] accepts on. Cheap to clone.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{body::Incoming, service::service_fn, Request, Response};
/// use grace::{Listener, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// let hello = service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let main = Listener::bind("127.0.0.1:0".parse()?)?;
/// let running = grace::serve(vec![main], hello, &shutdown).start();
///
/// // An address added while serving (a reload's new `listen` entry)...
/// running.add(Listener::bind("127.0.0.1:0".parse()?)?.with_name("extra"));
/// assert_eq!(running.names(), ["127.0.0.1:0", "extra"]);
/// // ...and removed again: it stops accepting, its connections drain.
/// assert!(running.remove("extra"));
/// assert_eq!(running.names(), ["127.0.0.1:0"]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Running {
    inner: Arc<RunningInner>,
}

type SpawnFn = dyn Fn(Listener, Stop) + Send + Sync;

/// Stops one listener: it stops accepting, and its connections drain.
#[derive(Clone)]
struct Stop {
    // A child of the shutdown's drain token.
    token: CancellationToken,
    // Set before the token is cancelled: what each HTTP/1 response reads to
    // decide `Connection: close`, with no lock (the token has one).
    stopped: Arc<AtomicBool>,
    // Its connections open now: counted at accept and close only.
    open: Arc<AtomicUsize>,
}

impl Stop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.token.cancel();
    }
}

struct RunningInner {
    shutdown: Shutdown,
    spawn: Box<SpawnFn>,
    // Per listener: stops accepting on it and drains its connections.
    stops: Mutex<HashMap<String, Stop>>,
    // Read by each new connection.
    limits: Arc<ArcSwap<Limits>>,
    admission: Admission,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("listeners", &self.names())
            .finish()
    }
}

impl Running {
    /// Starts accepting on `listener`. A listener with the same name is
    /// stopped first.
    pub fn add(&self, listener: Listener) {
        let name = listener.name().to_owned();
        #[cfg(feature = "tls")]
        let scheme = if listener.tls().is_some() {
            "https"
        } else {
            "http"
        };
        #[cfg(not(feature = "tls"))]
        let scheme = "http";
        tracing::info!(name, addr = %listener.local_addr(), scheme, "listening on {}", listener.local_addr());
        let stop = Stop {
            token: self.inner.shutdown.drain_token().child_token(),
            stopped: Arc::default(),
            open: Arc::default(),
        };
        if let Some(previous) = self.lock().insert(name, stop.clone()) {
            previous.stop();
        }
        (self.inner.spawn)(listener, stop);
    }

    /// Stops accepting on the listener named `name` and closes it; its
    /// connections drain as in a shutdown (HTTP/1 `Connection: close`, idle
    /// close, HTTP/2 GOAWAY). Returns false when there is no such listener.
    pub fn remove(&self, name: &str) -> bool {
        match self.lock().remove(name) {
            Some(stop) => {
                tracing::info!(name, "stopped listening on {name}; its connections drain");
                stop.stop();
                true
            }
            None => false,
        }
    }

    /// Changes the limits on clients. Connections accepted from now on use
    /// them; open connections keep the limits they started with, except the
    /// connection limit, which applies at once to accepting (lowering it
    /// closes nothing).
    pub fn set_limits(&self, limits: Limits) {
        self.inner.admission.set_max(limits.max_connections);
        self.inner.limits.store(Arc::new(limits));
    }

    /// The limits new connections get.
    pub fn limits(&self) -> Limits {
        **self.inner.limits.load()
    }

    /// The names of the listeners accepting now.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// The connections open now on each listener accepting now, by name,
    /// sorted. Counted when a connection is accepted and when it closes,
    /// nothing per request; a removed listener's draining connections are
    /// no longer listed.
    pub fn open_connections(&self) -> Vec<(String, usize)> {
        let mut open: Vec<(String, usize)> = self
            .lock()
            .iter()
            .map(|(name, stop)| (name.clone(), stop.open.load(Ordering::Relaxed)))
            .collect();
        open.sort();
        open
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stop>> {
        self.inner
            .stops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Outcome;
    type IntoFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let shutdown = self.shutdown.clone();
        let _running = self.start();
        Box::pin(async move { shutdown.wait().await })
    }
}
