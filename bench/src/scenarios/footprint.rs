//! Footprint: start-to-ready, idle RSS, RSS after 100k requests, and RSS,
//! open fds and reload latency across 10,000 reloads of a 100-route config.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;

use super::{Bench, KEEPALIVE_CONCURRENCY};
use crate::grace_config::GraceConfig;
use crate::load::{self, LoadSpec, Mode, Protocol};
use crate::probe::Probe;
use crate::report::{fmt, median};
use crate::target::{Kind, Server};

/// Routes in the reload-latency config, as the floor says.
const ROUTES: usize = 100;

/// Requests served before the "before" figures of the reloads, over a few
/// connections: enough for both workers to serve, few enough that their
/// buffers, freed but not yet given back, do not inflate the figure.
const WARM_REQUESTS: u64 = 2_000;
const WARM_CONNECTIONS: usize = 4;

pub async fn run(bench: &mut Bench) -> Result<()> {
    println!("== footprint");
    start_and_idle(bench).await?;
    after_requests(bench).await?;
    reloads(bench).await
}

async fn start(bench: &Bench, kind: Kind) -> Result<Server> {
    match (kind, &bench.nginx) {
        (Kind::Baseline, _) => Server::baseline(&bench.baseline).await,
        (Kind::PlainHyper, _) => Server::plain_hyper(&bench.plain_hyper).await,
        (Kind::Nginx, Some(nginx)) => Server::nginx(nginx).await,
        _ => Server::grace(&bench.grace, &GraceConfig::new(1)).await,
    }
}

fn kinds(bench: &Bench) -> Vec<(Kind, &'static str)> {
    let mut kinds = vec![
        (Kind::Grace, "grace"),
        (Kind::PlainHyper, "hyper-defaults"),
        (Kind::Baseline, "hyper-timeouts"),
    ];
    if bench.nginx.is_some() {
        kinds.push((Kind::Nginx, "nginx (master + 2 workers)"));
    }
    kinds
}

async fn start_and_idle(bench: &mut Bench) -> Result<()> {
    let starts = bench.pick(10, 3).max(bench.rounds);
    for (kind, label) in kinds(bench) {
        let _ = bench.quiet().await;
        let mut ready_ms = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..starts {
            let server = start(bench, kind).await?;
            ready_ms.push(server.start_to_ready().as_secs_f64() * 1000.0);
            // Idle means after start-up work settled, not mid-start.
            tokio::time::sleep(Duration::from_millis(100)).await;
            rss.push(server.rss_kib()? as f64 / 1024.0);
        }
        println!(
            "   {label}: start-to-ready median {} ms, idle RSS median {} MiB",
            fmt(median(&ready_ms)),
            fmt(median(&rss))
        );
        if kind == Kind::Grace {
            let (ready, idle) = (median(&ready_ms), median(&rss));
            bench.report.check(
                "start-to-ready (exec to first 200) <= 15 ms",
                format!("{} ms", fmt(ready)),
                ready <= 15.0,
            );
            bench.report.check(
                "idle RSS <= 6 MiB",
                format!("{} MiB", fmt(idle)),
                idle <= 6.0,
            );
        }
        bench.report.figure(
            "footprint",
            format!("{label} start-to-ready"),
            "ms",
            ready_ms,
        );
        bench
            .report
            .figure("footprint", format!("{label} idle RSS"), "MiB", rss);
    }
    Ok(())
}

async fn after_requests(bench: &mut Bench) -> Result<()> {
    let count = bench.pick(100_000, 20_000);
    for (kind, label) in kinds(bench) {
        let mut rss = Vec::new();
        for _ in 0..bench.rounds {
            let server = start(bench, kind).await?;
            let mut spec = LoadSpec::new(
                server.addr,
                Protocol::Http1,
                Mode::KeepAlive,
                KEEPALIVE_CONCURRENCY,
            );
            spec.max_requests = count;
            spec.duration = Duration::from_secs(60);
            let report = load::run(spec).await;
            if report.ok != count {
                bench.report.note(format!(
                    "footprint: {label} served {} of {count} requests ({})",
                    report.ok,
                    report.failures.describe()
                ));
            }
            rss.push(server.rss_kib()? as f64 / 1024.0);
        }
        bench.report.figure(
            "footprint",
            format!("{label} RSS after {count} requests"),
            "MiB",
            rss,
        );
    }
    Ok(())
}

/// One grace with 100 routes; each cycle writes a new version, sends SIGHUP
/// and polls until the new version is served: that time is the reload
/// latency, and no two reloads merge.
async fn reloads(bench: &mut Bench) -> Result<()> {
    let total = bench.pick(10_000u64, 1_000);
    let _ = bench.quiet().await;
    let mut config = GraceConfig::new(1);
    config.filler_routes = ROUTES;
    let mut server = Server::grace(&bench.grace, &config).await?;
    let path = server.config_path().context("grace has a config file")?;
    let mut probe = Probe::new(server.addr);
    // Settle after start, then take the "before" figures with the probe's
    // connection already open, as it stays during the reloads.
    probe.wait_ok("/v", Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_first_request = server.rss_kib()? as f64 / 1024.0;
    // Then a short load, so that every runtime worker has served: the
    // probe's one connection may sit on one worker until the reloads, and
    // the other's first requests (its stack grows to the depth of the
    // request path, its allocator arena gets its first buffers: about 40 KiB
    // measured) would otherwise count as growth from reloads.
    let mut warm = LoadSpec::new(
        server.addr,
        Protocol::Http1,
        Mode::KeepAlive,
        WARM_CONNECTIONS,
    );
    warm.path = "/v".to_owned();
    warm.max_requests = WARM_REQUESTS;
    warm.duration = Duration::from_secs(30);
    let warmed = load::run(warm).await;
    anyhow::ensure!(
        warmed.ok == WARM_REQUESTS,
        "warm-up before the reloads: {} of {WARM_REQUESTS} served ({})",
        warmed.ok,
        warmed.failures.describe()
    );
    probe.wait_ok("/v", Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = server.rss_kib()? as f64 / 1024.0;
    let fds_before = server.open_fds()? as f64;
    let mut latency_ms = Vec::with_capacity(total as usize);
    // RSS every tenth of the way: growth that levels off (allocator
    // arenas) reads differently from growth that goes on (a leak).
    let mut trajectory = vec![rss_before];
    for n in 0..total {
        config.version = n + 2;
        config.write(&path)?;
        let signalled = Instant::now();
        server.signal(Signal::HUP)?;
        let served = probe
            .wait_body(
                "/v",
                config.version_body().as_bytes(),
                Duration::from_secs(5),
            )
            .await
            .with_context(|| format!("reload {} of {total}", n + 1))?;
        latency_ms.push((served - signalled).as_secs_f64() * 1000.0);
        if (n + 1) % (total / 10) == 0 {
            trajectory.push(server.rss_kib()? as f64 / 1024.0);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_after = server.rss_kib()? as f64 / 1024.0;
    let fds_after = server.open_fds()? as f64;
    server.signal(Signal::TERM)?;
    server.wait_exit(Duration::from_secs(10)).await?;

    let mut sorted = latency_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let med = median(&latency_ms);
    println!(
        "   {total} reloads ({ROUTES} routes): latency median {} ms p99 {} ms; RSS {} -> {} MiB; fds {} -> {}",
        fmt(med),
        fmt(p99),
        fmt(rss_before),
        fmt(rss_after),
        fds_before,
        fds_after
    );
    let steps: Vec<String> = trajectory.iter().map(|m| fmt(*m)).collect();
    bench.report.note(format!(
        "grace RSS (MiB) every {} reloads of a {ROUTES}-route config: {} \
         (after the first request, before the {WARM_REQUESTS}-request warm-up: {})",
        total / 10,
        steps.join(" → "),
        fmt(rss_first_request)
    ));
    let r = &mut bench.report;
    r.figure(
        "footprint",
        format!("reload latency, {ROUTES} routes (n={total})"),
        "ms",
        latency_ms,
    );
    r.figure(
        "footprint",
        format!("reload latency p99, {ROUTES} routes"),
        "ms",
        vec![p99],
    );
    r.figure(
        "footprint",
        format!("RSS before / after {total} reloads"),
        "MiB",
        vec![rss_before, rss_after],
    );
    r.figure(
        "footprint",
        format!("open fds before / after {total} reloads"),
        "count",
        vec![fds_before, fds_after],
    );
    r.check(
        format!("reload latency (signal to new config served) median <= 2 ms, {ROUTES} routes"),
        format!("{} ms (p99 {} ms)", fmt(med), fmt(p99)),
        med <= 2.0,
    );
    let rss_change = (rss_after - rss_before) / rss_before;
    r.check(
        format!("RSS flat (±5%) after {total} reloads"),
        format!(
            "{} -> {} MiB ({:+.1}%; before: after {WARM_REQUESTS} requests)",
            fmt(rss_before),
            fmt(rss_after),
            rss_change * 100.0
        ),
        rss_change.abs() <= 0.05,
    );
    // Not a floor: shows whether growth is a one-time step or a trend.
    if let Some(&tenth) = trajectory.get(1) {
        r.figure(
            "footprint",
            format!("RSS growth from reload {} to {total}", total / 10),
            "%",
            vec![(rss_after - tenth) / tenth * 100.0],
        );
    }
    r.check(
        format!("open fds flat after {total} reloads"),
        format!("{fds_before} -> {fds_after}"),
        fds_after <= fds_before * 1.05,
    );
    Ok(())
}
