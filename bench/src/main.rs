//! grace-bench: the benchmark and drill harness of issue 4.
//!
//! `cargo run --release -p grace-bench -- all`
//! runs every scenario against the `grace` binary of the same build, prints
//! a table and writes BENCHMARKS.md with SVG timelines under bench/results/.
//! `--quick` runs the same drills shorter, for CI; it fails (exit 1) only
//! when requests were lost, never on timing.

mod failure;
mod grace_config;
mod load;
mod machine;
mod plot;
mod probe;
mod procfs;
mod report;
mod scenarios;
mod target;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use plot::Panel;
use report::{Report, RunInfo};
use scenarios::external::Target;
use scenarios::Bench;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every scenario, then BENCHMARKS.md.
    All,
    Steady,
    Reload,
    Upgrade,
    Drain,
    Footprint,
    /// nginx when installed, and `--target` when given.
    External,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark and drill harness for grace: no request lost, no speed lost")]
struct Args {
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Shorter runs (about 30 s for `all`); results go to bench/results/partial/.
    #[arg(long)]
    quick: bool,
    /// Rounds per figure (at least 3 for min/median/max to mean anything)
    /// [default: steady and reload storm 5 (2 with --quick), the others 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// The grace binary [default: `grace` next to this executable].
    #[arg(long)]
    grace: Option<PathBuf>,
    /// "hyper with grace's timeouts" [default: `grace-bench-baseline` next to this executable].
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// "plain hyper", on hyper's defaults [default: `grace-bench-hyper` next to this executable].
    #[arg(long)]
    plain_hyper: Option<PathBuf>,
    /// Don't start nginx even when installed.
    #[arg(long)]
    no_nginx: bool,
    /// Also drill an external server at this loopback URL (needs --pid);
    /// its drain drill stops it with SIGTERM.
    #[arg(long, requires = "pid")]
    target: Option<String>,
    /// Pid of the --target server, for signals and exit.
    #[arg(long, requires = "target")]
    pid: Option<i32>,
    /// Path of a slow route on the --target server for its drain drill
    /// [default: the --target URL's path].
    #[arg(long, requires = "target")]
    target_slow: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // On Ctrl+C or SIGTERM the run is dropped, and with it every server it
    // started (each killed by pid), rather than left running.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => Some(outcome),
            () = interrupted() => None,
        }
    });
    let Some(outcome) = outcome else {
        eprintln!("interrupted: servers stopped, no report written");
        return ExitCode::from(130);
    };
    match outcome {
        Ok(report) if report.lost_requests() => {
            eprintln!("requests were lost: see the floors marked MISSED above");
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without handlers the default action (exit) applies; never resolve.
        _ => std::future::pending().await,
    }
}

/// The workspace root, where BENCHMARKS.md lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A binary built next to this one, or a clear way to get it.
///
/// Under `cargo run`, the binary is built first (into this target directory
/// and profile; a no-op when it is fresh), so one command measures the
/// current code from a fresh clone.
fn sibling(name: &str, package: &str, flag: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let path = exe.with_file_name(name);
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = exe.parent().and_then(Path::file_name) == Some("release".as_ref());
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .current_dir(workspace_root());
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .with_context(|| format!("running cargo to build {name}"))?;
        if !status.success() {
            bail!("building {name} failed ({status})");
        }
    }
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build --release` first (it builds grace and the \
             harness into the same target directory), or pass {flag} PATH",
            path.display()
        );
    }
    Ok(path)
}

async fn run(args: Args) -> Result<Report> {
    let started = Instant::now();
    let load_at_start = machine::load_average();
    let root = workspace_root();
    // Before the run: the tree the binaries were built from, as near as
    // can be told (others may commit while it runs).
    let commit = machine::commit(&root);
    let full = args.scenario == Scenario::All && !args.quick;
    let results_dir = if full {
        root.join("bench/results")
    } else {
        root.join("bench/results/partial")
    };
    std::fs::create_dir_all(&results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;
    let md_path = if full {
        root.join("BENCHMARKS.md")
    } else {
        results_dir.join("BENCHMARKS.md")
    };
    let target = match (&args.target, args.pid) {
        (Some(url), Some(pid)) => Some(Target::parse(url, pid, args.target_slow.clone())?),
        _ => None,
    };
    let mut bench = Bench {
        grace: match args.grace {
            Some(path) => path,
            None => sibling("grace", "grace-server", "--grace")?,
        },
        baseline: match args.baseline {
            Some(path) => path,
            None => sibling("grace-bench-baseline", "grace-bench", "--baseline")?,
        },
        plain_hyper: match args.plain_hyper {
            Some(path) => path,
            None => sibling("grace-bench-hyper", "grace-bench", "--plain-hyper")?,
        },
        nginx: if args.no_nginx {
            None
        } else {
            tools::find("nginx")
        },
        wrk: tools::find("wrk"),
        h2load: tools::find("h2load"),
        quick: args.quick,
        rounds: args.rounds.unwrap_or(3).max(1),
        paired_rounds: args.rounds.unwrap_or(if args.quick { 2 } else { 5 }).max(1),
        results_link: if full {
            "bench/results".to_string()
        } else {
            ".".to_string()
        },
        results_dir,
        report: Report::default(),
        steady_keepalive_p99_ms: None,
        contended: 0,
    };
    let wants = |s: Scenario| args.scenario == Scenario::All || args.scenario == s;

    let mut storm_panels: Vec<Panel> = Vec::new();
    let mut upgrade_panels: Vec<Panel> = Vec::new();
    if wants(Scenario::Steady) {
        scenarios::steady::run(&mut bench).await?;
    }
    if wants(Scenario::Reload) {
        storm_panels.extend(scenarios::reload_storm::run(&mut bench).await?);
    }
    if wants(Scenario::Upgrade) {
        upgrade_panels.extend(scenarios::upgrade_roll::run(&mut bench).await?);
    }
    if wants(Scenario::Drain) {
        scenarios::drain::run(&mut bench).await?;
    }
    if wants(Scenario::Footprint) {
        scenarios::footprint::run(&mut bench).await?;
    }
    if wants(Scenario::External) {
        storm_panels.extend(scenarios::external::nginx(&mut bench).await?);
        if let Some(target) = &target {
            storm_panels.extend(scenarios::external::target(&mut bench, target).await?);
        }
    }
    plot(
        &mut bench,
        "reload-storm.svg",
        "Reload storm: 100 SIGHUP/s, each a new config",
        "reload",
        &storm_panels,
    )?;
    plot(
        &mut bench,
        "upgrade-roll.svg",
        "Upgrade roll under load",
        "upgrade",
        &upgrade_panels,
    )?;

    if bench.contended > 0 {
        let note = format!(
            "{} measurements started while other processes kept the CPUs busy (after waiting for \
             quiet: 10 s each, 1 s with --quick); their figures are less reliable",
            bench.contended
        );
        bench.report.note(note);
    }
    let table = bench.report.printed();
    println!("\n{table}");
    let info = RunInfo {
        command: format!(
            "cargo run --release -p grace-bench -- {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
        machine: machine::describe(),
        date: machine::utc_now(),
        commit,
        grace: relative_to_cwd(&bench.grace),
        rounds: if bench.rounds == bench.paired_rounds {
            bench.rounds.to_string()
        } else {
            format!(
                "{} in steady and the reload storm, {} elsewhere",
                bench.paired_rounds, bench.rounds
            )
        },
        generators: tools::describe(&bench),
        elapsed_secs: started.elapsed().as_secs_f64(),
        load: (load_at_start, machine::load_average()),
    };
    std::fs::write(&md_path, bench.report.markdown(&info))
        .with_context(|| format!("writing {}", md_path.display()))?;
    println!("wrote {} ({:.0} s)", md_path.display(), info.elapsed_secs);
    Ok(bench.report)
}

fn plot(bench: &mut Bench, file: &str, title: &str, event: &str, panels: &[Panel]) -> Result<()> {
    if panels.is_empty() {
        return Ok(());
    }
    let path = bench.results_dir.join(file);
    plot::timeline(&path, title, event, panels)?;
    let names: Vec<&str> = panels.iter().map(|p| p.label.as_str()).collect();
    bench.report.plots.push((
        format!("{title} ({})", names.join(" | ")),
        format!("{}/{file}", bench.results_link),
    ));
    Ok(())
}

/// A path as a reader of BENCHMARKS.md can use it: relative to where the
/// harness ran (the repository), not the absolute path of one machine.
fn relative_to_cwd(path: &std::path::Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        path.strip_prefix(cwd)
            .ok()
            .map(std::path::Path::to_path_buf)
    });
    relative.as_deref().unwrap_or(path).display().to_string()
}
