//! Reload storm: 100 SIGHUP/s for 10 s under load, each with a real config
//! change, checking that no request fails and no response is torn (body and
//! `x-version` header from two generations).

use std::time::Duration;

use anyhow::{Context, Result};
use rustix::process::Signal;

use super::drills::{self, STORM_CLOSE_CONCURRENCY};
use super::{keep_for_plot, Bench, KEEPALIVE_CONCURRENCY};
use crate::grace_config::GraceConfig;
use crate::load::Expect;
use crate::plot::Panel;
use crate::report::{fmt, median};
use crate::target::Server;

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
    let mut panel = None;
    for round in 0..bench.rounds {
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
        let storm = drills::reload_storm(&server, "/v", Expect::VersionEcho, length, RATE, |n| {
            GraceConfig::new(n + 2).write(&config_path)
        })
        .await?;
        // The last reload may still be under way.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ok_lines = server.log.matching("reload accepted", log_start).len();
        let bad_lines = server.log.matching("reload rejected", log_start).len();
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
    let ratios: Vec<f64> = p99.iter().zip(&control_p99).map(|(p, c)| p / c).collect();
    let ratio = median(&ratios);
    r.figure("reload", "keep-alive p99 / control p99", "ratio", ratios);
    r.check(
        "reload storm: p99 <= 1.2x steady (same load without reloads)",
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
