//! `grace serve`: wires the configuration, the routes and the metrics onto
//! the library's [`grace::Server`], which does the start-up in its one
//! order. Errors go back to `main`, which maps them to exit statuses.

use grace::control::ServerInfo;
use grace::handoff::Inherited;
use grace::metrics::RequestStats;
use grace::reload::Commit;
use grace::tls::SharedTls;
use grace::{BoxError, DrainSettings, Outcome, Server, StartError, Started};

use crate::cli::ServeArgs;
use crate::config::{Config, Source};
use crate::logging::Log;
use crate::metrics::{ConfigCollector, Metrics};
use crate::routes::App;
use crate::status;
use crate::tls::{self, CertCollector};

/// Serves `config`, loaded from `source`, until a shutdown is over.
/// `inherited` was taken first thing in `main`, before the log's thread
/// started.
pub fn run(
    args: &ServeArgs,
    source: &Source,
    config: Config,
    inherited: Inherited,
    log: &Log,
) -> Result<Outcome, StartError> {
    let server = server(args, source, config).inherited(inherited);
    let certs = server.certificates();
    server.block_on(|server| async move {
        log.report_dropped();
        let started = server.start()?;
        tracing::info!(config = %source.origin(), "configuration loaded");
        let started = wire(started, certs, source);
        started.run().await
    })
}

/// The server the configuration and the command line describe.
fn server(args: &ServeArgs, source: &Source, config: Config) -> Server<Config> {
    let reload_source = source.clone();
    let mut server = Server::new(move || reload_source.load())
        .listen_with(|c: &Config| c.server.listen.clone())
        .listen_tls_with(
            |c: &Config| c.tls.as_ref().map(|t| t.listen.clone()).unwrap_or_default(),
            |c: &Config| c.tls.as_ref().map(|t| t.store.clone()),
        )
        .drain_settings(|c: &Config| DrainSettings {
            delay: c.server.shutdown_delay,
            timeout: c.server.shutdown_timeout,
            idle_grace: c.server.idle_grace,
        })
        .upgrade_timeout_with(|c: &Config| c.server.upgrade_timeout)
        .limits_with(|c: &Config| c.limits)
        .prepare_reload(warn_start_only_changes);
    if let Some(addr) = config.server.admin_listen {
        server = server.admin(addr);
    }
    if let Some(path) = &args.pid_file {
        server = server.pid_file(path);
    }
    if args.watch || config.server.watch {
        match source {
            Source::File(path) => server = server.watch(path, config.server.watch_debounce),
            Source::Embedded => tracing::warn!("--watch ignored: no config file to watch"),
        }
    }
    let control = args
        .control_socket
        .clone()
        .or_else(|| config.server.control_socket.clone());
    if let Some(path) = control {
        let certs = server.certificates();
        server = server.control_socket(path, info(source, certs));
    }
    server.initial(config)
}

/// What `status` on the control socket says about us.
fn info(source: &Source, certs: SharedTls) -> ServerInfo {
    ServerInfo::new(match source {
        // Absolute: the operator may ask from another directory.
        Source::File(path) => Some(
            std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
        ),
        Source::Embedded => None,
    })
    .with_certificates(move || tls::status(&certs))
}

/// The routes on the main and admin listeners, and `/metrics` and the
/// status page where they belong.
fn wire(mut started: Started<Config>, certs: SharedTls, source: &Source) -> Started<Config> {
    let config = started.config().clone();
    let metrics_on = config.load().server.metrics;
    let metrics = Metrics::new();
    let stats = RequestStats::new();
    let app = App::new(config.clone(), started.shutdown().clone());
    let has_admin = started.admin_addr().is_some();
    // Metrics only on the admin address when there is one: the main
    // listeners may face the internet.
    let main_app = match (has_admin, metrics_on) {
        (false, true) => app.clone().with_metrics(metrics.clone()),
        _ => app.clone(),
    };
    let running = if metrics_on {
        started.serve(main_app, Some(stats.clone()))
    } else {
        tracing::info!("metrics disabled: no /metrics, requests are not tallied");
        started.serve(main_app, None)
    };
    if let Some(addr) = started.admin_addr() {
        let admin_app = if metrics_on {
            tracing::info!(%addr, "metrics on the admin address only");
            app.with_metrics(metrics.clone())
        } else {
            app
        };
        // Only on the admin address: it tells what the server runs.
        let admin = status::AdminServing::default();
        let page = started
            .status_page(info(source, certs.clone()))
            .version(env!("CARGO_PKG_VERSION"))
            .listeners(status::listeners(&config, running, admin.clone()));
        let page = if metrics_on {
            page.requests(stats.clone())
        } else {
            page
        };
        if let Some(serving) = started.serve_admin(status::Admin::new(page, admin_app.admin())) {
            let _ = admin.set(serving);
        }
    }
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(started.metrics_collector().with_requests(stats)));
    registry.register_collector(Box::new(ConfigCollector { config }));
    // Twice a day is plenty for a two-week warning.
    tls::watch_expiry(certs.clone(), std::time::Duration::from_secs(12 * 3600));
    registry.register_collector(Box::new(CertCollector { certs }));
    metrics.install(registry);
    started
}

/// Says which changes a reload cannot apply: they wait for the next start
/// or upgrade.
fn warn_start_only_changes(old: &Config, new: &Config) -> Result<Option<Commit>, BoxError> {
    if old.server.control_socket != new.server.control_socket
        || old.server.admin_listen != new.server.admin_listen
        || old.server.metrics != new.server.metrics
    {
        tracing::warn!(
            "`control_socket`, `admin_listen` and `metrics` changes take effect at the next start \
             or upgrade"
        );
    }
    Ok(None)
}
