//! The whole lifecycle in one builder: what most services need, in a few
//! lines. Each piece it wires stays usable alone (see the crate docs).

mod error;
mod hooks;
mod listen;
mod started;

use std::future::Future;
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
use crate::error::BoxError;
use crate::handoff::Inherited;
use crate::http::Limits;
use crate::reload::{Commit, ReloadHost};

pub use error::StartError;
use listen::Addresses;
pub use started::Started;

type DrainFn<T> = Arc<dyn Fn(&T) -> DrainSettings + Send + Sync>;
type DurationFn<T> = Arc<dyn Fn(&T) -> Duration + Send + Sync>;
type LimitsFn<T> = Arc<dyn Fn(&T) -> Limits + Send + Sync>;
type LoadFn<T> = Arc<dyn Fn() -> Result<T, BoxError> + Send + Sync>;
type PrepareFn<T> = Arc<dyn Fn(&T, &T) -> Result<Option<Commit>, BoxError> + Send + Sync>;
type VerdictFn = Box<dyn Fn(&crate::reload::Verdict) + Send + Sync>;

/// A server with hot reload, graceful drain and zero-downtime upgrade.
///
/// Start-up runs in one order: the inherited sockets and environment are
/// taken while the process has one thread, then the runtime starts, the
/// first configuration is loaded, the control socket and the pid file are
/// claimed (so a second server started by mistake fails before touching
/// anything), signal handlers are installed (SIGHUP reloads,
/// SIGINT/SIGTERM/SIGQUIT drain, SIGUSR2 upgrades), inherited sockets are
/// used or addresses bound, the pid file is written, and readiness is
/// reported (to an upgrading parent, and to systemd when `NOTIFY_SOCKET` is
/// set). [`Server::run_blocking`] does all of it; it resolves once the
/// drain is over.
///
/// # Example
///
/// ```no_run
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{Response, service::service_fn};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let load = || std::fs::read_to_string("greeting.txt");
///     // Builds the runtime itself, after taking the inherited sockets.
///     let outcome = grace::Server::new(load)
///         .listen("127.0.0.1:8080".parse()?)
///         .run_blocking(|config, _shutdown| {
///             service_fn(move |_req| {
///                 let greeting = config.load();
///                 async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(greeting.to_string())))) }
///             })
///         })?;
///     std::process::exit(if outcome.is_clean() { 0 } else { 75 });
/// }
/// ```
pub struct Server<T> {
    load: LoadFn<T>,
    initial: Option<T>,
    inherited: Option<Inherited>,
    addresses: Addresses<T>,
    admin: Option<SocketAddr>,
    drain: DrainFn<T>,
    upgrade_timeout: DurationFn<T>,
    limits: Option<LimitsFn<T>>,
    pid_file: Option<PathBuf>,
    prepare: Option<PrepareFn<T>>,
    on_reload: Vec<VerdictFn>,
    #[cfg(feature = "watch")]
    watch: Option<(PathBuf, Duration)>,
    #[cfg(feature = "control")]
    control: Option<(PathBuf, crate::control::ServerInfo)>,
    // Set by `block_on`: its caller's thread runs the reloads.
    reload_host: Option<ReloadHost>,
}

impl<T> std::fmt::Debug for Server<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("admin", &self.admin)
            .field("pid_file", &self.pid_file)
            .field("inherited", &self.inherited)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Server<T> {
    /// A server whose configuration comes from `load`: called at start, and
    /// again on every reload (an `Err` rejects the reload; the previous
    /// configuration keeps serving).
    ///
    /// # Where `load` runs
    /// Never on an async worker, and one load at a time: it may block (read
    /// files, parse) without delaying requests.
    /// - Under [`Server::run_blocking`] and [`Server::block_on`], every load,
    ///   the first included, runs on the thread that called them, which
    ///   does nothing else once the server runs, and then at a lower
    ///   priority than the rest of the process (nice 10).
    /// - Under [`Server::start`] (and [`Server::run`]), the first load runs
    ///   on the thread that calls `start`, before anything listens, and
    ///   reloads on the reloader's own thread (`grace-reload`, nice 10).
    ///
    /// To load asynchronously (from a secret store over the network, say),
    /// block on the runtime in the loader,
    /// `tokio::runtime::Handle::current().block_on(fetch())`, which is
    /// allowed on those threads (they are not the runtime's), and give the
    /// first configuration, loaded with `.await` before `start`, to
    /// [`Server::initial`] (`block_on` would panic on the thread that
    /// starts the server, which is inside the runtime).
    pub fn new<F, E>(load: F) -> Self
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Server {
            load: Arc::new(move || load().map_err(Into::into)),
            initial: None,
            inherited: None,
            addresses: Addresses::new(),
            admin: None,
            drain: Arc::new(|_| DrainSettings::default()),
            upgrade_timeout: Arc::new(|_| Duration::from_secs(30)),
            limits: None,
            pid_file: None,
            prepare: None,
            on_reload: Vec::new(),
            #[cfg(feature = "watch")]
            watch: None,
            #[cfg(feature = "control")]
            control: None,
            reload_host: None,
        }
    }

    /// Starts with `config`, already loaded (say, to choose options from
    /// it, or to report a bad one before anything starts); `load` is then
    /// called on reloads only.
    pub fn initial(mut self, config: T) -> Self {
        self.initial = Some(config);
        self
    }

    /// The sockets this process inherited, taken by the caller with
    /// [`Inherited::take`] as the first thing in `main`, before any thread
    /// starts. Without it, [`Server::run_blocking`] takes them itself (also
    /// before its runtime starts); [`Server::run`] and [`Server::start`],
    /// already inside a runtime, take them late and warn.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::convert::Infallible;
    /// # use bytes::Bytes;
    /// # use http_body_util::Empty;
    /// # use hyper::{service::service_fn, Response};
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     // First: the environment is read and cleared while we are alone.
    ///     let inherited = grace::handoff::Inherited::take()?;
    ///     let runtime = tokio::runtime::Runtime::new()?;
    ///     let outcome = runtime.block_on(
    ///         grace::Server::new(|| Ok::<_, std::io::Error>(()))
    ///             .inherited(inherited)
    ///             .listen("127.0.0.1:8080".parse()?)
    ///             .run(|_config, _shutdown| {
    ///                 service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) })
    ///             }),
    ///     )?;
    ///     std::process::exit(if outcome.is_clean() { 0 } else { 75 });
    /// }
    /// ```
    pub fn inherited(mut self, inherited: Inherited) -> Self {
        self.inherited = Some(inherited);
        self
    }

    /// Listens on `addr` (repeat for several). An inherited socket of the
    /// same address is used instead of binding.
    pub fn listen(self, addr: SocketAddr) -> Self {
        self.listen_with(move |_| vec![addr])
    }

    /// Listens on the addresses `addrs` takes from the configuration. They
    /// are read again on every reload: new addresses are bound before the
    /// new configuration is swapped in (a failure rejects the reload and
    /// changes nothing), removed ones stop accepting and drain after it.
    pub fn listen_with(
        mut self,
        addrs: impl Fn(&T) -> Vec<SocketAddr> + Send + Sync + 'static,
    ) -> Self {
        self.addresses.plain.push(Arc::new(addrs));
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
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     // Read at start and on every reload; an error keeps the old ones.
    ///     let load = || Certificate::load("cert.pem", "key.pem", Validity::Enforce).map(CertStore::new);
    ///     let outcome = grace::Server::new(load)
    ///         .listen_tls(["127.0.0.1:8443".parse()?], |store: &CertStore| store.clone())
    ///         .run_blocking(|_config, _shutdown| {
    ///             service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello")))) })
    ///         })?;
    ///     Ok(())
    /// }
    /// ```
    #[cfg(feature = "tls")]
    pub fn listen_tls(
        self,
        addrs: impl IntoIterator<Item = SocketAddr>,
        certs: impl Fn(&T) -> crate::tls::CertStore + Send + Sync + 'static,
    ) -> Self {
        let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
        self.listen_tls_with(move |_| addrs.clone(), move |config| Some(certs(config)))
    }

    /// As [`Server::listen_with`], over TLS (feature `tls`): `addrs` and
    /// `certs` are read from each configuration. A configuration whose
    /// `certs` is `None` must have no TLS address.
    #[cfg(feature = "tls")]
    pub fn listen_tls_with(
        mut self,
        addrs: impl Fn(&T) -> Vec<SocketAddr> + Send + Sync + 'static,
        certs: impl Fn(&T) -> Option<crate::tls::CertStore> + Send + Sync + 'static,
    ) -> Self {
        self.addresses.tls = Some((Arc::new(addrs), Arc::new(certs)));
        self
    }

    /// The certificates the TLS listeners serve, to show them (status,
    /// metrics). Empty until the first TLS listener starts.
    #[cfg(feature = "tls")]
    pub fn certificates(&self) -> crate::tls::SharedTls {
        self.addresses.shared.clone()
    }

    /// An admin listener on `addr`, served by the service given to
    /// [`Started::serve_admin`], under its own name (`admin`) in upgrades
    /// so it is never taken for a main listener. Fixed at start.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
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
    pub fn upgrade_timeout(self, timeout: Duration) -> Self {
        self.upgrade_timeout_with(move |_| timeout)
    }

    /// As [`Server::upgrade_timeout`], read from the configuration at start
    /// and after every reload.
    pub fn upgrade_timeout_with(
        mut self,
        timeout: impl Fn(&T) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.upgrade_timeout = Arc::new(timeout);
        self
    }

    /// Connection limits read from the configuration at start and after
    /// every reload (new connections of the main listeners get the new
    /// ones). Default: [`Limits::default`].
    pub fn limits_with(mut self, limits: impl Fn(&T) -> Limits + Send + Sync + 'static) -> Self {
        self.limits = Some(Arc::new(limits));
        self
    }

    /// A reload step of your own, run before the listen changes: an `Err`
    /// rejects the reload, a [`Commit`] runs right after the swap (see
    /// [`Reloader::with_prepare`](crate::Reloader::with_prepare)).
    pub fn prepare_reload<E: Into<BoxError>>(
        mut self,
        prepare: impl Fn(&T, &T) -> Result<Option<Commit>, E> + Send + Sync + 'static,
    ) -> Self {
        self.prepare = Some(Arc::new(move |old, new| {
            prepare(old, new).map_err(Into::into)
        }));
        self
    }

    /// Claims the pid file before listening and writes our pid once
    /// listening (an upgrade's parent writes it for its child); removed at
    /// exit if it still names us.
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

    /// Answers reload, upgrade, stop and status on the control socket at
    /// `path` (feature `control`), describing the server with `info`. The
    /// socket is claimed first of all; a process started by an upgrade takes
    /// its parent's path over once it serves.
    #[cfg(feature = "control")]
    pub fn control_socket(
        mut self,
        path: impl Into<PathBuf>,
        info: crate::control::ServerInfo,
    ) -> Self {
        self.control = Some((path.into(), info));
        self
    }

    /// Takes the inherited sockets (unless given with
    /// [`Server::inherited`]) while the process has one thread, then starts
    /// a multi-threaded tokio runtime and runs `main(self)` on it: the
    /// start-up path of [`Server::run_blocking`], for callers that wire more
    /// between [`Server::start`] and [`Started::run`].
    ///
    /// `main` runs on a thread of its own (`grace-main`). The calling
    /// thread loads the first configuration (unless it was given with
    /// [`Server::initial`], most likely loaded on this thread too), then
    /// runs the reloads: they reuse the memory the first load left, where a
    /// thread of their own would keep a heap of its own resident.
    ///
    /// # Errors
    /// Inherited sockets that are malformed, a runtime or thread that
    /// cannot start, or what `main` returns.
    pub fn block_on<R, F, Fut>(mut self, main: F) -> Result<R, StartError>
    where
        T: Send,
        R: Send,
        F: FnOnce(Self) -> Fut + Send,
        Fut: Future<Output = Result<R, StartError>>,
    {
        if self.inherited.is_none() {
            self.inherited = Some(Inherited::take()?);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(StartError::os("starting the async runtime"))?;
        if self.initial.is_none() {
            // Inside the runtime, as the reloads are: a loader may block on it.
            let _runtime = runtime.enter();
            self.initial = Some((self.load)().map_err(StartError::Config)?);
        }
        let (host, reloads, end) = ReloadHost::for_this_thread();
        self.reload_host = Some(host);
        std::thread::scope(|scope| {
            let serving = std::thread::Builder::new()
                .name("grace-main".into())
                .spawn_scoped(scope, move || {
                    // Dropped after the runtime, on a panic too: ends the
                    // reload loop below even if something keeps a handle
                    // to the reloader (an observer holding its own, say).
                    let _end = end;
                    let result = runtime.block_on(main(self));
                    drop(runtime);
                    result
                })
                .map_err(StartError::os("starting the main thread"))?;
            reloads.run();
            serving
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Serves the hyper service `make(config, shutdown)` returns until a
    /// shutdown is over, on a runtime of its own started after the
    /// inherited sockets were taken: the path to use from a plain `fn main`.
    ///
    /// # Return value
    /// The shutdown's [`Outcome`]: clean, or forced with what was cut.
    ///
    /// # Errors
    /// A [`StartError`] when the server cannot start (see
    /// [`StartError::exit_code`]); nothing is left running then.
    pub fn run_blocking<S, B, M>(self, make: M) -> Result<Outcome, StartError>
    where
        M: FnOnce(Reloadable<T>, Shutdown) -> S + Send,
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.block_on(|server| server.run(make))
    }

    /// As [`Server::run_blocking`], on the caller's runtime: take the
    /// inherited sockets first thing in `main` and pass them with
    /// [`Server::inherited`].
    ///
    /// # Errors
    /// As [`Server::run_blocking`].
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
        let service = make(started.config().clone(), started.shutdown().clone());
        started.serve(service, None);
        started.run().await
    }

    /// As [`Server::run_blocking`], for a tower service such as an axum
    /// `Router`.
    ///
    /// # Errors
    /// As [`Server::run_blocking`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use axum::{extract::State, routing::get, Router};
    /// use grace::Reloadable;
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     async fn greet(State(config): State<Reloadable<String>>) -> String {
    ///         config.load().to_string() // the configuration current for this request
    ///     }
    ///     let outcome = grace::Server::new(|| std::fs::read_to_string("greeting.txt"))
    ///         .listen("127.0.0.1:8080".parse()?)
    ///         .run_tower_blocking(|config, _shutdown| Router::new().route("/", get(greet)).with_state(config))?;
    ///     std::process::exit(if outcome.is_clean() { 0 } else { 75 });
    /// }
    /// ```
    #[cfg(feature = "tower")]
    pub fn run_tower_blocking<S, B, M>(self, make: M) -> Result<Outcome, StartError>
    where
        M: FnOnce(Reloadable<T>, Shutdown) -> S + Send,
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
        self.run_blocking(|config, shutdown| {
            hyper_util::service::TowerToHyperService::new(make(config, shutdown))
        })
    }

    /// As [`Server::run`], for a tower service such as an axum `Router`.
    ///
    /// # Errors
    /// As [`Server::run`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Server::run`].
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
}
