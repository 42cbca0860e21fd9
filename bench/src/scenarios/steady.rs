//! Steady load: throughput and latency of grace against the baseline hyper
//! server (and nginx when installed), rounds alternated so that drift in the
//! machine (thermal, other tenants) falls on every server alike.

use anyhow::Result;
use bytes::Bytes;

use super::{Bench, CLOSE_CONCURRENCY, KEEPALIVE_CONCURRENCY};
use crate::grace_config::{GraceConfig, MESSAGE};
use crate::load::{self, Expect, LoadReport, LoadSpec, Mode, Protocol};
use crate::report::{fmt, median};
use crate::target::{Kind, Server};

struct Load {
    name: &'static str,
    protocol: Protocol,
    mode: Mode,
    concurrency: usize,
}

const LOADS: [Load; 3] = [
    Load {
        name: "keep-alive",
        protocol: Protocol::Http1,
        mode: Mode::KeepAlive,
        concurrency: KEEPALIVE_CONCURRENCY,
    },
    Load {
        name: "conn-per-request",
        protocol: Protocol::Http1,
        mode: Mode::ConnPerRequest,
        concurrency: CLOSE_CONCURRENCY,
    },
    Load {
        name: "h2c",
        protocol: Protocol::H2c,
        mode: Mode::KeepAlive,
        concurrency: KEEPALIVE_CONCURRENCY,
    },
];

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Grace => "grace",
        Kind::Baseline => "baseline",
        Kind::Nginx => "nginx",
        Kind::External => "target",
    }
}

pub async fn run(bench: &mut Bench) -> Result<()> {
    println!("== steady");
    let mut servers = vec![
        Server::grace(&bench.grace, &GraceConfig::new(1)).await?,
        Server::baseline(&bench.baseline).await?,
    ];
    if let Some(nginx) = &bench.nginx {
        servers.push(Server::nginx(nginx).await?);
    }
    // results[load][server] = one report per round
    let mut results: Vec<Vec<Vec<LoadReport>>> = LOADS
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();

    // Warm-up: first connections, page faults, allocator pools.
    for server in &servers {
        let mut spec = spec_for(&LOADS[0], server, bench);
        spec.duration = std::time::Duration::from_millis(300);
        load::run(spec).await;
    }

    for round in 0..bench.rounds {
        for (l, load_kind) in LOADS.iter().enumerate() {
            // Rotate who goes first each round.
            let order: Vec<usize> = (0..servers.len())
                .map(|i| (i + round) % servers.len())
                .collect();
            for s in order {
                let server = &servers[s];
                // nginx here has no h2c listener (one port cannot be both).
                if server.kind == Kind::Nginx && load_kind.protocol == Protocol::H2c {
                    continue;
                }
                let _ = bench.quiet().await;
                let report = load::run(spec_for(load_kind, server, bench)).await;
                println!(
                    "   round {} {:<17} {:<8} {:>9} req/s  p50 {:>6} ms  p99 {:>6} ms  failures {}",
                    round + 1,
                    load_kind.name,
                    name(server.kind),
                    fmt(report.throughput()),
                    fmt(report.quantile_ms(0.5)),
                    fmt(report.quantile_ms(0.99)),
                    report.failures.describe()
                );
                results[l][s].push(report);
            }
        }
    }

    let mut lost = 0;
    for (l, load_kind) in LOADS.iter().enumerate() {
        for (s, server) in servers.iter().enumerate() {
            let runs = &results[l][s];
            if runs.is_empty() {
                continue;
            }
            let label = format!("{} {}", name(server.kind), load_kind.name);
            bench.report.figure(
                "steady",
                format!("{label} throughput"),
                "req/s",
                runs.iter().map(LoadReport::throughput).collect(),
            );
            bench.report.figure(
                "steady",
                format!("{label} p50"),
                "ms",
                runs.iter().map(|r| r.quantile_ms(0.5)).collect(),
            );
            bench.report.figure(
                "steady",
                format!("{label} p99"),
                "ms",
                runs.iter().map(|r| r.quantile_ms(0.99)).collect(),
            );
            lost += runs.iter().map(|r| r.failures.total()).sum::<u64>();
        }
        // Paired ratios: grace (index 0) against each peer in the same round.
        for (s, server) in servers.iter().enumerate().skip(1) {
            let peer = &results[l][s];
            if peer.is_empty() {
                continue;
            }
            let grace = &results[l][0];
            let tput: Vec<f64> = grace
                .iter()
                .zip(peer)
                .map(|(g, p)| g.throughput() / p.throughput())
                .collect();
            let p99: Vec<f64> = grace
                .iter()
                .zip(peer)
                .map(|(g, p)| g.quantile_ms(0.99) / p.quantile_ms(0.99))
                .collect();
            let peer_name = name(server.kind);
            bench.report.figure(
                "steady",
                format!("grace/{peer_name} {} throughput", load_kind.name),
                "ratio",
                tput.clone(),
            );
            bench.report.figure(
                "steady",
                format!("grace/{peer_name} {} p99", load_kind.name),
                "ratio",
                p99.clone(),
            );
            if load_kind.mode == Mode::KeepAlive && load_kind.protocol == Protocol::Http1 {
                let (t, p) = (median(&tput), median(&p99));
                match server.kind {
                    Kind::Baseline => {
                        bench.report.check(
                            "steady keep-alive throughput >= 0.95x baseline",
                            format!("{}x", fmt(t)),
                            t >= 0.95,
                        );
                        bench.report.check(
                            "steady keep-alive p99 <= 1.1x baseline",
                            format!("{}x", fmt(p)),
                            p <= 1.1,
                        );
                    }
                    Kind::Nginx => {
                        bench.report.check(
                            "steady keep-alive throughput >= 1.0x nginx (2 workers)",
                            format!("{}x", fmt(t)),
                            t >= 1.0,
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    if bench.nginx.is_none() {
        bench.report.not_measured(
            "steady keep-alive throughput >= 1.0x nginx (2 workers)",
            "nginx not installed (apt-get install -y nginx)",
        );
    }
    bench.steady_keepalive_p99_ms = Some(median(
        &results[0][0]
            .iter()
            .map(|r| r.quantile_ms(0.99))
            .collect::<Vec<_>>(),
    ));
    bench.report.check_losses(
        "steady: 0 failed requests, every server",
        format!("{lost} failed"),
        lost,
    );
    Ok(())
}

fn spec_for(load_kind: &Load, server: &Server, bench: &Bench) -> LoadSpec {
    let mut spec = LoadSpec::new(
        server.addr,
        load_kind.protocol,
        load_kind.mode,
        load_kind.concurrency,
    );
    spec.duration = bench.steady_duration();
    spec.expect = Expect::Body(Bytes::from_static(MESSAGE.as_bytes()));
    spec
}
