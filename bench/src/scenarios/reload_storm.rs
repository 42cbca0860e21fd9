//! Reload storm: 100 SIGHUP/s for 10 s under load, each with a real config
//! change, checking that no request fails and no response is torn (body and
//! `x-version` header from two generations). Then the floor's figure, with
//! the tool users measure with: wrk's keep-alive p99 under 100 reloads a
//! second against the same wrk load without reloads, on the same process,
//! in alternating order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;

use super::drills::{self, STORM_CLOSE_CONCURRENCY};
use super::{keep_for_plot, Bench, KEEPALIVE_CONCURRENCY, TOOL_THREADS};
use crate::grace_config::GraceConfig;
use crate::load::Expect;
use crate::plot::Panel;
use crate::report::{fmt, median};
use crate::target::Server;
use crate::tools::wrk::Wrk;
use crate::tools::{self, Measured};

pub const RATE: u32 = 100;

pub async fn run(bench: &mut Bench) -> Result<Option<Panel>> {
    println!("== reload storm");
    let length = bench.pick(Duration::from_secs(10), Duration::from_millis(1500));
    let control_length = bench.pick(Duration::from_secs(3), Duration::from_millis(500));
    let mut lost = Vec::new();
    let mut torn = Vec::new();
    let mut p99 = Vec::new();
    let mut control_p99 = Vec::new();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut signalled = Vec::new();
    let mut versions = Vec::new();
    let mut wrk_rounds = Vec::new();
    let mut panel = None;
    let wrk = Wrk {
        threads: TOOL_THREADS,
        connections: KEEPALIVE_CONCURRENCY,
        close: false,
        duration: bench.tool_duration(),
    };
    for round in 0..bench.paired_rounds {
        let quiet = bench.quiet().await;
        let mut server = Server::grace(&bench.grace, &GraceConfig::new(1)).await?;
        let config_path = server.config_path().context("grace has a config file")?;
        // The control: the same load on the same process, without signals,
        // so "p99 versus steady" compares equal loads.
        let control = drills::reload_storm(
            &server,
            "/v",
            Expect::VersionEcho,
            control_length,
            0,
            |_| Ok(()),
        )
        .await?;
        let log_start = server.log.len();
        let path = config_path.clone();
        let storm =
            drills::reload_storm(&server, "/v", Expect::VersionEcho, length, RATE, move |n| {
                GraceConfig::new(n + 2).write(&path)
            })
            .await?;
        // The last reload may still be under way.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ok_lines = server.log.matching("reload accepted", log_start).len();
        let bad_lines = server.log.matching("reload rejected", log_start).len();
        if let Some(bin) = &bench.wrk {
            let next_version = storm.signals.len() as u64 + 2;
            let pair = wrk_pair(&server, &config_path, bin, wrk, next_version, round).await?;
            println!(
                "   round {} with {}: {} req/s p99 {} ms under {RATE} reloads/s, \
                 {} req/s p99 {} ms without, failures {}",
                round + 1,
                wrk.command_line(),
                fmt(pair.storm.throughput),
                fmt(pair.storm.p99_ms),
                fmt(pair.control.throughput),
                fmt(pair.control.p99_ms),
                pair.failures()
            );
            wrk_rounds.push(pair);
        }
        server.signal(Signal::TERM)?;
        server.wait_exit(Duration::from_secs(10)).await?;

        let mut failures = storm.failures();
        failures.merge(&control.failures());
        println!(
            "   round {}: {} signals, {} reloads accepted, {} rejected, {} versions served, \
             keep-alive {} req/s p99 {} ms (control without reloads: {} req/s p99 {} ms), failures {}",
            round + 1,
            storm.signals.len(),
            ok_lines,
            bad_lines,
            storm.keepalive.versions_seen.max(storm.close.versions_seen),
            fmt(storm.keepalive.throughput()),
            fmt(storm.keepalive.quantile_ms(0.99)),
            fmt(control.keepalive.throughput()),
            fmt(control.keepalive.quantile_ms(0.99)),
            failures.describe()
        );
        control_p99.push(control.keepalive.quantile_ms(0.99));
        lost.push(failures.total() as f64);
        torn.push(failures.get(crate::failure::FailureKind::Torn) as f64);
        p99.push(storm.keepalive.quantile_ms(0.99));
        accepted.push(ok_lines as f64);
        rejected.push(bad_lines as f64);
        signalled.push(storm.signals.len() as f64);
        versions.push(storm.keepalive.versions_seen.max(storm.close.versions_seen) as f64);
        keep_for_plot(&mut panel, quiet, || Panel::from_storm("grace", storm));
    }
    let r = &mut bench.report;
    r.figure("reload", "SIGHUPs sent", "count", signalled);
    r.figure("reload", "reloads accepted (log)", "count", accepted);
    r.figure("reload", "reloads rejected (log)", "count", rejected);
    r.figure("reload", "distinct versions served", "count", versions);
    r.figure(
        "reload",
        "failed requests (all kinds)",
        "count",
        lost.clone(),
    );
    r.figure("reload", "torn responses", "count", torn.clone());
    r.figure(
        "reload",
        format!("keep-alive p99 (c{KEEPALIVE_CONCURRENCY})"),
        "ms",
        p99.clone(),
    );
    let total_lost = lost.iter().sum::<f64>() as u64;
    let total_torn = torn.iter().sum::<f64>() as u64;
    r.check_losses(
        format!("reload storm: 0 failures (keep-alive c{KEEPALIVE_CONCURRENCY} + conn-per-request c{STORM_CLOSE_CONCURRENCY}, no retries)"),
        format!("{total_lost} failed"),
        total_lost,
    );
    r.check_losses(
        "reload storm: 0 torn responses",
        format!("{total_torn} torn"),
        total_torn,
    );
    r.figure(
        "reload",
        "control (same load, no reloads) keep-alive p99",
        "ms",
        control_p99.clone(),
    );
    report_wrk(bench, wrk, &wrk_rounds);
    let r = &mut bench.report;
    let ratios: Vec<f64> = p99.iter().zip(&control_p99).map(|(p, c)| p / c).collect();
    let ratio = median(&ratios);
    r.figure("reload", "keep-alive p99 / control p99", "ratio", ratios);
    r.check(
        "reload storm, the harness's client: p99 <= 1.2x the same load without reloads (secondary)",
        format!(
            "{}x (median of per-round ratios; p99 medians {} ms storm, {} ms control)",
            fmt(ratio),
            fmt(median(&p99)),
            fmt(median(&control_p99))
        ),
        ratio <= 1.2,
    );
    if let Some(steady) = bench.steady_keepalive_p99_ms {
        let versus: Vec<f64> = p99.iter().map(|p| p / steady).collect();
        r.figure(
            "reload",
            "keep-alive p99 / steady-scenario p99",
            "ratio",
            versus,
        );
    }
    Ok(panel.map(|(_, panel)| panel))
}

/// One round of wrk: the same `wrk` run without reloads and under
/// [`RATE`] reloads a second, each a new config file, in an order that
/// alternates with the round.
struct WrkPair {
    control: Measured,
    storm: Measured,
    reloads: usize,
}

impl WrkPair {
    fn failures(&self) -> String {
        let mut all = self.control.failures.clone();
        all.merge(&self.storm.failures);
        all.describe()
    }
}

async fn wrk_pair(
    server: &Server,
    config_path: &Path,
    bin: &Path,
    wrk: Wrk,
    first_version: u64,
    round: usize,
) -> Result<WrkPair> {
    let storm = || async {
        let path: PathBuf = config_path.to_owned();
        let paced = drills::pace_reloads(
            server.signaller(),
            Instant::now(),
            RATE,
            wrk.duration,
            move |n| GraceConfig::new(first_version + n).write(&path),
        );
        let measured = wrk.run(bin, server.addr).await;
        let (sent, paced) = paced.await.context("reload pacing thread")?;
        paced.context("reload storm under wrk")?;
        Ok::<_, anyhow::Error>((measured?, sent.len()))
    };
    let (control, (storm, reloads)) = if round % 2 == 0 {
        let control = wrk.run(bin, server.addr).await?;
        (control, storm().await?)
    } else {
        let storm = storm().await?;
        (wrk.run(bin, server.addr).await?, storm)
    };
    Ok(WrkPair {
        control,
        storm,
        reloads,
    })
}

/// The floor, judged with wrk as the steady floors are.
fn report_wrk(bench: &mut Bench, wrk: Wrk, rounds: &[WrkPair]) {
    let floor = format!(
        "reload storm, `{}` on `/`: p99 <= 1.2x the same wrk load without reloads",
        wrk.command_line()
    );
    if bench.wrk.is_none() {
        bench
            .report
            .not_measured(floor, tools::missing("wrk", "wrk"));
        return;
    }
    let each = |f: &dyn Fn(&WrkPair) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let ratios = each(&|p| p.storm.p99_ms / p.control.p99_ms);
    let ratio = median(&ratios);
    let lost = rounds
        .iter()
        .map(|p| p.control.failures.total() + p.storm.failures.total())
        .sum::<u64>();
    let r = &mut bench.report;
    r.figure(
        "reload",
        "wrk: reloads sent per run",
        "count",
        each(&|p| p.reloads as f64),
    );
    r.figure(
        "reload",
        "wrk keep-alive p99 under reloads",
        "ms",
        each(&|p| p.storm.p99_ms),
    );
    r.figure(
        "reload",
        "wrk keep-alive p99 without reloads",
        "ms",
        each(&|p| p.control.p99_ms),
    );
    r.figure(
        "reload",
        "wrk keep-alive throughput under reloads / without",
        "ratio",
        each(&|p| p.storm.throughput / p.control.throughput),
    );
    r.figure(
        "reload",
        "wrk keep-alive p99 under reloads / without",
        "ratio",
        ratios,
    );
    r.check_losses(
        format!("reload storm under `{}`: 0 errors", wrk.command_line()),
        format!("{lost} failed"),
        lost,
    );
    r.check(
        floor,
        format!(
            "{}x (median of per-round ratios; p99 medians {} ms under reloads, {} ms without)",
            fmt(ratio),
            fmt(median(&each(&|p| p.storm.p99_ms))),
            fmt(median(&each(&|p| p.control.p99_ms)))
        ),
        ratio <= 1.2,
    );
}
