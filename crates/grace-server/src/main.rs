//! grace: the server binary. A thin user of the `grace` library: it owns the
//! command line, the configuration schema, the routes and the log format.

mod cli;
mod config;
mod control;
mod exit;
mod logging;
mod routes;
mod serve;
mod stdio;

use std::process::ExitCode;

use clap::Parser;
use rustix::process::Signal;

use cli::{Cli, Command};
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
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Check(args)) => check(&source(args.config)),
        Some(Command::Reload(args)) => control::send(&args.pid_file, Signal::HUP, "SIGHUP"),
        Some(Command::Stop(args)) => control::send(&args.pid_file, Signal::TERM, "SIGTERM"),
        Some(Command::Upgrade(args)) => control::upgrade(&args.pid_file.pid_file, args.timeout),
    };
    ExitCode::from(code)
}

fn source(path: Option<std::path::PathBuf>) -> Source {
    path.map_or(Source::Embedded, Source::File)
}

fn check(source: &Source) -> u8 {
    match source.load() {
        Ok(config) => {
            println!(
                "{}: configuration is valid ({} routes, listening on {})",
                source.origin(),
                config.routes.len(),
                config
                    .server
                    .listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::CONFIG
        }
    }
}
