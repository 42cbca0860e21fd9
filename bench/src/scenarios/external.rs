//! External targets: the same reload storm and drain drills, with the same
//! client, against nginx (started here when installed) or a server given by
//! `--target URL --pid PID`, so peers are compared on equal terms.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use super::drain::{print_round, record};
use super::drills;
use super::reload_storm::RATE;
use super::{keep_for_plot, Bench};
use crate::failure::Failures;
use crate::load::{Expect, Protocol};
use crate::plot::Panel;
use crate::report::{fmt, median};
use crate::target::{Server, NGINX_SLOW_BYTES};

/// A server somebody else runs.
pub struct Target {
    pub addr: SocketAddr,
    /// Loaded during the reload storm.
    pub path: String,
    /// Held in flight during the drain.
    pub slow_path: String,
    pub pid: i32,
}

impl Target {
    /// `http://127.0.0.1:PORT/path` or `http://[::1]:PORT/path`: loopback only.
    pub fn parse(url: &str, pid: i32, slow_path: Option<String>) -> Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .context("--target must be an http:// URL")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("--target {url}: want an IP:PORT address"))?;
        if !addr.ip().is_loopback() {
            bail!("--target {url}: the harness only sends load to loopback addresses");
        }
        Ok(Target {
            addr,
            path: path.to_string(),
            slow_path: slow_path.unwrap_or_else(|| path.to_string()),
            pid,
        })
    }
}

/// nginx from Debian's packages: reload storm, then drain, each against a
/// fresh master with 2 workers.
pub async fn nginx(bench: &mut Bench) -> Result<Option<Panel>> {
    let Some(bin) = bench.nginx.clone() else {
        let why =
            "nginx not run (not installed: bench/setup.sh; or --no-nginx); external drills skipped";
        println!("== nginx: {why}");
        bench.report.note(why);
        return Ok(None);
    };
    println!("== nginx (external target, 2 workers)");
    let length = bench.pick(Duration::from_secs(10), Duration::from_millis(1500));
    let mut storms = Vec::new();
    let mut plotted = None;
    for round in 0..bench.rounds {
        let quiet = bench.quiet().await;
        let server = Server::nginx(&bin).await?;
        let storm =
            drills::reload_storm(&server, "/", Expect::Any, length, RATE, |_| Ok(())).await?;
        print_storm(&storm);
        keep_for_plot(&mut plotted, quiet, || round);
        storms.push(storm);
    }
    report_storms(bench, "nginx", &storms);

    let mut rounds = Vec::new();
    for round in 0..bench.rounds {
        let mut server = Server::nginx(&bin).await?;
        let drain = drills::drain(
            &mut server,
            "/slow",
            Expect::Body(Bytes::from(vec![b's'; NGINX_SLOW_BYTES])),
            super::drain::IN_FLIGHT,
            &[Protocol::Http1],
        )
        .await?;
        print_round(round, &drain);
        rounds.push(drain);
    }
    record(&mut bench.report, "nginx", "external", &rounds, false);
    let plotted = plotted.map_or(0, |(_, round)| round);
    Ok(storms
        .into_iter()
        .nth(plotted)
        .map(|storm| Panel::from_storm("nginx (2 workers)", storm)))
}

/// `--target URL --pid PID`: the reload storm and one drain, which ends the target.
pub async fn target(bench: &mut Bench, target: &Target) -> Result<Option<Panel>> {
    println!("== external target {} (pid {})", target.addr, target.pid);
    let length = bench.pick(Duration::from_secs(10), Duration::from_millis(1500));
    let mut server = Server::external(target.addr, target.pid).await?;
    let storm =
        drills::reload_storm(&server, &target.path, Expect::Any, length, RATE, |_| Ok(())).await?;
    print_storm(&storm);
    report_storms(bench, "target", std::slice::from_ref(&storm));
    // A reloading server may still be settling after the storm.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drain = drills::drain(
        &mut server,
        &target.slow_path,
        Expect::Any,
        super::drain::IN_FLIGHT,
        &[Protocol::Http1],
    )
    .await?;
    print_round(0, &drain);
    record(&mut bench.report, "target", "external", &[drain], false);
    Ok(Some(Panel::from_storm("target", storm)))
}

fn print_storm(storm: &drills::ReloadStorm) {
    println!(
        "   reload storm: {} SIGHUPs, keep-alive {} req/s p99 {} ms, failures {}",
        storm.signals.len(),
        fmt(storm.keepalive.throughput()),
        fmt(storm.keepalive.quantile_ms(0.99)),
        storm.failures().describe()
    );
}

fn report_storms(bench: &mut Bench, who: &str, storms: &[drills::ReloadStorm]) {
    let each = |f: &dyn Fn(&drills::ReloadStorm) -> f64| storms.iter().map(f).collect::<Vec<f64>>();
    let signals = each(&|s| s.signals.len() as f64);
    let failed = each(&|s| s.failures().total() as f64);
    let r = &mut bench.report;
    r.figure(
        "external",
        format!("{who} reload storm SIGHUPs"),
        "count",
        signals.clone(),
    );
    r.figure(
        "external",
        format!("{who} reload storm failed requests"),
        "count",
        failed.clone(),
    );
    r.figure(
        "external",
        format!("{who} reload storm keep-alive p99"),
        "ms",
        each(&|s| s.keepalive.quantile_ms(0.99)),
    );
    let kinds = storms.iter().fold(Failures::default(), |mut all, s| {
        all.merge(&s.failures());
        all
    });
    // A peer's lost requests are a finding about the peer, not a failed run.
    r.note(format!(
        "{who} under the reload storm ({} rounds of {} SIGHUPs): {} failed requests per round \
         (median; {} in all: {})",
        storms.len(),
        fmt(median(&signals)),
        fmt(median(&failed)),
        kinds.total(),
        kinds.describe()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_loopback_urls() {
        let t = Target::parse("http://127.0.0.1:8080/slow", 1, None).expect("v4");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.path, "/slow");
        assert_eq!(
            Target::parse("http://[::1]:80", 1, Some("/s".into()))
                .expect("v6")
                .slow_path,
            "/s"
        );
        assert!(Target::parse("http://10.0.0.1:80/", 1, None).is_err());
        assert!(Target::parse("https://127.0.0.1:80/", 1, None).is_err());
    }
}
