//! The load generators users measure with, run as subprocesses: wrk for
//! HTTP/1.1 and h2load (nghttp2-client) for h2c, both from Debian's
//! packages (`bench/setup.sh`). Their figures sit beside the harness's own
//! client, because a harness's client can favour one server's write pattern
//! over another's, and a user checks with these tools.

pub mod h2load;
pub mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tokio::process::Command;

use crate::failure::Failures;
use crate::load::LoadReport;

/// What one run of any load generator measured, in the units the steady
/// scenario compares.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Successful (2xx) responses per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failures: Failures,
}

impl Measured {
    pub fn of_load(report: &LoadReport) -> Measured {
        Measured {
            throughput: report.throughput(),
            p50_ms: report.quantile_ms(0.5),
            p99_ms: report.quantile_ms(0.99),
            failures: report.failures.clone(),
        }
    }
}

/// A program on the PATH, or in the sbin directories Debian installs
/// daemons into (a non-root PATH may lack them).
pub fn find(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Why a figure was not measured when `tool` is missing.
pub fn missing(tool: &str, package: &str) -> String {
    format!("{tool} not installed (run bench/setup.sh, or apt-get install -y {package})")
}

/// The load generators of this run, with their versions, for the report.
pub fn describe(bench: &crate::scenarios::Bench) -> String {
    let wrk = match &bench.wrk {
        // `wrk -v` prints `wrk debian/4.1.0-3+b2 [epoll] Copyright …` and usage.
        Some(bin) => version(bin, "-v").map_or_else(
            || "wrk (version unknown)".to_string(),
            |v| v.split(" Copyright").next().unwrap_or(&v).to_string(),
        ),
        None => missing("wrk", "wrk"),
    };
    let h2load = match &bench.h2load {
        Some(bin) => version(bin, "--version").unwrap_or_else(|| "h2load".to_string()),
        None => missing("h2load", "nghttp2-client"),
    };
    format!("{wrk}; {h2load}; the harness's own client (`src/load.rs`)")
}

/// The first line a program prints when asked for its version (wrk exits
/// with status 1 after it, so the status is not looked at).
fn version(bin: &Path, flag: &str) -> Option<String> {
    let output = std::process::Command::new(bin).arg(flag).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// Runs a load generator against `addr` and returns its stdout. The run is
/// bounded by the tool's own duration; `limit` is the backstop after which
/// the tool is killed (by its pid, through `kill_on_drop`).
async fn run(mut cmd: Command, addr: SocketAddr, limit: Duration) -> Result<String> {
    ensure!(
        addr.ip().is_loopback(),
        "load generators only run against loopback addresses, not {addr}"
    );
    let shown = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {shown}"))?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{shown} still running after {limit:?}: killed"))?
        .with_context(|| format!("waiting for {shown}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            stdout.trim()
        );
    }
    Ok(stdout)
}

/// A duration as wrk writes it: `598.00us`, `1.78ms`, `2.00s`, `1.50m`.
fn parse_duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| anyhow!("no unit in duration {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("bad duration {text:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown unit in duration {text:?}"),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration_us("598.00us").expect("us"), 598.0);
        assert_eq!(parse_duration_us("1.78ms").expect("ms"), 1780.0);
        assert_eq!(parse_duration_us("2.00s").expect("s"), 2e6);
        assert_eq!(parse_duration_us("1.50m").expect("m"), 90e6);
        assert!(parse_duration_us("12").is_err());
        assert!(parse_duration_us("12xs").is_err());
    }

    #[tokio::test]
    async fn refuses_non_loopback_targets() {
        let err = run(
            Command::new("true"),
            SocketAddr::from(([10, 0, 0, 1], 80)),
            Duration::from_secs(1),
        )
        .await
        .expect_err("not loopback");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[tokio::test]
    async fn a_tool_that_overruns_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let err = run(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], 80)),
            Duration::from_millis(200),
        )
        .await
        .expect_err("killed");
        assert!(err.to_string().contains("killed"), "{err}");
    }
}
