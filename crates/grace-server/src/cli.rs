//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
