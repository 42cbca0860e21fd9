//! `grace serve`: wires the configuration, the routes and the lifecycle.

use grace::signals::Signals;
use grace::{DrainSettings, Lifecycle, Listener, Outcome, Reloadable, Reloader, Shutdown};

use crate::cli::ServeArgs;
use crate::config::{Config, Source};
use crate::routes::App;
use crate::{exit, logging};

pub fn run(args: ServeArgs) -> u8 {
    logging::init(args.log_format);
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
    runtime.block_on(serve(args, source, config))
}

async fn serve(args: ServeArgs, source: Source, config: Config) -> u8 {
    // Before binding: from the first accepted connection on, a signal must
    // mean a graceful shutdown, never the default "terminate now".
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return exit::OSERR;
        }
    };

    let mut listeners = Vec::with_capacity(config.server.listen.len());
    for addr in &config.server.listen {
        match Listener::bind(*addr) {
            Ok(listener) => listeners.push(listener),
            Err(e) => {
                eprintln!("error: {e}");
                tracing::error!(%addr, "refusing to start: {e}");
                return exit::UNAVAILABLE;
            }
        }
    }

    let pid_file = match args
        .pid_file
        .as_deref()
        .map(grace::pidfile::PidFile::create)
    {
        None => None,
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            let path = args.pid_file.as_deref().unwrap_or_else(|| "".as_ref());
            eprintln!("error: cannot write pid file {}: {e}", path.display());
            return exit::CANTCREAT;
        }
    };

    let shutdown = Shutdown::new();
    let config = Reloadable::new(config);
    let reloader = Reloader::new(config.clone(), loader(source.clone(), config.clone()));
    grace::serve(
        listeners,
        App::new(config.clone(), shutdown.clone()),
        &shutdown,
    )
    .start();
    tracing::info!(
        pid = std::process::id(),
        generation = 1,
        config = %source.origin(),
        "ready"
    );

    let lifecycle = Lifecycle::new(reloader, shutdown, |config: &Config| DrainSettings {
        delay: config.server.shutdown_delay,
        timeout: config.server.shutdown_timeout,
        idle_grace: config.server.idle_grace,
    });
    let outcome = lifecycle.run(signals).await;
    drop(pid_file);
    let code = match outcome {
        Outcome::Drained { .. } => exit::OK,
        Outcome::Forced { .. } => exit::FORCED,
    };
    tracing::info!(code, "exiting");
    code
}

/// Loads the configuration again for a reload. Changes that only a restart
/// can apply are reported, and the rest is applied.
fn loader(
    source: Source,
    current: Reloadable<Config>,
) -> impl Fn() -> Result<Config, crate::config::ConfigError> + Send + Sync + 'static {
    move || {
        let new = source.load()?;
        let old = current.load();
        if new.server.listen != old.server.listen {
            tracing::warn!(
                old = ?old.server.listen,
                new = ?new.server.listen,
                "listen addresses changed: not applied until a restart"
            );
        }
        Ok(new)
    }
}
