//! `grace serve`: wires the configuration, the routes and the lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;

use grace::handoff::{Handoff, Inherited};
use grace::pidfile::PidFile;
use grace::reload::Commit;
use grace::signals::Signals;
use grace::{
    BindError, DrainSettings, Lifecycle, Listener, Outcome, Reloadable, Reloader, Running, Shutdown,
};

use crate::cli::ServeArgs;
use crate::config::{Config, Source};
use crate::routes::App;
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

    let listeners = match listen(&config, &mut inherited) {
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

    // A parent that started us writes our pid into the file once we are ready.
    let ready_pipe = inherited.take_ready_pipe();
    let pid_file = match &args.pid_file {
        None => None,
        Some(path) if ready_pipe.is_some() => Some(PidFile::adopt(path)),
        Some(path) => match PidFile::create(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("error: cannot write pid file {}: {e}", path.display());
                return exit::CANTCREAT;
            }
        },
    };

    let shutdown = Shutdown::new();
    let config = Reloadable::new(config);
    let source_for_reload = source.clone();
    let running = grace::serve(
        listeners,
        App::new(config.clone(), shutdown.clone()),
        &shutdown,
    )
    .limits(config.load().limits)
    .start();
    follow_limits(&config, running.clone());
    let reloader = Reloader::new(config.clone(), move || source_for_reload.load())
        .with_prepare(listen_changes(running, handoff.clone()));
    follow_upgrade_timeout(&config, handoff.clone());
    tracing::info!(
        pid = std::process::id(),
        generation = 1,
        config = %source.origin(),
        "ready"
    );
    if let Some(pipe) = ready_pipe {
        if let Err(e) = pipe.notify() {
            tracing::warn!("the process that started us is gone, serving on: {e}");
        }
    }

    let lifecycle = Lifecycle::new(reloader, shutdown, |config: &Config| DrainSettings {
        delay: config.server.shutdown_delay,
        timeout: config.server.shutdown_timeout,
        idle_grace: config.server.idle_grace,
    })
    .with_handoff(handoff);
    let outcome = lifecycle.run(signals).await;
    drop(pid_file);
    let code = match outcome {
        Outcome::Drained { .. } => exit::OK,
        Outcome::Forced { .. } => exit::FORCED,
    };
    tracing::info!(code, "exiting");
    code
}

/// One listener per configured address: the inherited socket of that name
/// (or address) when there is one, a newly bound one otherwise.
fn listen(config: &Config, inherited: &mut Inherited) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::with_capacity(config.server.listen.len());
    for addr in &config.server.listen {
        let name = addr.to_string();
        let listener = match inherited.listener(&name, *addr) {
            Some(Ok(listener)) => {
                tracing::info!(name, addr = %listener.local_addr(), "using inherited socket");
                listener
            }
            Some(Err(e)) => return Err(format!("cannot use the inherited socket for {name}: {e}")),
            None => Listener::bind(*addr).map_err(|e| e.to_string())?,
        };
        listeners.push(listener);
    }
    inherited.close_unclaimed();
    Ok(listeners)
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

/// Applies `[server] listen` changes on reload. New addresses are bound
/// before the swap, so a failure rejects the whole reload and changes
/// nothing; after the swap they start accepting, and removed addresses stop
/// (their connections drain). Unchanged addresses keep their socket and its
/// backlog.
fn listen_changes(
    running: Running,
    handoff: Arc<Handoff>,
) -> impl Fn(&Config, &Config) -> Result<Option<Commit>, BindError> + Send + Sync + 'static {
    move |old: &Config, new: &Config| {
        let added: Vec<SocketAddr> = new
            .server
            .listen
            .iter()
            .filter(|a| !old.server.listen.contains(a))
            .copied()
            .collect();
        let removed: Vec<String> = old
            .server
            .listen
            .iter()
            .filter(|a| !new.server.listen.contains(a))
            .map(ToString::to_string)
            .collect();
        if added.is_empty() && removed.is_empty() {
            return Ok(None);
        }
        let bound = added
            .into_iter()
            .map(Listener::bind)
            .collect::<Result<Vec<_>, _>>()?;
        let running = running.clone();
        let handoff = handoff.clone();
        Ok(Some(Box::new(move || {
            for listener in bound {
                if let Err(e) = handoff.register(&listener) {
                    tracing::warn!(
                        listener = listener.name(),
                        "upgrades will not pass this socket: {e}"
                    );
                }
                running.add(listener);
            }
            for name in removed {
                handoff.unregister(&name);
                running.remove(&name);
            }
        })))
    }
}
