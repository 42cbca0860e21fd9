//! `grace serve`: wires the configuration, the routes and the lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;

use grace::control::{BindMode, ControlServer, ControlSocket, ControlSocketError, ServerInfo};
use grace::handoff::{Handoff, Inherited};
use grace::metrics::{MetricsCollector, RequestStats};
use grace::notify::Notifier;
use grace::pidfile::{PidFile, PidFileError};
use grace::reload::Commit;
use grace::signals::Signals;
use grace::{
    BoxError, DrainSettings, Lifecycle, Listener, Outcome, Reloadable, Reloader, Running, Shutdown,
};

use crate::cli::ServeArgs;
use crate::config::{Config, Source};
use crate::metrics::{ConfigCollector, Metrics};
use crate::routes::App;
use crate::tls::{CertCollector, Certs};
use crate::{exit, logging};

pub fn run(args: ServeArgs) -> u8 {
    let log = logging::init(args.log_format);
    // First, while this is the only thread: the environment is read and
    // cleared, and inherited descriptors are owned before anything can leak
    // them into a child.
    let inherited = match Inherited::take() {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("error: cannot take the inherited sockets: {e}");
            return exit::OSERR;
        }
    };
    let source = crate::source(args.config.config.clone());
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            tracing::error!(config = %source.origin(), "refusing to start: invalid configuration");
            return exit::CONFIG;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::OSERR;
        }
    };
    let code = runtime.block_on(async {
        log.report_dropped();
        serve(args, source, config, inherited).await
    });
    log.report_final();
    code
}

async fn serve(args: ServeArgs, source: Source, config: Config, mut inherited: Inherited) -> u8 {
    let started = std::time::SystemTime::now();
    // A parent that started us writes our pid into the file once we are
    // ready, and hands us its control socket's path at the same moment.
    let ready_pipe = inherited.take_ready_pipe();
    let control_path = args
        .control_socket
        .clone()
        .or_else(|| config.server.control_socket.clone());
    // Before listening: a second server started by mistake on a live
    // server's control socket must fail before it touches anything else.
    let control_socket = match &control_path {
        None => None,
        Some(path) => {
            let mode = if ready_pipe.is_some() {
                BindMode::Takeover
            } else {
                BindMode::Exclusive
            };
            match ControlSocket::bind(path, mode) {
                Ok(socket) => Some(socket),
                Err(e) => {
                    eprintln!("error: {e}");
                    tracing::error!("refusing to start: {e}");
                    return match e {
                        ControlSocketError::InUse { .. } => exit::UNAVAILABLE,
                        _ => exit::CANTCREAT,
                    };
                }
            }
        }
    };
    // Claimed before listening too, for the same reason: a second server on
    // a live server's pid file must not overwrite it.
    let pid_file = match &args.pid_file {
        None => None,
        Some(path) => {
            let claimed = match ready_pipe {
                // The parent of an upgrade owns the file until it hands it over.
                Some(_) => PidFile::adopt(path),
                None => PidFile::claim(path),
            };
            match claimed {
                Ok(file) => Some(file),
                Err(e) => {
                    eprintln!("error: {e}");
                    tracing::error!("refusing to start: {e}");
                    return match e {
                        PidFileError::InUse { .. } => exit::UNAVAILABLE,
                        _ => exit::CANTCREAT,
                    };
                }
            }
        }
    };
    // Before listening: from the first accepted connection on, a signal must
    // mean a graceful shutdown, never the default "terminate now".
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return exit::OSERR;
        }
    };
    let handoff = match Handoff::from_current_process() {
        Ok(handoff) => handoff.ready_timeout(config.server.upgrade_timeout),
        Err(e) => {
            eprintln!("error: cannot find this program's path for upgrades: {e}");
            return exit::OSERR;
        }
    };
    let handoff = Arc::new(match &args.pid_file {
        Some(path) => handoff.pid_file(path),
        None => handoff,
    });

    let certs = Certs::default();
    let listeners = match listen(&config, &mut inherited, &certs) {
        Ok(listeners) => listeners,
        Err(message) => {
            eprintln!("error: {message}");
            tracing::error!("refusing to start: {message}");
            return exit::UNAVAILABLE;
        }
    };
    for listener in &listeners {
        if let Err(e) = handoff.register(listener) {
            tracing::warn!(
                listener = listener.name(),
                "upgrades will not pass this socket: {e}"
            );
        }
    }

    let admin = match admin_listener(&config, &mut inherited) {
        Ok(admin) => admin,
        Err(message) => {
            eprintln!("error: {message}");
            tracing::error!("refusing to start: {message}");
            return exit::UNAVAILABLE;
        }
    };
    inherited.close_unclaimed();
    if let Some(listener) = &admin {
        if let Err(e) = handoff.register(listener) {
            tracing::warn!("upgrades will not pass the admin socket: {e}");
        }
    }

    // Written only now that we listen: a script that waits for the pid file
    // may connect at once. The parent of an upgrade writes it for us.
    if let (Some(file), None) = (&pid_file, &ready_pipe) {
        if let Err(e) = file.write() {
            eprintln!("error: {e}");
            return exit::CANTCREAT;
        }
    }

    let shutdown = Shutdown::new();
    let config = Reloadable::new(config);
    let source_for_reload = source.clone();
    let metrics = Metrics::new();
    let stats = RequestStats::new();
    let app = App::new(config.clone(), shutdown.clone());
    let metrics_on = config.load().server.metrics;
    let main_app = match (&admin, metrics_on) {
        // Metrics only on the admin address when there is one: the main
        // listeners may face the internet.
        (Some(_), _) | (None, false) => app.clone(),
        (None, true) => app.clone().with_metrics(metrics.clone()),
    };
    let serving = grace::serve(listeners, main_app, &shutdown).limits(config.load().limits);
    let running = if metrics_on {
        serving.observe(stats.clone()).start()
    } else {
        tracing::info!("metrics disabled: no /metrics, requests are not tallied");
        serving.start()
    };
    follow_limits(&config, running.clone());
    if let Some(admin) = admin {
        let admin_app = if metrics_on {
            tracing::info!(addr = %admin.local_addr(), "metrics on the admin address only");
            app.with_metrics(metrics.clone())
        } else {
            app
        };
        // Not observed: scrapes are not the traffic being measured.
        let _admin = grace::serve(vec![admin], admin_app.admin(), &shutdown)
            .limits(config.load().limits)
            .start();
    }
    let reloader = Reloader::new(config.clone(), move || source_for_reload.load())
        .with_prepare(listen_changes(running, handoff.clone(), certs.clone()));
    follow_upgrade_timeout(&config, handoff.clone());
    let server = &config.load().server;
    if args.watch || server.watch {
        match &source {
            Source::File(path) => {
                if let Err(e) =
                    grace::watch::watch(path.clone(), reloader.clone(), server.watch_debounce)
                {
                    eprintln!("error: {e}");
                    return exit::OSERR;
                }
            }
            Source::Embedded => tracing::warn!("--watch ignored: no config file to watch"),
        }
    }
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(
        MetricsCollector::new(reloader.clone(), shutdown.clone())
            .with_handoff(handoff.clone())
            .with_requests(stats)
            .started_at(started),
    ));
    registry.register_collector(Box::new(ConfigCollector {
        config: config.clone(),
    }));
    // Twice a day is plenty for a two-week warning.
    certs.watch_expiry(std::time::Duration::from_secs(12 * 3600));
    registry.register_collector(Box::new(CertCollector {
        certs: certs.clone(),
    }));
    metrics.install(registry);
    tracing::info!(
        pid = std::process::id(),
        generation = 1,
        config = %source.origin(),
        "ready"
    );
    let notifier = match Notifier::from_env() {
        Ok(notifier) => notifier.map(Arc::new),
        Err(e) => {
            tracing::warn!("NOTIFY_SOCKET is unusable, not notifying systemd: {e}");
            None
        }
    };

    let lifecycle = Lifecycle::new(reloader, shutdown, |config: &Config| DrainSettings {
        delay: config.server.shutdown_delay,
        timeout: config.server.shutdown_timeout,
        idle_grace: config.server.idle_grace,
    })
    .with_handoff(handoff);
    let lifecycle = match notifier.clone() {
        Some(notifier) => lifecycle.with_notifier(notifier),
        None => lifecycle,
    };
    let control = match control_socket {
        None => None,
        Some(socket) => {
            let path = socket.path().display().to_string();
            let info = ServerInfo::new(match &source {
                // Absolute: the operator may ask from another directory.
                Source::File(path) => Some(
                    std::path::absolute(path)
                        .unwrap_or_else(|_| path.clone())
                        .display()
                        .to_string(),
                ),
                Source::Embedded => None,
            });
            let info = {
                let certs = certs.clone();
                info.with_certificates(move || certs.status())
            };
            match ControlServer::start(socket, lifecycle.controller(), info) {
                Ok(mut server) => {
                    // An upgrade's new process takes the path over only now
                    // that it serves: until then it reaches the old one.
                    if let Err(e) = server.publish() {
                        tracing::error!("control socket not published: {e}");
                    }
                    tracing::info!(path, "control socket ready");
                    Some(server)
                }
                Err(e) => {
                    eprintln!("error: cannot serve the control socket {path}: {e}");
                    return exit::OSERR;
                }
            }
        }
    };
    // Everything is up: tell systemd (signal handlers are installed, above)
    // and the process that started us, if any.
    if let Some(notifier) = &notifier {
        let status = "serving generation 1";
        if ready_pipe.is_some() {
            notifier.ready_as_main(status);
        } else {
            notifier.ready(status);
        }
    }
    if let Some(pipe) = ready_pipe {
        if let Err(e) = pipe.notify() {
            tracing::warn!("the process that started us is gone, serving on: {e}");
        }
    }

    let outcome = lifecycle.run(signals).await;
    if let Some(control) = control {
        // A `stop --wait` client gets its last line before we exit.
        control.close(std::time::Duration::from_secs(1)).await;
    }
    drop(pid_file);
    let code = match outcome {
        Outcome::Drained { .. } => exit::OK,
        Outcome::Forced { .. } => exit::FORCED,
    };
    tracing::info!(code, "exiting");
    code
}

/// One listener per configured address, plain and TLS: the inherited socket
/// of that name (or address) when there is one, a newly bound one otherwise.
/// An upgrade hands TLS sockets over like plain ones; the new process's
/// configuration says again which are TLS.
fn listen(
    config: &Config,
    inherited: &mut Inherited,
    certs: &Certs,
) -> Result<Vec<Listener>, String> {
    let plain = config.server.listen.iter().map(|addr| (*addr, None));
    let tls = config.tls.iter().flat_map(|tls| {
        certs.install(&tls.store);
        let handle = certs.handle(&tls.store);
        tls.listen
            .iter()
            .map(move |addr| (*addr, Some(handle.clone())))
    });
    let mut listeners = Vec::new();
    for (addr, tls) in plain.chain(tls) {
        let name = addr.to_string();
        let listener = match inherited.listener(&name, addr) {
            Some(Ok(listener)) => {
                tracing::info!(name, addr = %listener.local_addr(), "using inherited socket");
                listener
            }
            Some(Err(e)) => return Err(format!("cannot use the inherited socket for {name}: {e}")),
            None => Listener::bind(addr).map_err(|e| e.to_string())?,
        };
        listeners.push(match tls {
            Some(tls) => listener.with_tls(tls),
            None => listener,
        });
    }
    Ok(listeners)
}

/// Name of the admin socket in a hand-off: not an address, so it can never
/// be taken for a main listener (or the other way round).
const ADMIN_NAME: &str = "admin";

/// The admin listener, when `[server] admin_listen` is set: inherited from a
/// parent of an upgrade, or newly bound.
fn admin_listener(config: &Config, inherited: &mut Inherited) -> Result<Option<Listener>, String> {
    let Some(addr) = config.server.admin_listen else {
        return Ok(None);
    };
    let listener = match inherited.listener(ADMIN_NAME, addr) {
        Some(Ok(listener)) => listener,
        Some(Err(e)) => return Err(format!("cannot use the inherited admin socket: {e}")),
        None => Listener::bind(addr)
            .map_err(|e| e.to_string())?
            .with_name(ADMIN_NAME),
    };
    Ok(Some(listener))
}

/// Keeps the upgrade timeout in step with reloads.
fn follow_upgrade_timeout(config: &Reloadable<Config>, handoff: Arc<Handoff>) {
    let mut changes = config.subscribe();
    let config = config.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            handoff.set_ready_timeout(config.load().server.upgrade_timeout);
        }
    });
}

/// Applies `[limits]` changes on reload: new connections get the new limits.
fn follow_limits(config: &Reloadable<Config>, running: Running) {
    let mut changes = config.subscribe();
    let config = config.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let limits = config.load().limits;
            if limits != running.limits() {
                running.set_limits(limits);
                tracing::info!(?limits, "limits changed: new connections use them");
            }
        }
    });
}

/// Applies `[server] listen` and `[server.tls]` changes on reload. New
/// addresses are bound before the swap, so a failure rejects the whole
/// reload and changes nothing; after the swap the new certificates are
/// installed (new handshakes use them, open connections keep theirs), new
/// addresses start accepting, and removed addresses stop (their connections
/// drain). Unchanged addresses keep their socket and its backlog. An address
/// that moves between plain and TLS is refused: its socket would have to be
/// closed and bound again, which an upgrade does without losing the backlog.
fn listen_changes(
    running: Running,
    handoff: Arc<Handoff>,
    certs: Certs,
) -> impl Fn(&Config, &Config) -> Result<Option<Commit>, BoxError> + Send + Sync + 'static {
    move |old: &Config, new: &Config| {
        if old.server.control_socket != new.server.control_socket
            || old.server.admin_listen != new.server.admin_listen
            || old.server.metrics != new.server.metrics
        {
            tracing::warn!(
                "`control_socket`, `admin_listen` and `metrics` changes take effect at the next \
                 start or upgrade"
            );
        }
        let old_all = addresses(old);
        let new_all = addresses(new);
        for (addr, tls) in &new_all {
            if old_all.iter().any(|(a, t)| a == addr && t != tls) {
                return Err(format!(
                    "{addr} moves between `[server] listen` and `[server.tls] listen`: \
                     that needs an upgrade (`grace upgrade`), not a reload"
                )
                .into());
            }
        }
        let added: Vec<(SocketAddr, bool)> = new_all
            .iter()
            .filter(|a| !old_all.contains(a))
            .copied()
            .collect();
        let removed: Vec<String> = old_all
            .iter()
            .filter(|a| !new_all.contains(a))
            .map(|(addr, _)| addr.to_string())
            .collect();
        let store = new.tls.as_ref().map(|tls| tls.store.clone());
        if added.is_empty() && removed.is_empty() && store.is_none() {
            return Ok(None);
        }
        let bound = added
            .into_iter()
            .map(|(addr, tls)| Listener::bind(addr).map(|l| (l, tls)))
            .collect::<Result<Vec<_>, _>>()?;
        let running = running.clone();
        let handoff = handoff.clone();
        let certs = certs.clone();
        Ok(Some(Box::new(move || {
            if let Some(store) = &store {
                certs.install(store);
            }
            for (listener, tls) in bound {
                if let Err(e) = handoff.register(&listener) {
                    tracing::warn!(
                        listener = listener.name(),
                        "upgrades will not pass this socket: {e}"
                    );
                }
                let listener = match (tls, &store) {
                    (true, Some(store)) => listener.with_tls(certs.handle(store)),
                    _ => listener,
                };
                running.add(listener);
            }
            for name in removed {
                handoff.unregister(&name);
                running.remove(&name);
            }
        })))
    }
}

/// Every address served, and whether over TLS.
fn addresses(config: &Config) -> Vec<(SocketAddr, bool)> {
    let plain = config.server.listen.iter().map(|a| (*a, false));
    let tls = config
        .tls
        .iter()
        .flat_map(|t| t.listen.iter().map(|a| (*a, true)));
    plain.chain(tls).collect()
}
