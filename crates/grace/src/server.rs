//! The whole lifecycle in one builder: what most services need, in a few
//! lines. Each piece it wires stays usable alone (see the crate docs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;

use crate::config::Reloadable;
use crate::drain::{DrainSettings, Outcome, Shutdown};
use crate::error::{BindError, BoxError};
use crate::handoff::{ActivationError, Handoff, Inherited, ReadyPipe};
use crate::lifecycle::Lifecycle;
use crate::listener::Listener;
use crate::pidfile::PidFile;
use crate::reload::Reloader;
use crate::signals::Signals;

/// Why a [`Server`] could not start.
///
/// Each variant is a different thing for an operator to fix, so each can get
/// its own exit code.
///
/// # Example
///
/// ```no_run
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper::{service::service_fn, Response};
/// use grace::StartError;
///
/// # #[tokio::main] async fn main() {
/// let service = |_config, _shutdown| {
///     service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) })
/// };
/// let server = grace::Server::new(|| std::fs::read_to_string("app.conf"))
///     .listen("127.0.0.1:8080".parse().unwrap());
/// let code = match server.run(service).await {
///     Ok(outcome) => if outcome.is_clean() { 0 } else { 75 },
///     Err(e @ StartError::Config(_)) => { eprintln!("{e}"); 78 } // EX_CONFIG
///     Err(e) => { eprintln!("cannot start: {e}"); 71 }           // EX_OSERR
/// };
/// std::process::exit(code);
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The first configuration was rejected by the loader.
    #[error("invalid configuration: {0}")]
    Config(#[source] BoxError),
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Inherited sockets (`LISTEN_FDS`) were malformed.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// The pid file is owned by a live server, or cannot be written.
    #[error(transparent)]
    PidFile(#[from] crate::pidfile::PidFileError),
    /// Signal handlers, an inherited socket, or the program's path for
    /// upgrades: the OS said no.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

type DrainFn<T> = Arc<dyn Fn(&T) -> DrainSettings + Send + Sync>;
#[cfg(feature = "tls")]
type CertsFn<T> = Arc<dyn Fn(&T) -> crate::tls::CertStore + Send + Sync>;
type LoadFn<T> = Arc<dyn Fn() -> Result<T, BoxError> + Send + Sync>;

/// A server with hot reload, graceful drain and zero-downtime upgrade.
///
/// `run` installs the signal handlers (SIGHUP reloads, SIGINT/SIGTERM/SIGQUIT
/// drain, SIGUSR2 upgrades), loads the configuration, takes inherited sockets
/// or binds, serves, reports readiness (to an upgrading parent, and to
/// systemd when `NOTIFY_SOCKET` is set), and resolves once the drain is over.
///
/// # Example
///
/// ```no_run
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{Response, service::service_fn};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let load = || std::fs::read_to_string("greeting.txt");
/// let outcome = grace::Server::new(load)
///     .listen("127.0.0.1:8080".parse()?)
///     .run(|config, _shutdown| {
///         service_fn(move |_req| {
///             let greeting = config.load();
///             async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(greeting.to_string())))) }
///         })
///     })
///     .await?;
/// std::process::exit(if outcome.is_clean() { 0 } else { 75 });
/// # }
/// ```
pub struct Server<T> {
    load: LoadFn<T>,
    listen: Vec<SocketAddr>,
    drain: DrainFn<T>,
    upgrade_timeout: Duration,
    pid_file: Option<PathBuf>,
    #[cfg(feature = "watch")]
    watch: Option<(PathBuf, Duration)>,
    #[cfg(feature = "tls")]
    tls: Option<(Vec<SocketAddr>, CertsFn<T>)>,
}

impl<T> std::fmt::Debug for Server<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listen)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("pid_file", &self.pid_file)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Server<T> {
    /// A server whose configuration comes from `load`: called at start, and
    /// again on every reload (an `Err` rejects the reload; the previous
    /// configuration keeps serving).
    pub fn new<F, E>(load: F) -> Self
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Server {
            load: Arc::new(move || load().map_err(Into::into)),
            listen: Vec::new(),
            drain: Arc::new(|_| DrainSettings::default()),
            upgrade_timeout: Duration::from_secs(30),
            pid_file: None,
            #[cfg(feature = "watch")]
            watch: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Listens on `addr` (repeat for several). An inherited socket of the
    /// same address is used instead of binding.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Listens on `addrs` over TLS (feature `tls`), with the certificates
    /// `certs` takes from the configuration: load and check them in your
    /// loader (so a bad certificate rejects the reload and the old one keeps
    /// serving); after each accepted reload, handshakes use the new ones.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{Response, service::service_fn};
    /// use grace::tls::{CertStore, Certificate, Validity};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Read at start and on every reload; an error keeps the old ones.
    /// let load = || Certificate::load("cert.pem", "key.pem", Validity::Enforce).map(CertStore::new);
    /// let outcome = grace::Server::new(load)
    ///     .listen_tls(["127.0.0.1:8443".parse()?], |store: &CertStore| store.clone())
    ///     .run(|_config, _shutdown| {
    ///         service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello")))) })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn listen_tls(
        mut self,
        addrs: impl IntoIterator<Item = SocketAddr>,
        certs: impl Fn(&T) -> crate::tls::CertStore + Send + Sync + 'static,
    ) -> Self {
        self.tls = Some((addrs.into_iter().collect(), Arc::new(certs)));
        self
    }

    /// Drain timings read from the configuration when a shutdown begins.
    /// Default: [`DrainSettings::default`].
    pub fn drain_settings(
        mut self,
        settings: impl Fn(&T) -> DrainSettings + Send + Sync + 'static,
    ) -> Self {
        self.drain = Arc::new(settings);
        self
    }

    /// How long a new process may take to be ready during an upgrade.
    /// Default: 30 s.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = timeout;
        self
    }

    /// Writes our pid there (rewritten by an upgrade, removed at exit).
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Reloads when the file at `path` changes (see [`crate::watch`]).
    #[cfg(feature = "watch")]
    pub fn watch(mut self, path: impl Into<PathBuf>, debounce: Duration) -> Self {
        self.watch = Some((path.into(), debounce));
        self
    }

    /// Serves the hyper service `make(config, shutdown)` returns, until a
    /// shutdown is over.
    ///
    /// # Return value
    /// The shutdown's [`Outcome`]: clean, or forced with what was cut.
    ///
    /// # Errors
    /// A [`StartError`] when the server cannot start; nothing is left
    /// running then.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping it stops signal handling (the handlers stay
    /// installed, so SIGTERM no longer ends the process) while the listeners
    /// go on serving on the runtime. Await it to the end, as the last step of
    /// `main`; stop it through the [`Shutdown`] that `make` receives.
    pub async fn run<S, B, M>(self, make: M) -> Result<Outcome, StartError>
    where
        M: FnOnce(Reloadable<T>, Shutdown) -> S,
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let mut started = self.start()?;
        let service = make(started.config.clone(), started.shutdown.clone());
        let listeners = std::mem::take(&mut started.listeners);
        let _running = crate::serve(listeners, service, &started.shutdown).start();
        started.announce_ready();
        let Started {
            lifecycle,
            signals,
            _pid_file,
            ..
        } = started;
        let outcome = lifecycle.run(signals).await;
        drop(_pid_file);
        Ok(outcome)
    }

    /// As [`Server::run`], for a tower service such as an axum `Router`.
    ///
    /// # Errors
    /// As [`Server::run`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Server::run`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use axum::{extract::State, routing::get, Router};
    /// use grace::Reloadable;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// async fn greet(State(config): State<Reloadable<String>>) -> String {
    ///     config.load().to_string() // the configuration current for this request
    /// }
    /// let outcome = grace::Server::new(|| std::fs::read_to_string("greeting.txt"))
    ///     .listen("127.0.0.1:8080".parse()?)
    ///     .run_tower(|config, _shutdown| Router::new().route("/", get(greet)).with_state(config))
    ///     .await?;
    /// std::process::exit(if outcome.is_clean() { 0 } else { 75 });
    /// # }
    /// ```
    #[cfg(feature = "tower")]
    pub async fn run_tower<S, B, M>(self, make: M) -> Result<Outcome, StartError>
    where
        M: FnOnce(Reloadable<T>, Shutdown) -> S,
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
        self.run(|config, shutdown| {
            hyper_util::service::TowerToHyperService::new(make(config, shutdown))
        })
        .await
    }

    fn start(self) -> Result<Started<T>, StartError> {
        let os = |what| move |source| StartError::Os { what, source };
        let mut inherited = Inherited::take()?;
        let signals = Signals::install().map_err(os("installing signal handlers"))?;
        let first = (self.load)().map_err(StartError::Config)?;
        let handoff = Handoff::from_current_process()
            .map_err(os("finding this program's path for upgrades"))?
            .ready_timeout(self.upgrade_timeout);
        let handoff = Arc::new(match &self.pid_file {
            Some(path) => handoff.pid_file(path),
            None => handoff,
        });
        #[cfg(feature = "tls")]
        let tls = self
            .tls
            .as_ref()
            .map(|(_, certs)| crate::tls::Tls::new(certs(&first)));
        let plain = self.listen.iter().map(|addr| (*addr, false));
        #[cfg(feature = "tls")]
        let plain = plain.chain(
            self.tls
                .iter()
                .flat_map(|(addrs, _)| addrs.iter().map(|addr| (*addr, true))),
        );
        let mut listeners = Vec::with_capacity(self.listen.len());
        for (addr, _over_tls) in plain {
            let name = addr.to_string();
            let listener = match inherited.listener(&name, addr) {
                Some(listener) => listener.map_err(os("using an inherited socket"))?,
                None => Listener::bind(addr)?,
            };
            handoff
                .register(&listener)
                .map_err(os("keeping the socket for upgrades"))?;
            #[cfg(feature = "tls")]
            let listener = match (&tls, _over_tls) {
                (Some(tls), true) => listener.with_tls(tls.clone()),
                _ => listener,
            };
            listeners.push(listener);
        }
        inherited.close_unclaimed();

        let ready_pipe = inherited.take_ready_pipe();
        let _pid_file = match &self.pid_file {
            None => None,
            // The parent writes our pid once we are ready.
            Some(path) if ready_pipe.is_some() => Some(PidFile::adopt(path)?),
            Some(path) => Some(PidFile::create(path)?),
        };

        let config = Reloadable::new(first);
        let load = self.load.clone();
        let reloader = Reloader::new(config.clone(), move || load());
        // The certificates the accepted configuration carries, installed
        // right after the swap: the next handshake uses them.
        #[cfg(feature = "tls")]
        let reloader = match (tls, &self.tls) {
            (Some(tls), Some((_, certs))) => {
                let certs = certs.clone();
                reloader.with_prepare(move |_old: &T, new: &T| {
                    let (tls, store) = (tls.clone(), certs(new));
                    let commit: crate::reload::Commit = Box::new(move || tls.set_store(store));
                    Ok::<_, BoxError>(Some(commit))
                })
            }
            _ => reloader,
        };
        #[cfg(feature = "watch")]
        if let Some((path, debounce)) = self.watch {
            if let Err(e) = crate::watch::watch(path, reloader.clone(), debounce) {
                tracing::warn!("not watching the config file: {e}");
            }
        }
        let shutdown = Shutdown::new();
        let drain = self.drain.clone();
        let lifecycle =
            Lifecycle::new(reloader, shutdown.clone(), move |c: &T| drain(c)).with_handoff(handoff);
        #[cfg(feature = "systemd")]
        let (lifecycle, notifier) = match crate::notify::Notifier::from_env() {
            Ok(Some(notifier)) => {
                let notifier = Arc::new(notifier);
                (lifecycle.with_notifier(notifier.clone()), Some(notifier))
            }
            Ok(None) => (lifecycle, None),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET is unusable: {e}");
                (lifecycle, None)
            }
        };
        Ok(Started {
            config,
            shutdown,
            listeners,
            lifecycle,
            signals,
            ready_pipe,
            #[cfg(feature = "systemd")]
            notifier,
            _pid_file,
        })
    }
}

struct Started<T> {
    config: Reloadable<T>,
    shutdown: Shutdown,
    listeners: Vec<Listener>,
    lifecycle: Lifecycle<T>,
    signals: Signals,
    ready_pipe: Option<ReadyPipe>,
    #[cfg(feature = "systemd")]
    notifier: Option<Arc<crate::notify::Notifier>>,
    // Held for its Drop: removed at exit if it still names us.
    _pid_file: Option<PidFile>,
}

impl<T> Started<T> {
    /// Serving: tell whoever waits (an upgrading parent, systemd).
    fn announce_ready(&mut self) {
        tracing::info!(pid = std::process::id(), "ready");
        #[cfg(feature = "systemd")]
        if let Some(notifier) = &self.notifier {
            if self.ready_pipe.is_some() {
                notifier.ready_as_main("serving");
            } else {
                notifier.ready("serving");
            }
        }
        if let Some(pipe) = self.ready_pipe.take() {
            if let Err(e) = pipe.notify() {
                tracing::warn!("the process that started us is gone, serving on: {e}");
            }
        }
    }
}
