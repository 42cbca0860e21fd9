//! grace: the server binary. A thin user of the `grace` library: it owns the
//! command line, the configuration schema, the routes and the log format.

mod cli;
mod client;
mod config;
mod exit;
mod logging;
mod metrics;
mod routes;
mod run;
mod serve;
mod status;
mod stdio;
mod tls;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use client::Action;
use config::Source;

fn main() -> ExitCode {
    stdio::ensure_open();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let code = match cli.command {
        None => serve_or_run(&cli.serve),
        Some(Command::Serve(args)) => serve_or_run(&args),
        Some(Command::Check(args)) => check(&source(args.config)),
        Some(Command::Status(args)) => client::run(Action::Status, &args),
        Some(Command::Reload(args)) => client::run(Action::Reload, &args),
        Some(Command::Upgrade(args)) => client::run(Action::Upgrade, &args),
        Some(Command::Stop(args)) => client::run(Action::Stop { wait: args.wait }, &args.client),
        Some(Command::Run(args)) => run::main(&args),
    };
    ExitCode::from(code)
}

/// `grace serve`; with an `[app]` section in the configuration, `grace run`
/// on it.
fn serve_or_run(args: &cli::ServeArgs) -> u8 {
    // First, while this is the only thread (the log's writer is one): the
    // environment is read and cleared, and inherited descriptors are owned
    // before anything can leak them into a child.
    let inherited = grace::handoff::Inherited::take();
    let log = logging::init(args.log_format);
    // Loaded once, with the log running (loading warns about certificates):
    // read here for `[app]`, then served as is.
    let source = source(args.config.config.clone());
    let config = source.load();
    if let (Source::File(path), Ok(loaded)) = (&source, &config) {
        if loaded.app.is_some() {
            let args = cli::RunArgs::from_serve(args, path.clone());
            return run::main_logged(&args, inherited, &log);
        }
    }
    let result = inherited
        .map_err(grace::StartError::from)
        .and_then(|inherited| {
            let config = config.map_err(|e| grace::StartError::Config(Box::new(e)))?;
            serve::run(args, &source, config, inherited, &log)
        });
    serve_exit(result, &log)
}

/// The one place `grace serve`'s failures become exit statuses.
fn serve_exit(result: Result<grace::Outcome, grace::StartError>, log: &logging::Log) -> u8 {
    let code = match result {
        Ok(outcome) => {
            let code = if outcome.is_clean() {
                exit::OK
            } else {
                exit::FORCED
            };
            tracing::info!(code, "exiting");
            code
        }
        Err(e) => {
            match &e {
                // The binary's own message: where in the file, and why.
                grace::StartError::Config(why) => {
                    eprintln!("error: {why:#}");
                    tracing::error!("refusing to start: invalid configuration");
                }
                e => {
                    eprintln!("error: {e}");
                    tracing::error!("refusing to start: {e}");
                }
            }
            e.exit_code()
        }
    };
    log.report_final();
    code
}

fn source(path: Option<std::path::PathBuf>) -> Source {
    path.map_or(Source::Embedded, Source::File)
}

fn check(source: &Source) -> u8 {
    match source.load() {
        Ok(config) => {
            println!(
                "{}: configuration is valid ({} routes, {})",
                source.origin(),
                config.routes.len(),
                addresses(&config)
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::CONFIG
        }
    }
}

/// Every address the configuration serves on, by kind: "listening on A, B;
/// TLS on C; admin on D".
fn addresses(config: &config::Config) -> String {
    let list = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut kinds = Vec::new();
    if !config.server.listen.is_empty() {
        kinds.push(format!("listening on {}", list(&config.server.listen)));
    }
    if let Some(tls) = &config.tls {
        kinds.push(format!("TLS on {}", list(&tls.listen)));
    }
    if let Some(admin) = config.server.admin_listen {
        kinds.push(format!("admin on {admin}"));
    }
    kinds.join("; ")
}
