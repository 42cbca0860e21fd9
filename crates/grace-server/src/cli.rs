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
    Run(RunArgs),
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
    /// Listen on this address for the app (repeat for several); the sockets
    /// are passed to it as descriptors 3, 4, ...
    #[arg(long, value_name = "ADDR", required = true)]
    pub listen: Vec<SocketAddr>,
    /// When a new generation is ready: `notify` (it sends READY=1 to
    /// NOTIFY_SOCKET, as gunicorn does) or `delay:DURATION` (it has run that
    /// long, for programs that cannot tell).
    #[arg(long, value_name = "notify|delay:DURATION", default_value = "notify", value_parser = parse_ready)]
    pub ready: Readiness,
    /// A generation not ready by then failed to start.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ready_timeout: Duration,
    /// The signal that stops a generation gracefully (TERM, INT, QUIT, ...).
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub stop_signal: i32,
    /// How long a generation may take to stop before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub stop_timeout: Duration,
    /// On SIGTERM, how long /readyz fails before the app is stopped.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// The first wait between restarts after repeated crashes (doubled each
    /// time, up to --backoff-max).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub backoff: Duration,
    /// The longest wait between restarts after crashes.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,
    /// Extra environment for the app (repeat for several).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(OsString, OsString)>,
    /// Serve grace's own /healthz, /readyz and /metrics here.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Write grace's pid here once the app is ready; removed at exit.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Answer control commands (`grace reload`, `status`, `stop`) on this
    /// unix socket.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The program to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_ready(s: &str) -> Result<Readiness, String> {
    match s.split_once(':') {
        None if s == "notify" => Ok(Readiness::Notify),
        Some(("delay", d)) => humantime::parse_duration(d)
            .map(Readiness::Delay)
            .map_err(|e| format!("{d:?}: {e}")),
        _ => Err("expected `notify` or `delay:DURATION` (such as delay:2s)".to_owned()),
    }
}

fn parse_signal(s: &str) -> Result<i32, String> {
    let name = s.strip_prefix("SIG").unwrap_or(s);
    use rustix::process::Signal;
    let signal = match name.to_ascii_uppercase().as_str() {
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "WINCH" => Signal::WINCH,
        "KILL" => Signal::KILL,
        _ => {
            return Err(
                "expected a signal name: TERM, INT, QUIT, HUP, USR1, USR2, WINCH, KILL".to_owned(),
            )
        }
    };
    Ok(signal.as_raw())
}

fn parse_env(s: &str) -> Result<(OsString, OsString), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.into(), value.into())),
        _ => Err("expected NAME=VALUE".to_owned()),
    }
}
