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
    /// Ask a running server to reload its configuration (SIGHUP).
    Reload(PidFileArg),
    /// Ask a running server to shut down gracefully (SIGTERM).
    Stop(PidFileArg),
    /// Hand the listening sockets to a new process of the binary (SIGUSR2),
    /// and wait for the verdict: exit 0 once the new process serves and the
    /// old one drains, 1 with the reason otherwise.
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub pid_file: PidFileArg,
    /// How long to wait for the verdict.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
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
    /// Write the server's pid here once it listens; removed at exit.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Reload when the config file changes (as `[server] watch = true`).
    #[arg(long)]
    pub watch: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct PidFileArg {
    /// The pid file the server was started with.
    #[arg(long, value_name = "PATH")]
    pub pid_file: PathBuf,
}
