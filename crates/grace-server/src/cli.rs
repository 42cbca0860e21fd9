//! The command line.

use std::path::PathBuf;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use grace::supervise::Readiness;

use crate::logging::LogFormat;

/// An HTTP server that reloads its configuration, shuts down gracefully and
/// restarts without losing a request.
#[derive(Debug, Parser)]
#[command(name = "grace", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default when no command is given).
    Serve(ServeArgs),
    /// Check a configuration without serving: exit 0 when valid, 78 otherwise.
    Check(ConfigArg),
    /// Show a running server's state: pid, generation, phase, last reload.
    Status(ClientArgs),
    /// Reload a running server's configuration and print the verdict: exit 0
    /// with the new generation, 78 with the validation error.
    Reload(ClientArgs),
    /// Shut a running server down gracefully; answered once the drain
    /// started. With --wait, follow the drain until the process exits.
    Stop(StopArgs),
    /// Hand the listening sockets to a new process of the binary, and wait
    /// for the verdict: exit 0 once the new process serves and the old one
    /// drains, 1 with the reason otherwise.
    Upgrade(ClientArgs),
    /// Run COMMAND on grace's listening sockets (socket activation: fds 3..,
    /// LISTEN_FDS) and restart it without dropping a connection: SIGHUP or
    /// `grace reload` replaces it with a new generation once that one is
    /// ready; a crash restarts it.
    Run(Box<RunArgs>),
}

/// How a command reaches the server: the control socket when given (with a
/// verdict), else signals to the pid in the pid file (without one).
#[derive(Debug, Clone, Args)]
#[group(id = "target", required = true, multiple = true)]
pub struct Target {
    /// The server's control socket: commands get a verdict.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// The pid file the server was started with: commands become signals,
    /// which carry no verdict (except `upgrade`, which the server records
    /// next to the pid file).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the server's replies as JSON lines, for scripts.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for an answer (for `stop --wait`: for the next
    /// progress line).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Follow the drain until the process exits: a live progress line on a
    /// terminal, plain lines otherwise.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Without it, the embedded default is used.
    #[arg(long, short, env = "GRACE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write the server's pid here once it listens; removed at exit. Refused
    /// (exit 69) while another live grace owns it (see `PATH.lock`).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Reload when the config file changes (as `[server] watch = true`).
    #[arg(long)]
    pub watch: bool,
    /// Answer control commands on this unix socket (mode 0600); overrides
    /// `[server] control_socket`.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A configuration file: its `[app]` section says what to run (a
    /// COMMAND given after `--` replaces its `command`), its `[server]`
    /// section where to listen and how to stop. Re-read on every reload.
    #[arg(long, short, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen on this address for the app (repeat for several); the sockets
    /// are passed to it as descriptors 3, 4, ... Replaces `[server] listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// When a new generation is ready: `notify` (it sends READY=1 to
    /// NOTIFY_SOCKET, as gunicorn does) or `delay:DURATION` (it has run that
    /// long, for programs that cannot tell). Default: notify.
    #[arg(long, value_name = "notify|delay:DURATION", value_parser = crate::config::parse_ready)]
    pub ready: Option<Readiness>,
    /// A generation not ready by then failed to start. Default: 30s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// The signal that stops a generation gracefully (TERM, INT, QUIT, ...).
    /// Default: TERM.
    #[arg(long, value_name = "SIGNAL", value_parser = crate::config::parse_signal)]
    pub stop_signal: Option<i32>,
    /// How long a generation may take to stop before it is killed. Default: 30s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub stop_timeout: Option<Duration>,
    /// On SIGTERM, how long /readyz fails before the app is stopped.
    /// Default: `[server] shutdown_delay`, or 0s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Option<Duration>,
    /// The first wait between restarts after repeated crashes (doubled each
    /// time, up to --backoff-max). Default: 100ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub backoff: Option<Duration>,
    /// The longest wait between restarts after crashes. Default: 10s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub backoff_max: Option<Duration>,
    /// Extra environment for the app (repeat for several).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(OsString, OsString)>,
    /// Serve grace's own /healthz, /readyz and /metrics here. Replaces
    /// `[server] admin_listen`.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Write grace's pid here once the app is ready; removed at exit.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Answer control commands (`grace reload`, `status`, `stop`) on this
    /// unix socket. Replaces `[server] control_socket`.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The program to run, and its arguments.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_env(s: &str) -> Result<(OsString, OsString), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.into(), value.into())),
        _ => Err("expected NAME=VALUE".to_owned()),
    }
}

impl RunArgs {
    /// `grace serve` with a configuration that has an `[app]` section.
    pub fn from_serve(args: &ServeArgs, config: PathBuf) -> RunArgs {
        RunArgs {
            config: Some(config),
            listen: Vec::new(),
            ready: None,
            ready_timeout: None,
            stop_signal: None,
            stop_timeout: None,
            shutdown_delay: None,
            backoff: None,
            backoff_max: None,
            env: Vec::new(),
            admin_listen: None,
            pid_file: args.pid_file.clone(),
            control_socket: args.control_socket.clone(),
            log_format: args.log_format,
            command: Vec::new(),
        }
    }
}
