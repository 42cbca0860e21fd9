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
use crate::drain::{Outcome, Shutdown};
use crate::error::BoxError;
use crate::handoff::{Handoff, Inherited, ReadyPipe};
use crate::http::Running;
use crate::lifecycle::Lifecycle;
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
        let handoff = Handoff::from_current_process()
            .map_err(StartError::os("finding this program's path for upgrades"))?
            .ready_timeout((self.upgrade_timeout)(&first));
        let handoff = Arc::new(match &self.pid_file {
            Some(path) => handoff.pid_file(path),
            None => handoff,
        });
        let listeners = self.addresses.open(&first, &mut inherited)?;
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
        let config = Reloadable::new(first);
        let load = self.load.clone();
        let reloader = Reloader::new(config.clone(), move || load());
        Ok(Started {
            config,
            shutdown: Shutdown::new(),
            reloader,
            handoff,
            signals,
            listeners,
            admin,
            ready_pipe,
            pid_file,
            server: self,
            #[cfg(feature = "metrics")]
            started_at: std::time::SystemTime::now(),
            #[cfg(feature = "control")]
            control,
        })
    }
}

/// A server past start-up: listening, not yet serving. Give
/// [`Started::serve`] the main service (and [`Started::serve_admin`] the
/// admin one), then await [`Started::run`].
pub struct Started<T> {
    config: Reloadable<T>,
    shutdown: Shutdown,
    reloader: Reloader<T>,
    handoff: Arc<Handoff>,
    signals: Signals,
    listeners: Vec<Listener>,
    admin: Option<Listener>,
    ready_pipe: Option<ReadyPipe>,
    // Held for its Drop: removed at exit if it still names us.
    pid_file: Option<PidFile>,
    server: Server<T>,
    #[cfg(feature = "metrics")]
    started_at: std::time::SystemTime,
    #[cfg(feature = "control")]
    control: Option<(crate::control::ControlSocket, crate::control::ServerInfo)>,
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

    /// The shutdown every connection follows.
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
        crate::metrics::MetricsCollector::new(self.reloader.clone(), self.shutdown.clone())
            .with_handoff(self.handoff.clone())
            .started_at(self.started_at)
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
        tracing::info!(pid = std::process::id(), generation = 1, "ready");
        let drain = self.server.drain.clone();
        let lifecycle = Lifecycle::new(
            self.reloader.clone(),
            self.shutdown.clone(),
            move |c: &T| drain(c),
        )
        .with_handoff(self.handoff.clone());
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
            let status = "serving generation 1";
            if self.ready_pipe.is_some() {
                notifier.ready_as_main(status);
            } else {
                notifier.ready(status);
            }
        }
        if let Some(pipe) = self.ready_pipe.take() {
            if let Err(e) = pipe.notify() {
                tracing::warn!("the process that started us is gone, serving on: {e}");
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
