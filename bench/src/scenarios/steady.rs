//! Steady load: throughput and latency of grace against plain hyper (on
//! hyper's defaults), hyper with grace's timeouts and nginx, each measured
//! with wrk and h2load (the tools users check with) and with the harness's
//! own client. Rounds are paired: in each round every server takes the same
//! load one right after the other, first place rotating, so that drift in
//! the machine (thermal, other tenants) falls on every server alike.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;

use super::{Bench, CLOSE_CONCURRENCY, KEEPALIVE_CONCURRENCY, TOOL_THREADS};
use crate::grace_config::{GraceConfig, MESSAGE};
use crate::load::{self, Expect, LoadSpec, Mode, Protocol};
use crate::report::{fmt, median, Table};
use crate::target::{Kind, Server};
use crate::tools::h2load::H2load;
use crate::tools::wrk::Wrk;
use crate::tools::{self, Measured};

/// Every server of the scenario, in the order they are started and shown;
/// grace first, as the ratios pair it with each of the others.
const SERVERS: [Kind; 4] = [Kind::Grace, Kind::PlainHyper, Kind::Baseline, Kind::Nginx];

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Grace => "grace",
        Kind::PlainHyper => "hyper-defaults",
        Kind::Baseline => "hyper-timeouts",
        Kind::Nginx => "nginx",
        Kind::External => "target",
    }
}

fn title(kind: Kind) -> &'static str {
    match kind {
        Kind::Grace => "grace",
        Kind::PlainHyper => "plain hyper",
        Kind::Baseline => "hyper with grace's timeouts",
        Kind::Nginx => "nginx (2 workers)",
        Kind::External => "target",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    KeepAlive,
    Close,
    H2c,
}

enum Generator {
    Wrk(Wrk),
    H2load(H2load),
    Harness {
        protocol: Protocol,
        mode: Mode,
        concurrency: usize,
    },
}

struct Load {
    /// Short, for figure names: `wrk keep-alive`.
    key: &'static str,
    /// The command line or client, for floors and tables.
    title: String,
    shape: Shape,
    generator: Generator,
}

/// h2c: 16 connections of 4 streams, 64 requests in flight as with wrk
/// -c64, spread over enough connections to keep both cores of the server
/// busy; 2 threads, as wrk.
const H2LOAD_CLIENTS: usize = 16;
const H2LOAD_STREAMS: usize = 4;

fn loads(bench: &Bench) -> Vec<Load> {
    let duration = bench.tool_duration();
    let wrk = |connections, close| Wrk {
        threads: TOOL_THREADS,
        connections,
        close,
        duration,
    };
    let keepalive = wrk(KEEPALIVE_CONCURRENCY, false);
    let close = wrk(CLOSE_CONCURRENCY, true);
    let h2load = H2load {
        threads: TOOL_THREADS,
        clients: H2LOAD_CLIENTS,
        streams: H2LOAD_STREAMS,
        duration,
    };
    let harness = |protocol, mode, concurrency| Generator::Harness {
        protocol,
        mode,
        concurrency,
    };
    vec![
        Load {
            key: "wrk keep-alive",
            title: format!("keep-alive, `{}`", keepalive.command_line()),
            shape: Shape::KeepAlive,
            generator: Generator::Wrk(keepalive),
        },
        Load {
            key: "wrk close",
            title: format!("connection-per-request, `{}`", close.command_line()),
            shape: Shape::Close,
            generator: Generator::Wrk(close),
        },
        Load {
            key: "h2load h2c",
            title: format!("h2c, `{}`", h2load.command_line()),
            shape: Shape::H2c,
            generator: Generator::H2load(h2load),
        },
        Load {
            key: "harness keep-alive",
            title: format!("keep-alive, harness client c{KEEPALIVE_CONCURRENCY}"),
            shape: Shape::KeepAlive,
            generator: harness(Protocol::Http1, Mode::KeepAlive, KEEPALIVE_CONCURRENCY),
        },
        Load {
            key: "harness close",
            title: format!("connection-per-request, harness client c{CLOSE_CONCURRENCY}"),
            shape: Shape::Close,
            generator: harness(Protocol::Http1, Mode::ConnPerRequest, CLOSE_CONCURRENCY),
        },
        Load {
            key: "harness h2c",
            title: format!("h2c, harness client c{KEEPALIVE_CONCURRENCY}"),
            shape: Shape::H2c,
            generator: harness(Protocol::H2c, Mode::KeepAlive, KEEPALIVE_CONCURRENCY),
        },
    ]
}

impl Load {
    /// Why this load cannot run here: its tool is not installed.
    fn missing(&self, bench: &Bench) -> Option<String> {
        match self.generator {
            Generator::Wrk(_) if bench.wrk.is_none() => Some(tools::missing("wrk", "wrk")),
            Generator::H2load(_) if bench.h2load.is_none() => {
                Some(tools::missing("h2load", "nghttp2-client"))
            }
            _ => None,
        }
    }

    async fn measure(&self, server: &Server, bench: &Bench) -> Result<Measured> {
        match &self.generator {
            Generator::Wrk(wrk) => {
                let bin = bench.wrk.as_deref().context("wrk is installed")?;
                wrk.run(bin, server.addr).await
            }
            Generator::H2load(h2load) => {
                let bin = bench.h2load.as_deref().context("h2load is installed")?;
                h2load.run(bin, server.addr).await
            }
            Generator::Harness {
                protocol,
                mode,
                concurrency,
            } => {
                let mut spec = LoadSpec::new(server.addr, *protocol, *mode, *concurrency);
                spec.duration = bench.steady_duration();
                spec.expect = Expect::Body(Bytes::from_static(MESSAGE.as_bytes()));
                Ok(Measured::of_load(&load::run(spec).await))
            }
        }
    }
}

/// nginx here has no h2c listener (one port cannot serve both HTTP/1.1
/// and h2c with prior knowledge).
fn serves(kind: Kind, shape: Shape) -> bool {
    !(kind == Kind::Nginx && shape == Shape::H2c)
}

/// results[load][server]: one measurement per round.
type Results = Vec<Vec<Vec<Measured>>>;

pub async fn run(bench: &mut Bench) -> Result<()> {
    println!("== steady");
    let loads = loads(bench);
    let mut servers = Vec::new();
    for kind in SERVERS {
        let server = match kind {
            Kind::Grace => Some(Server::grace(&bench.grace, &GraceConfig::new(1)).await?),
            Kind::PlainHyper => Some(Server::plain_hyper(&bench.plain_hyper).await?),
            Kind::Baseline => Some(Server::baseline(&bench.baseline).await?),
            Kind::Nginx => match &bench.nginx {
                Some(nginx) => Some(Server::nginx(nginx).await?),
                None => None,
            },
            Kind::External => None,
        };
        servers.extend(server);
    }
    for load in &loads {
        if let Some(why) = load.missing(bench) {
            println!("   {}: {why}; skipped", load.key);
        }
    }
    let mut results: Results = loads
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();

    // Warm-up: first connections, page faults, allocator pools.
    for server in &servers {
        let mut spec = LoadSpec::new(
            server.addr,
            Protocol::Http1,
            Mode::KeepAlive,
            KEEPALIVE_CONCURRENCY,
        );
        spec.duration = Duration::from_millis(300);
        load::run(spec).await;
    }

    for round in 0..bench.paired_rounds {
        for (l, load) in loads.iter().enumerate() {
            if load.missing(bench).is_some() {
                continue;
            }
            let takers: Vec<usize> = (0..servers.len())
                .map(|i| (i + round) % servers.len())
                .filter(|&s| serves(servers[s].kind, load.shape))
                .collect();
            // One wait for quiet per paired group: the pairing is what
            // protects the ratios, and waiting before each server would
            // stretch a run on a busy machine by minutes.
            if !bench.quiet().await {
                bench.contended += takers.len() as u32 - 1;
            }
            for s in takers {
                let server = &servers[s];
                let measured = load
                    .measure(server, bench)
                    .await
                    .with_context(|| format!("{} against {}", load.key, name(server.kind)))?;
                println!(
                    "   round {} {:<18} {:<14} {:>9} req/s  p50 {:>6} ms  p99 {:>6} ms  failures {}",
                    round + 1,
                    load.key,
                    name(server.kind),
                    fmt(measured.throughput),
                    fmt(measured.p50_ms),
                    fmt(measured.p99_ms),
                    measured.failures.describe()
                );
                results[l][s].push(measured);
            }
        }
    }

    let kinds: Vec<Kind> = servers.iter().map(|s| s.kind).collect();
    let lost = record_figures(bench, &loads, &kinds, &results);
    check_floors(bench, &loads, &kinds, &results);
    bench.report.table(side_by_side(&loads, &kinds, &results));
    if let Some(l) = loads.iter().position(|l| l.key == "harness keep-alive") {
        bench.steady_keepalive_p99_ms = Some(median(
            &results[l][0].iter().map(|m| m.p99_ms).collect::<Vec<_>>(),
        ));
    }
    bench.report.check_losses(
        "steady: 0 failed requests, every server, every load generator",
        format!("{lost} failed"),
        lost,
    );
    Ok(())
}

/// Throughput and latency of every server under every load, and grace's
/// paired ratios against each peer. Returns the failed requests.
fn record_figures(bench: &mut Bench, loads: &[Load], kinds: &[Kind], results: &Results) -> u64 {
    let mut lost = 0;
    for (l, load) in loads.iter().enumerate() {
        for (s, kind) in kinds.iter().enumerate() {
            let runs = &results[l][s];
            if runs.is_empty() {
                continue;
            }
            let label = format!("{} {}", name(*kind), load.key);
            let each = |f: fn(&Measured) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
            let r = &mut bench.report;
            r.figure(
                "steady",
                format!("{label} throughput"),
                "req/s",
                each(|m| m.throughput),
            );
            r.figure("steady", format!("{label} p50"), "ms", each(|m| m.p50_ms));
            r.figure("steady", format!("{label} p99"), "ms", each(|m| m.p99_ms));
            lost += runs.iter().map(|m| m.failures.total()).sum::<u64>();
        }
        for (s, kind) in kinds.iter().enumerate().skip(1) {
            let Some((tput, p99)) = ratios(results, l, s) else {
                continue;
            };
            let peer = name(*kind);
            let r = &mut bench.report;
            r.figure(
                "steady",
                format!("grace/{peer} {} throughput", load.key),
                "ratio",
                tput,
            );
            r.figure(
                "steady",
                format!("grace/{peer} {} p99", load.key),
                "ratio",
                p99,
            );
        }
    }
    lost
}

/// grace's throughput and p99 over the server at index `s`, per round.
fn ratios(results: &Results, l: usize, s: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let (grace, peer) = (&results[l][0], &results[l][s]);
    if grace.is_empty() || peer.is_empty() {
        return None;
    }
    let pairs = grace.iter().zip(peer);
    Some((
        pairs
            .clone()
            .map(|(g, p)| g.throughput / p.throughput)
            .collect(),
        pairs.map(|(g, p)| g.p99_ms / p.p99_ms).collect(),
    ))
}

#[derive(Clone, Copy)]
enum Bound {
    /// grace's throughput at least this share of the peer's.
    ThroughputAtLeast(f64),
    /// grace's p99 at most this multiple of the peer's.
    P99AtMost(f64),
}

/// The floors of issue 14 (wrk and h2load), then those of issue 4 with the
/// harness's own client as secondary rows.
const FLOORS: [(&str, Kind, Bound, bool); 10] = [
    (
        "wrk keep-alive",
        Kind::PlainHyper,
        Bound::ThroughputAtLeast(0.97),
        false,
    ),
    (
        "wrk keep-alive",
        Kind::Nginx,
        Bound::ThroughputAtLeast(1.0),
        false,
    ),
    (
        "wrk keep-alive",
        Kind::PlainHyper,
        Bound::P99AtMost(1.1),
        false,
    ),
    (
        "wrk close",
        Kind::PlainHyper,
        Bound::ThroughputAtLeast(0.97),
        false,
    ),
    ("wrk close", Kind::PlainHyper, Bound::P99AtMost(1.1), false),
    (
        "h2load h2c",
        Kind::PlainHyper,
        Bound::ThroughputAtLeast(0.97),
        false,
    ),
    ("h2load h2c", Kind::PlainHyper, Bound::P99AtMost(1.1), false),
    (
        "harness keep-alive",
        Kind::Baseline,
        Bound::ThroughputAtLeast(0.95),
        true,
    ),
    (
        "harness keep-alive",
        Kind::Baseline,
        Bound::P99AtMost(1.1),
        true,
    ),
    (
        "harness keep-alive",
        Kind::Nginx,
        Bound::ThroughputAtLeast(1.0),
        true,
    ),
];

fn check_floors(bench: &mut Bench, loads: &[Load], kinds: &[Kind], results: &Results) {
    for (key, peer, bound, secondary) in FLOORS {
        let Some(l) = loads.iter().position(|load| load.key == key) else {
            continue;
        };
        let load = &loads[l];
        let (what, limit) = match bound {
            Bound::ThroughputAtLeast(x) => ("throughput >=", x),
            Bound::P99AtMost(x) => ("p99 <=", x),
        };
        let floor = format!(
            "steady {}: {what} {limit}x {}{}",
            load.title,
            title(peer),
            if secondary { " (secondary)" } else { "" }
        );
        if let Some(why) = load.missing(bench) {
            bench.report.not_measured(floor, why);
            continue;
        }
        let measured = kinds
            .iter()
            .position(|k| *k == peer)
            .and_then(|s| ratios(results, l, s));
        let Some((tput, p99)) = measured else {
            bench.report.not_measured(
                floor,
                "nginx not run (not installed: bench/setup.sh; or --no-nginx)",
            );
            continue;
        };
        let (ratio, met) = match bound {
            Bound::ThroughputAtLeast(x) => {
                let r = median(&tput);
                (r, r >= x)
            }
            Bound::P99AtMost(x) => {
                let r = median(&p99);
                (r, r <= x)
            }
        };
        bench.report.check(floor, format!("{}x", fmt(ratio)), met);
    }
}

/// Medians of every server under every load, and grace's paired ratios.
fn side_by_side(loads: &[Load], kinds: &[Kind], results: &Results) -> Table {
    let mut columns = vec!["load".to_string()];
    columns.extend(kinds.iter().map(|k| title(*k).to_string()));
    columns.extend(
        kinds
            .iter()
            .skip(1)
            .map(|k| format!("grace ÷ {}", title(*k))),
    );
    let rows = loads
        .iter()
        .enumerate()
        .map(|(l, load)| {
            let mut row = vec![load.title.clone()];
            for runs in &results[l] {
                row.push(if runs.is_empty() {
                    "-".to_string()
                } else {
                    let m =
                        |f: fn(&Measured) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
                    format!(
                        "{} req/s, p99 {} ms",
                        fmt(m(|r| r.throughput)),
                        fmt(m(|r| r.p99_ms))
                    )
                });
            }
            for s in 1..kinds.len() {
                row.push(match ratios(results, l, s) {
                    Some((tput, p99)) => {
                        format!("{}x, p99 {}x", fmt(median(&tput)), fmt(median(&p99)))
                    }
                    None => "-".to_string(),
                });
            }
            row
        })
        .collect();
    Table {
        title: "Steady: load generators and baselines side by side".to_string(),
        caption: "Median over paired rounds of successful requests per second and p99 latency; \
                  a ratio is grace's throughput (and p99) over the peer's in the same round. \
                  plain hyper is `grace-bench-hyper` (hyper-util's auto builder on hyper's \
                  defaults, no timer); hyper with grace's timeouts is `grace-bench-baseline`; \
                  nginx serves no h2c here. The wrk and h2load rows are the ones the floors \
                  judge."
            .to_string(),
        columns,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Failures;
    use crate::report::{Report, Verdict};

    fn bench(wrk: bool, h2load: bool) -> Bench {
        let tool = |present: bool, name: &str| present.then(|| name.into());
        Bench {
            grace: "grace".into(),
            baseline: "grace-bench-baseline".into(),
            plain_hyper: "grace-bench-hyper".into(),
            nginx: None,
            wrk: tool(wrk, "/usr/bin/wrk"),
            h2load: tool(h2load, "/usr/bin/h2load"),
            quick: false,
            rounds: 3,
            paired_rounds: 5,
            results_dir: "results".into(),
            results_link: "results".into(),
            report: Report::default(),
            steady_keepalive_p99_ms: None,
            contended: 0,
        }
    }

    fn measured(throughput: f64, p99_ms: f64) -> Measured {
        Measured {
            throughput,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            failures: Failures::default(),
        }
    }

    /// Rounds of every load for grace, plain hyper and hyper with timeouts
    /// (no nginx): grace at `share` of plain hyper's throughput, p99 equal.
    fn results(loads: &[Load], share: &[f64]) -> Results {
        loads
            .iter()
            .map(|_| {
                vec![
                    share.iter().map(|s| measured(1000.0 * s, 2.0)).collect(),
                    share.iter().map(|_| measured(1000.0, 2.0)).collect(),
                    share.iter().map(|_| measured(1000.0, 2.0)).collect(),
                ]
            })
            .collect()
    }

    const KINDS: [Kind; 3] = [Kind::Grace, Kind::PlainHyper, Kind::Baseline];

    fn verdicts(bench: &Bench) -> Vec<(String, Verdict, String)> {
        bench
            .report
            .checks
            .iter()
            .map(|c| (c.floor.clone(), c.verdict, c.measured.clone()))
            .collect()
    }

    #[test]
    fn floors_are_medians_of_paired_rounds_against_plain_hyper() {
        let mut bench = bench(true, true);
        let loads = loads(&bench);
        // One bad round of five does not decide the median.
        check_floors(
            &mut bench,
            &loads,
            &KINDS,
            &results(&loads, &[0.98, 0.5, 0.99, 0.97, 1.0]),
        );
        let checks = verdicts(&bench);
        let (floor, verdict, measured) = &checks[0];
        assert_eq!(
            floor,
            "steady keep-alive, `wrk -t2 -c64 -d4s --latency`: throughput >= 0.97x plain hyper"
        );
        assert_eq!((*verdict, measured.as_str()), (Verdict::Met, "0.980x"));
        let h2 = checks
            .iter()
            .find(|c| {
                c.0.starts_with("steady h2c, `h2load -t2 -c16 -m4 -D 4`: throughput")
            })
            .expect("h2load floor");
        assert_eq!(h2.1, Verdict::Met);
        // nginx is not installed: its floors say so rather than pass or fail.
        let nginx: Vec<_> = checks.iter().filter(|c| c.0.contains("nginx")).collect();
        assert_eq!(nginx.len(), 2);
        assert!(nginx.iter().all(|c| c.1 == Verdict::NotMeasured));

        let mut bench = self::bench(true, true);
        check_floors(
            &mut bench,
            &loads,
            &KINDS,
            &results(&loads, &[0.9, 0.96, 1.0]),
        );
        assert_eq!(verdicts(&bench)[0].1, Verdict::Missed);
    }

    #[test]
    fn a_missing_tool_marks_its_floors_not_measured() {
        let mut bench = bench(false, true);
        let loads = loads(&bench);
        let mut results = results(&loads, &[1.0, 1.0, 1.0]);
        // wrk never ran.
        for (l, load) in loads.iter().enumerate() {
            if matches!(load.generator, Generator::Wrk(_)) {
                results[l].iter_mut().for_each(Vec::clear);
            }
        }
        check_floors(&mut bench, &loads, &KINDS, &results);
        let checks = verdicts(&bench);
        let wrk: Vec<_> = checks.iter().filter(|c| c.0.contains("`wrk ")).collect();
        assert_eq!(wrk.len(), 5);
        for (_, verdict, why) in wrk {
            assert_eq!(*verdict, Verdict::NotMeasured);
            assert!(
                why.contains("wrk not installed (run bench/setup.sh"),
                "{why}"
            );
        }
        assert!(checks
            .iter()
            .any(|c| c.0.contains("h2load") && c.1 == Verdict::Met));
        // The side-by-side table still has a row for wrk, with no figures.
        let table = side_by_side(&loads, &KINDS, &results);
        assert_eq!(table.rows[0][1], "-");
        assert_eq!(table.columns.len(), 1 + 3 + 2);
    }
}
