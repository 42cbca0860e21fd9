//! Upgrade roll: 10 zero-downtime upgrades (`grace upgrade --pid-file P`)
//! under keep-alive and connection-per-request load, with no retries.
//!
//! The command exits 0 once the new process is ready and the pid file names
//! it. Until grace has the command, the scenario says it is skipped and why.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;
use tokio::process::Command;

use super::drills::STORM_CLOSE_CONCURRENCY;
use super::{keep_for_plot, Bench, KEEPALIVE_CONCURRENCY};
use crate::failure::Failures;
use crate::grace_config::GraceConfig;
use crate::load::{self, Expect, LoadReport, LoadSpec, Mode, Protocol};
use crate::plot::Panel;
use crate::report::{fmt, median};
use crate::target::Server;

/// Time between two upgrades: long enough for the old process to drain.
const SPACING: Duration = Duration::from_millis(700);

const FLOOR: &str = "10 upgrades under keep-alive and conn-per-request load: 0 failures";

pub async fn run(bench: &mut Bench) -> Result<Option<Panel>> {
    println!("== upgrade roll");
    if let Some(why) = unavailable(bench).await {
        let why = format!("upgrade roll skipped: {why}");
        println!("   {why}");
        bench.report.not_measured(FLOOR, why.clone());
        bench.report.note(why);
        return Ok(None);
    }
    let upgrades = bench.pick(10u32, 3);
    let mut ready_ms = Vec::new();
    let mut failed = Vec::new();
    let mut all = Failures::default();
    let mut done = 0;
    let mut panel = None;
    for round in 0..bench.rounds {
        let quiet = bench.quiet().await;
        let roll = roll(bench, upgrades).await?;
        let mut failures = roll.keepalive.failures.clone();
        failures.merge(&roll.close.failures);
        println!(
            "   round {}: {}/{upgrades} upgrades, trigger-to-ready median {} ms; keep-alive {} req/s \
             failures {}; conn-per-request {} req/s failures {}",
            round + 1,
            roll.ready_ms.len(),
            fmt(median(&roll.ready_ms)),
            fmt(roll.keepalive.throughput()),
            roll.keepalive.failures.describe(),
            fmt(roll.close.throughput()),
            roll.close.failures.describe()
        );
        if let Some(why) = &roll.refused {
            bench
                .report
                .note(format!("upgrade roll round {}: {why}", round + 1));
        }
        done += roll.ready_ms.len();
        ready_ms.extend(&roll.ready_ms);
        failed.push(failures.total() as f64);
        all.merge(&failures);
        keep_for_plot(&mut panel, quiet, || {
            let mut samples = roll.keepalive.samples;
            samples.extend(roll.close.samples);
            Panel {
                label: "grace".to_string(),
                samples,
                events: roll.events,
            }
        });
    }
    let r = &mut bench.report;
    r.figure(
        "upgrade",
        "upgrade trigger to ready (every upgrade)",
        "ms",
        ready_ms,
    );
    r.figure(
        "upgrade",
        format!("failed requests per {upgrades} upgrades"),
        "count",
        failed,
    );
    let asked = upgrades as usize * bench.rounds;
    r.check_losses(
        FLOOR,
        format!(
            "{done} of {asked} upgrades done, {} failed requests ({})",
            all.total(),
            all.describe()
        ),
        all.total() + (asked - done) as u64,
    );
    Ok(panel.map(|(_, panel)| panel))
}

struct Roll {
    keepalive: LoadReport,
    close: LoadReport,
    events: Vec<Duration>,
    ready_ms: Vec<f64>,
    /// Why the roll stopped early, if it did.
    refused: Option<String>,
}

/// One grace, `upgrades` upgrades under load, then a graceful stop of
/// whichever process serves at the end.
async fn roll(bench: &Bench, upgrades: u32) -> Result<Roll> {
    let mut server = Server::grace(&bench.grace, &GraceConfig::new(1)).await?;
    let pid_file = server.pid_file().context("grace has a pid file")?;
    let origin = Instant::now();
    let spec = |mode, concurrency| {
        let mut spec = LoadSpec::new(server.addr, Protocol::Http1, mode, concurrency);
        spec.path = "/v".to_string();
        spec.expect = Expect::VersionEcho;
        spec.duration = SPACING * (upgrades + 1);
        spec.record_samples = true;
        spec.origin = origin;
        spec
    };
    let keepalive = tokio::spawn(load::run(spec(Mode::KeepAlive, KEEPALIVE_CONCURRENCY)));
    let close = tokio::spawn(load::run(spec(
        Mode::ConnPerRequest,
        STORM_CLOSE_CONCURRENCY,
    )));

    let mut events = Vec::new();
    let mut ready_ms = Vec::new();
    let mut refused = None;
    for n in 0..upgrades {
        tokio::time::sleep_until((origin + SPACING / 2 + SPACING * n).into()).await;
        let triggered = Instant::now();
        events.push(origin.elapsed());
        let out = Command::new(&bench.grace)
            .arg("upgrade")
            .arg("--pid-file")
            .arg(&pid_file)
            .output()
            .await
            .context("running grace upgrade")?;
        if !out.status.success() {
            refused = Some(format!(
                "upgrade {} failed ({}): {}",
                n + 1,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            break;
        }
        ready_ms.push(triggered.elapsed().as_secs_f64() * 1000.0);
    }
    let keepalive = keepalive.await.context("keep-alive load task")?;
    let close = close.await.context("connection-per-request load task")?;
    server.follow_pid_file()?;
    server.signal(Signal::TERM)?;
    server.wait_exit(Duration::from_secs(30)).await?;
    Ok(Roll {
        keepalive,
        close,
        events,
        ready_ms,
        refused,
    })
}

/// Why the upgrade cannot be run with this grace binary, if it cannot.
async fn unavailable(bench: &Bench) -> Option<String> {
    match Command::new(&bench.grace)
        .arg("upgrade")
        .arg("--help")
        .output()
        .await
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`grace upgrade --help` exits {} (this grace has no upgrade command yet)",
            out.status
                .code()
                .map_or("by a signal".to_string(), |c| c.to_string())
        )),
        Err(e) => Some(format!("cannot run {}: {e}", bench.grace.display())),
    }
}
