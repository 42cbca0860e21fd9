//! `grace run -- COMMAND`: grace holds the listening sockets and runs the
//! command on them one generation at a time (see [`grace::supervise`]). The
//! library's [`Server`] does the rest as for `grace serve`: signals, the
//! control socket, the pid file, the admin listener, systemd, and upgrades
//! of grace itself. A reload (SIGHUP, `grace reload`) replaces the app's
//! generation; its verdict is the new generation's start.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use grace::control::protocol::AppState;
use grace::control::ServerInfo;
use grace::handoff::{ActivationError, Inherited};
use grace::status::{AppGeneration, AppSource, ListenerStatus};
use grace::supervise::{AppSpec, AppStatus, Backoff, GenerationError, Stopped, Supervisor};
use grace::{BoxError, DrainSettings, Outcome, Server, Shutdown, StartError};

use crate::cli::RunArgs;
use crate::config::{ConfigError, Source};
use crate::exit;
use crate::logging::{self, Log};
use crate::metrics::Metrics;
use crate::status;

/// What the supervisor runs, and how grace around it stops: the command
/// line over the configuration file's `[app]` and `[server]`.
#[derive(Debug, Clone)]
struct RunConfig {
    listen: Vec<std::net::SocketAddr>,
    admin_listen: Option<std::net::SocketAddr>,
    control_socket: Option<std::path::PathBuf>,
    app: AppSpec,
    shutdown_delay: Duration,
    shutdown_timeout: Duration,
}

/// Why the command line and the file do not make a `grace run`.
#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(&'static str),
}

impl SettleError {
    fn exit_code(&self) -> u8 {
        match self {
            SettleError::Config(_) => exit::CONFIG,
            SettleError::Usage(_) => exit::USAGE,
        }
    }
}

impl RunConfig {
    /// Reads the configuration file (if any) and lays the command line over it.
    fn settle(args: &RunArgs) -> Result<RunConfig, SettleError> {
        let file = match &args.config {
            Some(path) => Some(Source::File(path.clone()).load()?),
            None => None,
        };
        let mut app =
            match (
                file.as_ref().and_then(|f| f.app.clone()),
                args.command.is_empty(),
            ) {
                (_, false) => {
                    let from_cli = AppSpec::new(args.command.iter().cloned());
                    match file.as_ref().and_then(|f| f.app.clone()) {
                        Some(spec) => AppSpec {
                            command: from_cli.command,
                            ..spec
                        },
                        None => from_cli,
                    }
                }
                (Some(spec), true) => spec,
                (None, true) => return Err(SettleError::Usage(
                    "nothing to run: give a command after `--`, or an [app] section with --config",
                )),
            };
        let server = file.as_ref().map(|f| &f.server);
        let listen = if args.listen.is_empty() {
            server.map(|s| s.listen.clone()).unwrap_or_default()
        } else {
            args.listen.clone()
        };
        if listen.is_empty() {
            return Err(SettleError::Usage(
                "no address to listen on: give --listen, or `listen` in [server]",
            ));
        }
        if let Some(ready) = args.ready {
            app.ready = ready;
        }
        app.ready_timeout = args.ready_timeout.unwrap_or(app.ready_timeout);
        app.stop_signal = args.stop_signal.unwrap_or(app.stop_signal);
        app.stop_timeout = args.stop_timeout.unwrap_or(app.stop_timeout);
        app.backoff = Backoff {
            initial: args.backoff.unwrap_or(app.backoff.initial),
            max: args.backoff_max.unwrap_or(app.backoff.max),
        };
        app.env.extend(args.env.iter().cloned());
        // grace runs nothing else: whatever the app leaves behind is its.
        app.adopt_orphans = true;
        let defaults = DrainSettings::default();
        Ok(RunConfig {
            listen,
            admin_listen: args.admin_listen.or(server.and_then(|s| s.admin_listen)),
            control_socket: args
                .control_socket
                .clone()
                .or_else(|| server.and_then(|s| s.control_socket.clone())),
            app,
            shutdown_delay: args
                .shutdown_delay
                .or(server.map(|s| s.shutdown_delay))
                .unwrap_or(defaults.delay),
            shutdown_timeout: server.map_or(defaults.timeout, |s| s.shutdown_timeout),
        })
    }
}

/// How `grace run` ended.
enum Ended {
    /// The first generation never became ready.
    FirstFailed(GenerationError),
    /// A shutdown, then the app's stop.
    Stopped(Outcome, Stopped),
}

/// `grace run`, and the one place its failures become exit statuses.
pub fn main(args: &RunArgs) -> u8 {
    // First, while this is the only thread: see `serve_or_run` in main.rs.
    let inherited = Inherited::take();
    let log = logging::init(args.log_format);
    main_logged(args, inherited, &log)
}

/// `main` once the inherited sockets are taken and the log runs: `grace
/// serve` on a configuration with `[app]` comes here.
pub fn main_logged(args: &RunArgs, inherited: Result<Inherited, ActivationError>, log: &Log) -> u8 {
    let config = match RunConfig::settle(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            tracing::error!("refusing to start: {e}");
            log.report_final();
            return e.exit_code();
        }
    };
    let result = inherited
        .map_err(StartError::from)
        .and_then(|inherited| run(args, config, inherited, log));
    let code = match result {
        Ok(Ended::FirstFailed(e)) => {
            eprintln!("error: the app did not start: {e}");
            tracing::error!("the app did not start: {e}");
            exit::APP_FAILED
        }
        Ok(Ended::Stopped(outcome, stopped)) => {
            let code = if stopped.killed || !outcome.is_clean() {
                exit::FORCED
            } else if stopped.is_clean() {
                exit::OK
            } else {
                exit::APP_FAILED
            };
            tracing::info!(code, "exiting");
            code
        }
        Err(e) => {
            eprintln!("error: {e}");
            tracing::error!("refusing to start: {e}");
            e.exit_code()
        }
    };
    log.report_final();
    code
}

fn run(
    args: &RunArgs,
    config: RunConfig,
    inherited: Inherited,
    log: &Log,
) -> Result<Ended, StartError> {
    // The reload below replaces the app: it needs the supervisor, which
    // exists only once the server has its listeners.
    let supervisor: Arc<OnceLock<Arc<Supervisor>>> = Arc::default();
    let app_handle = supervisor.clone();
    let server = server(args, config.clone(), supervisor.clone()).inherited(inherited);
    server.block_on(|server| async move {
        log.report_dropped();
        let mut started = server.start()?;
        let listeners = started.take_listeners();
        for listener in &listeners {
            tracing::info!(addr = %listener.local_addr(), name = listener.name(), "listening for the app");
        }
        let app = match Supervisor::start(config.app.clone(), &listeners).await {
            Ok(app) => Arc::new(app),
            Err(e) => return Ok(Ended::FirstFailed(e)),
        };
        // The supervisor has its own duplicates, and the upgrade hand-off its own.
        drop(listeners);
        let _ = supervisor.set(app.clone());
        let metrics = Metrics::new();
        let admin = status::AdminServing::default();
        let page = started
            .status_page(info(app_handle.clone()))
            .version(env!("CARGO_PKG_VERSION"))
            .listeners(addresses(&config, admin.clone()))
            .apps(Arc::new(Generations { app: app.clone() }));
        let routes = Admin {
            shutdown: started.shutdown().clone(),
            metrics: metrics.clone(),
        };
        if let Some(serving) = started.serve_admin(status::Admin::new(page, routes)) {
            let _ = admin.set(serving);
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(started.metrics_collector()));
        registry.register_collector(Box::new(AppCollector { app: app.clone() }));
        metrics.install(registry);
        let outcome = match started.run().await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Not left running on our sockets once we are gone.
                app.stop().await;
                return Err(e);
            }
        };
        let stopped = app.stop().await;
        Ok(Ended::Stopped(outcome, stopped))
    })
}

fn server(
    args: &RunArgs,
    config: RunConfig,
    supervisor: Arc<OnceLock<Arc<Supervisor>>>,
) -> Server<RunConfig> {
    let app = supervisor.clone();
    let reload_args = args.clone();
    // Runs off the async threads (on the reload thread), so it may wait for
    // the new generation there.
    let replace = move || -> Result<RunConfig, BoxError> {
        // The file again, if any: a new command or timeouts take effect now.
        let new = RunConfig::settle(&reload_args)?;
        let app = supervisor.get().ok_or("the app is not started yet")?;
        let generation =
            tokio::runtime::Handle::current().block_on(app.replace(Some(new.app.clone())))?;
        tracing::info!(generation, "app replaced: the new generation serves");
        Ok(new)
    };
    let mut server = Server::new(replace)
        .listen_with(|c: &RunConfig| c.listen.clone())
        .drain_settings(|c: &RunConfig| DrainSettings {
            delay: c.shutdown_delay,
            timeout: c.shutdown_timeout,
            ..DrainSettings::default()
        })
        .prepare_reload(|old: &RunConfig, new: &RunConfig| {
            if (&old.listen, old.admin_listen, &old.control_socket)
                != (&new.listen, new.admin_listen, &new.control_socket)
            {
                tracing::warn!(
                    "`listen`, `admin_listen` and `control_socket` changes take effect at the next \
                     start or upgrade"
                );
            }
            Ok::<_, BoxError>(None)
        })
        // A new grace is ready once its first app generation is.
        .upgrade_timeout_with(|c: &RunConfig| c.app.ready_timeout + Duration::from_secs(10));
    if let Some(addr) = config.admin_listen {
        server = server.admin(addr);
    }
    if let Some(path) = &args.pid_file {
        server = server.pid_file(path);
    }
    if let Some(path) = &config.control_socket {
        server = server.control_socket(path, info(app));
    }
    server.initial(config)
}

/// What `status` on the control socket and the status page say about us.
fn info(app: Arc<OnceLock<Arc<Supervisor>>>) -> ServerInfo {
    ServerInfo::new(None)
        .with_app(move || app_state(&app.get().map(|app| app.status()).unwrap_or_default()))
}

/// The addresses grace holds for the app (the app accepts there, so grace
/// has no connections to count), and its admin address.
fn addresses(
    config: &RunConfig,
    admin: status::AdminServing,
) -> impl Fn() -> Vec<ListenerStatus> + Send + Sync {
    let (listen, admin_addr) = (config.listen.clone(), config.admin_listen);
    move || {
        let mut all: Vec<_> = listen
            .iter()
            .map(|addr| ListenerStatus {
                kind: "http",
                addr: addr.to_string(),
                connections: None,
            })
            .collect();
        all.extend(admin_addr.iter().map(|addr| ListenerStatus {
            kind: "admin",
            addr: addr.to_string(),
            connections: status::admin_open(&admin),
        }));
        all
    }
}

/// The app's serving generation, for the status page.
struct Generations {
    app: Arc<Supervisor>,
}

impl AppSource for Generations {
    fn generations(&self) -> Vec<AppGeneration> {
        let status = self.app.status();
        vec![AppGeneration {
            generation: status.generation,
            pid: status.pid,
            // No pid: the last one crashed and the next is starting.
            state: if status.pid.is_some() {
                "serving"
            } else {
                "restarting"
            }
            .to_owned(),
            started_at: status.ready_at.map_or(0.0, |at| {
                at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            }),
            restarts: u32::try_from(status.restarts()).unwrap_or(u32::MAX),
        }]
    }
}

fn app_state(status: &AppStatus) -> AppState {
    AppState {
        pid: status.pid,
        generation: status.generation,
        restarts: status.restarts(),
        replaced: status.replaced,
        crash_restarts: status.crash_restarts,
        failed_starts: status.failed_starts,
        last_exit: status
            .last_exit
            .as_ref()
            .map(|(generation, how)| format!("generation {generation}: {how}")),
    }
}

/// grace's own endpoints: `/healthz`, `/readyz` (failing once a stop
/// began), `/metrics`.
#[derive(Clone)]
struct Admin {
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
}

type Answer = Response<Full<Bytes>>;

impl<B> hyper::service::Service<Request<B>> for Admin {
    type Response = Answer;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Answer, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let plain = |status, body: &'static str| {
            let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *res.status_mut() = status;
            res
        };
        let res = match req.uri().path() {
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/readyz" if self.shutdown.is_ready() => plain(StatusCode::OK, "ready\n"),
            "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            "/metrics" => self.metrics.respond(),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        };
        std::future::ready(Ok(res))
    }
}

/// The app's tallies: generations, restarts by reason, failed starts.
#[derive(Debug)]
struct AppCollector {
    app: Arc<Supervisor>,
}

impl Collector for AppCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status: AppStatus = self.app.status();
        encoder
            .encode_descriptor(
                "grace_app_generation",
                "The number of the app generation serving now.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(status.generation as i64))?;
        let mut restarts = encoder.encode_descriptor(
            "grace_app_restarts",
            "New app generations that took over, by reason: replace (reload) or crash.",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in [
            ("replace", status.replaced),
            ("crash", status.crash_restarts),
        ] {
            restarts
                .encode_family(&[("reason", reason)].as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        encoder
            .encode_descriptor(
                "grace_app_failed_starts",
                "App generations that exited or were not ready in time.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&status.failed_starts, None)
    }
}
