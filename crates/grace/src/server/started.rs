//! Start-up in its one order, and the started server: serve, then run.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;

use super::listen::{self, Addresses};
use super::{LimitsFn, PrepareFn, Server, StartError};
use crate::config::Reloadable;
use crate::drain::{Outcome, Shutdown, ShutdownTrigger};
use crate::error::BoxError;
use crate::handoff::{Handoff, Inherited, ReadyPipe};
use crate::http::Running;
use crate::lifecycle::{Controller, Lifecycle};
use crate::listener::Listener;
use crate::metrics::RequestStats;
use crate::pidfile::PidFile;
use crate::reload::{Commit, Reloader};
use crate::signals::Signals;

impl<T: Send + Sync + 'static> Server<T> {
    /// Starts everything but serving: loads the first configuration, claims
    /// the control socket and the pid file, installs the signal handlers,
    /// takes inherited sockets or binds, and writes the pid file. Then give
    /// [`Started::serve`] the service, and await [`Started::run`].
    ///
    /// # Errors
    /// A [`StartError`]; what was claimed is released.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn start(mut self) -> Result<Started<T>, StartError> {
        #[cfg(feature = "control")]
        let began = std::time::Instant::now();
        let mut inherited = match self.inherited.take() {
            Some(inherited) => inherited,
            None => Inherited::take()?,
        };
        let first = match self.initial.take() {
            Some(first) => first,
            None => (self.load)().map_err(StartError::Config)?,
        };
        // A parent that started us writes our pid into the file once we are
        // ready, and hands us its control socket's path at the same moment.
        let ready_pipe = inherited.take_ready_pipe();
        // Before listening: a second server started by mistake on a live
        // server's control socket or pid file must fail before it touches
        // anything else.
        #[cfg(feature = "control")]
        let control = match self.control.take() {
            None => None,
            Some((path, info)) => {
                use crate::control::{BindMode, ControlSocket};
                let mode = match ready_pipe {
                    Some(_) => BindMode::Takeover,
                    None => BindMode::Exclusive,
                };
                Some((ControlSocket::bind(path, mode)?, info))
            }
        };
        let pid_file = match &self.pid_file {
            None => None,
            // The parent of an upgrade owns the file until it hands it over.
            Some(path) if ready_pipe.is_some() => Some(PidFile::adopt(path)?),
            Some(path) => Some(PidFile::claim(path)?),
        };
        // Before listening: from the first accepted connection on, a signal
        // must mean a graceful shutdown, never the default "terminate now".
        let signals = Signals::install().map_err(StartError::os("installing signal handlers"))?;
        let upgrade_timeout = (self.upgrade_timeout)(&first);
        // After an upgrade, generations continue from the old process's.
        let config = Reloadable::starting_at(first, inherited.generation().map_or(1, |g| g + 1));
        let handoff = Handoff::from_current_process()
            .map_err(StartError::os("finding this program's path for upgrades"))?
            .ready_timeout(upgrade_timeout)
            .follow_generation(config.subscribe());
        let handoff = Arc::new(match &self.pid_file {
            Some(path) => handoff.pid_file(path),
            None => handoff,
        });
        let listeners = self.addresses.open(&config.load(), &mut inherited)?;
        for listener in &listeners {
            listen::register(&handoff, listener);
        }
        let admin = match self.admin {
            Some(addr) => Some(listen::admin(addr, &mut inherited)?),
            None => None,
        };
        inherited.close_unclaimed();
        if let Some(admin) = &admin {
            listen::register(&handoff, admin);
        }
        // Written only now that we listen: a script that waits for the pid
        // file may connect at once. The parent of an upgrade writes it.
        if let (Some(file), None) = (&pid_file, &ready_pipe) {
            file.write()?;
        }
        let load = self.load.clone();
        let reloader = Reloader::hosted(config.clone(), move || load(), self.reload_host.as_ref());
        // The host takes no other job: let it end with the reloader.
        self.reload_host = None;
        self.observe_verdicts(&reloader);
        #[cfg(feature = "control")]
        let history = {
            let history = crate::status::Recorder::new();
            history.follow_reloads(&reloader);
            history.follow_upgrades(&handoff);
            history
        };
        let trigger = ShutdownTrigger::new();
        Ok(Started {
            config,
            shutdown: trigger.watcher().clone(),
            trigger: std::sync::Mutex::new(Some(trigger)),
            reloader,
            handoff,
            signals,
            listeners,
            admin,
            ready_pipe,
            pid_file,
            server: self,
            lifecycle: std::sync::OnceLock::new(),
            #[cfg(feature = "metrics")]
            started_at: std::time::SystemTime::now(),
            #[cfg(feature = "control")]
            control,
            #[cfg(feature = "control")]
            history,
            #[cfg(feature = "control")]
            began,
        })
    }
}

/// A server past start-up: listening, not yet serving. Give
/// [`Started::serve`] the main service (and [`Started::serve_admin`] the
/// admin one), then await [`Started::run`].
pub struct Started<T> {
    config: Reloadable<T>,
    shutdown: Shutdown,
    // Goes to the lifecycle when it is made (`controller` or `run`);
    // services only ever see its watcher.
    trigger: std::sync::Mutex<Option<ShutdownTrigger>>,
    reloader: Reloader<T>,
    handoff: Arc<Handoff>,
    signals: Signals,
    listeners: Vec<Listener>,
    admin: Option<Listener>,
    ready_pipe: Option<ReadyPipe>,
    // Held for its Drop: removed at exit if it still names us.
    pid_file: Option<PidFile>,
    server: Server<T>,
    // Made when first asked for (`controller`), or by `run`.
    lifecycle: std::sync::OnceLock<Lifecycle<T>>,
    #[cfg(feature = "metrics")]
    started_at: std::time::SystemTime,
    #[cfg(feature = "control")]
    control: Option<(crate::control::ControlSocket, crate::control::ServerInfo)>,
    // Reloads and upgrades, for the status page.
    #[cfg(feature = "control")]
    history: Arc<crate::status::Recorder>,
    #[cfg(feature = "control")]
    began: std::time::Instant,
}

impl<T> std::fmt::Debug for Started<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("listeners", &self.listeners.len())
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

impl<T> Started<T> {
    /// The admin listener's address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Listener::local_addr)
    }
}

impl<T: Send + Sync + 'static> Started<T> {
    /// The configuration, swapped by each accepted reload.
    pub fn config(&self) -> &Reloadable<T> {
        &self.config
    }

    /// The shutdown every connection follows: a watcher, which can wait for
    /// the drain but not start one (signals and the control socket do).
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The reloader (for metrics: its verdicts).
    pub fn reloader(&self) -> &Reloader<T> {
        &self.reloader
    }

    /// The upgrade hand-off (for metrics: its counts).
    pub fn handoff(&self) -> &Arc<Handoff> {
        &self.handoff
    }

    /// A collector of the lifecycle tallies (reloads, drain, upgrades,
    /// uptime) for a prometheus-client registry (feature `metrics`); add
    /// the request tallies with `with_requests`.
    #[cfg(feature = "metrics")]
    pub fn metrics_collector(&self) -> crate::metrics::MetricsCollector<T> {
        crate::metrics::MetricsCollector::new(self.reloader.clone(), self.shutdown().clone())
            .with_handoff(self.handoff.clone())
            .started_at(self.started_at)
    }

    /// A status page for this server (feature `control`): `info` as the
    /// control socket's, plus the history of reloads and upgrades since
    /// this process started. Serve it on an admin address (see
    /// [`crate::status`]).
    #[cfg(feature = "control")]
    pub fn status_page(&self, info: crate::control::ServerInfo) -> crate::status::StatusPage {
        let (reloader, shutdown) = (self.reloader.clone(), self.shutdown.clone());
        crate::status::StatusPage::new(self.history.clone(), self.shutdown.clone(), move || {
            crate::control::status_of(&reloader, &shutdown, &info)
        })
    }

    /// Takes the main listeners to run another program on them instead of
    /// serving them here (see [`crate::supervise`]); then [`Started::serve`]
    /// is not called, and listen changes on reload are not applied. They
    /// are still handed over on upgrade.
    pub fn take_listeners(&mut self) -> Vec<Listener> {
        std::mem::take(&mut self.listeners)
    }

    /// Serves `service` on the main listeners, tallying requests into
    /// `stats` if given, under the configured limits (followed on reload),
    /// and applies listen changes on each reload from now on.
    ///
    /// # Panics
    /// When called twice.
    pub fn serve<S, B>(&mut self, service: S, stats: Option<Arc<RequestStats>>) -> Running
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listeners = std::mem::take(&mut self.listeners);
        let mut serving = crate::serve(listeners, service, &self.shutdown);
        if let Some(limits) = &self.server.limits {
            serving = serving.limits(limits(&self.config.load()));
        }
        if let Some(stats) = stats {
            serving = serving.observe(stats);
        }
        let running = serving.start();
        if let Some(limits) = &self.server.limits {
            follow_limits(&self.config, limits.clone(), running.clone());
        }
        let prepare = listen_changes(
            self.server.prepare.clone(),
            self.server.addresses.clone(),
            running.clone(),
            self.handoff.clone(),
        );
        // The reloader was just made and has no prepare step yet.
        let _ = self.reloader.clone().with_prepare(prepare);
        running
    }

    /// Serves `service` on the admin listener, if there is one, under the
    /// limits of the first configuration; not tallied (scrapes are not the
    /// traffic being measured).
    pub fn serve_admin<S, B>(&mut self, service: S) -> Option<Running>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let admin = self.admin.take()?;
        let mut serving = crate::serve(vec![admin], service, &self.shutdown);
        if let Some(limits) = &self.server.limits {
            serving = serving.limits(limits(&self.config.load()));
        }
        Some(serving.start())
    }

    /// Runs until a shutdown is over: starts the file watch and the control
    /// socket, reports readiness, then handles signals and control requests.
    ///
    /// # Return value
    /// The shutdown's [`Outcome`].
    ///
    /// # Errors
    /// A [`StartError`] when the file watch or the control socket cannot
    /// start.
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Server::run`].
    pub async fn run(mut self) -> Result<Outcome, StartError> {
        #[cfg(feature = "watch")]
        if let Some((path, debounce)) = self.server.watch.take() {
            crate::watch::watch(path, self.reloader.clone(), debounce).map_err(|e| {
                StartError::Os {
                    what: "watching the config file",
                    source: std::io::Error::other(e),
                }
            })?;
        }
        follow_upgrade_timeout(
            &self.config,
            self.server.upgrade_timeout.clone(),
            self.handoff.clone(),
        );
        let generation = self.config.generation();
        tracing::info!(pid = std::process::id(), generation, "ready");
        let lifecycle = self.take_lifecycle();
        #[cfg(feature = "systemd")]
        let (lifecycle, notifier) = match crate::notify::Notifier::from_env() {
            Ok(Some(notifier)) => {
                let notifier = Arc::new(notifier);
                (lifecycle.with_notifier(notifier.clone()), Some(notifier))
            }
            Ok(None) => (lifecycle, None),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET is unusable, not notifying systemd: {e}");
                (lifecycle, None)
            }
        };
        #[cfg(feature = "control")]
        let control = match self.control.take() {
            None => None,
            Some((socket, info)) => {
                let path = socket.path().display().to_string();
                let mut server =
                    crate::control::ControlServer::start(socket, lifecycle.controller(), info)
                        .map_err(StartError::os("serving the control socket"))?;
                // An upgrade's new process takes the path over only now
                // that it serves: until then it reaches the old one.
                if let Err(e) = server.publish() {
                    tracing::error!("control socket not published: {e}");
                }
                tracing::info!(path, "control socket ready");
                Some(server)
            }
        };
        // Everything is up: tell systemd and the process that started us.
        #[cfg(feature = "systemd")]
        if let Some(notifier) = &notifier {
            let status = format!("serving generation {generation}");
            if self.ready_pipe.is_some() {
                notifier.ready_as_main(&status);
            } else {
                notifier.ready(&status);
            }
        }
        if let Some(pipe) = self.ready_pipe.take() {
            match pipe.notify() {
                // The process that started us is the one we take over from.
                #[cfg(feature = "control")]
                Ok(()) => self.history.upgraded_from(
                    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
                    self.began.elapsed(),
                ),
                #[cfg(not(feature = "control"))]
                Ok(()) => {}
                Err(e) => tracing::warn!("the process that started us is gone, serving on: {e}"),
            }
        }
        let outcome = lifecycle.run(self.signals).await;
        #[cfg(feature = "control")]
        if let Some(control) = control {
            // A `stop --wait` client gets its last line before we exit.
            control.close(std::time::Duration::from_secs(1)).await;
        }
        drop(self.pid_file);
        Ok(outcome)
    }
}

impl<T: Send + Sync + 'static> Started<T> {
    /// A handle that reloads, upgrades and stops this server and returns
    /// each verdict: for an admin endpoint or a deploy hook in the service
    /// itself. It acts on the same state as signals and the control socket
    /// (a stop asked either way is one shutdown). Cheap to clone; ask for
    /// it before [`Started::run`], and keep it in the service.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = grace::Server::new(|| std::fs::read_to_string("greeting.txt"))
    ///     .listen("127.0.0.1:8080".parse()?);
    /// server.block_on(|server| async move {
    ///     let started = server.start()?;
    ///     let controller = started.controller();
    ///     tokio::spawn(async move {
    ///         // A deploy hook, say: reload and report.
    ///         match controller.reload().await {
    ///             Ok(generation) => println!("generation {generation} serves"),
    ///             Err(e) => println!("rejected, the old one serves: {e}"),
    ///         }
    ///     });
    ///     // started.serve(service, None); ...
    ///     started.run().await
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn controller(&self) -> Controller<T> {
        self.lifecycle
            .get_or_init(|| self.new_lifecycle())
            .controller()
    }

    pub(super) fn take_lifecycle(&mut self) -> Lifecycle<T> {
        match self.lifecycle.take() {
            Some(lifecycle) => lifecycle,
            None => self.new_lifecycle(),
        }
    }

    fn new_lifecycle(&self) -> Lifecycle<T> {
        let drain = self.server.drain.clone();
        let trigger = self
            .trigger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .expect("the lifecycle is made once");
        Lifecycle::new(self.reloader.clone(), trigger, move |c: &T| drain(c))
            .with_handoff(self.handoff.clone())
    }

    /// As [`Started::serve`], for a tower service such as an axum `Router`
    /// (feature `tower`).
    ///
    /// # Panics
    /// When called twice.
    #[cfg(feature = "tower")]
    pub fn serve_tower<S, B>(
        &mut self,
        service: S,
        stats: Option<std::sync::Arc<crate::metrics::RequestStats>>,
    ) -> Running
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
        self.serve(
            hyper_util::service::TowerToHyperService::new(service),
            stats,
        )
    }
}

/// Your reload step, then the listen changes; both commits run after the
/// swap, in that order.
fn listen_changes<T: Send + Sync + 'static>(
    prepare: Option<PrepareFn<T>>,
    addresses: Addresses<T>,
    running: Running,
    handoff: Arc<Handoff>,
) -> impl Fn(&T, &T) -> Result<Option<Commit>, BoxError> + Send + Sync + 'static {
    move |old: &T, new: &T| {
        let first = match &prepare {
            Some(prepare) => prepare(old, new)?,
            None => None,
        };
        let second = addresses.prepare(old, new, &running, &handoff)?;
        Ok(match (first, second) {
            (Some(a), Some(b)) => Some(Box::new(move || {
                a();
                b();
            })),
            (a, b) => a.or(b),
        })
    }
}

/// Keeps the upgrade timeout in step with reloads.
fn follow_upgrade_timeout<T: Send + Sync + 'static>(
    config: &Reloadable<T>,
    timeout: super::DurationFn<T>,
    handoff: Arc<Handoff>,
) {
    let mut changes = config.subscribe();
    let config = config.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            handoff.set_ready_timeout(timeout(&config.load()));
        }
    });
}

/// Applies limit changes on reload: new connections get the new limits.
fn follow_limits<T: Send + Sync + 'static>(
    config: &Reloadable<T>,
    limits: LimitsFn<T>,
    running: Running,
) {
    let mut changes = config.subscribe();
    let config = config.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let limits = limits(&config.load());
            if limits != running.limits() {
                running.set_limits(limits);
                tracing::info!(?limits, "limits changed: new connections use them");
            }
        }
    });
}
