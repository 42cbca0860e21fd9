//! wrk (HTTP/1.1): keep-alive, or one connection per request with
//! `Connection: close`; `--latency` for the percentiles.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::process::Command;

use super::{parse_duration_us, Measured};
use crate::failure::{FailureKind, Failures};

/// One wrk run: `wrk -t{threads} -c{connections} -d{secs}s --latency
/// [-H 'Connection: close'] http://ADDR/`.
#[derive(Debug, Clone, Copy)]
pub struct Wrk {
    pub threads: usize,
    pub connections: usize,
    /// `Connection: close` on every request: one connection per request.
    pub close: bool,
    /// Whole seconds: wrk's `-d` has no finer unit.
    pub duration: Duration,
}

impl Wrk {
    pub fn command_line(&self) -> String {
        format!(
            "wrk -t{} -c{} -d{}s --latency{}",
            self.threads,
            self.connections,
            self.duration.as_secs(),
            if self.close {
                " -H 'Connection: close'"
            } else {
                ""
            }
        )
    }

    pub async fn run(&self, bin: &Path, addr: SocketAddr) -> Result<Measured> {
        let mut cmd = Command::new(bin);
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg("--latency");
        if self.close {
            cmd.args(["-H", "Connection: close"]);
        }
        cmd.arg(format!("http://{addr}/"));
        // wrk stops on its own at -d; it may wait out its 2 s request timeout.
        let limit = self.duration + Duration::from_secs(15);
        let stdout = super::run(cmd, addr, limit).await?;
        let parsed = parse(&stdout).with_context(|| format!("reading wrk's output:\n{stdout}"))?;
        Ok(parsed.measured())
    }
}

/// The figures of wrk's report that the harness uses.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkOutput {
    /// Completed responses, whatever their status.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// `Socket errors: connect N, read N, write N, timeout N`.
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    /// `Non-2xx or 3xx responses: N`.
    pub non_2xx: u64,
}

impl WrkOutput {
    /// wrk's counters are coarser than the harness's failure kinds: a read
    /// error is a reset or an end of stream before the whole response, a
    /// write error a connection cut under a request, a connect error (on
    /// loopback) a refusal or an exhausted port range.
    pub fn failures(&self) -> Failures {
        let mut failures = Failures::default();
        failures.add_n(FailureKind::ConnectRefused, self.connect_errors);
        failures.add_n(FailureKind::Eof, self.read_errors);
        failures.add_n(FailureKind::Reset, self.write_errors);
        failures.add_n(FailureKind::Timeout, self.timeouts);
        failures.add_n(FailureKind::Non2xx, self.non_2xx);
        failures
    }

    pub fn measured(&self) -> Measured {
        // Requests/sec counts every response; only 2xx ones count here.
        let ok = self.requests.saturating_sub(self.non_2xx);
        let share = if self.requests == 0 {
            0.0
        } else {
            ok as f64 / self.requests as f64
        };
        Measured {
            throughput: self.requests_per_sec * share,
            p50_ms: self.p50_us / 1000.0,
            p99_ms: self.p99_us / 1000.0,
            failures: self.failures(),
        }
    }
}

/// Reads wrk's report (run with `--latency`). Error counters are printed
/// only when non-zero; the throughput and percentiles must be there.
pub fn parse(output: &str) -> Result<WrkOutput> {
    let mut requests = None;
    let mut requests_per_sec = None;
    let mut p50_us = None;
    let mut p99_us = None;
    let mut parsed = WrkOutput {
        requests: 0,
        requests_per_sec: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        connect_errors: 0,
        read_errors: 0,
        write_errors: 0,
        timeouts: 0,
        non_2xx: 0,
    };
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = Some(
                rest.trim()
                    .parse::<f64>()
                    .with_context(|| format!("bad line {line:?}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50_us = Some(parse_duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99_us = Some(parse_duration_us(rest.trim())?);
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = Some(number(count, line)?);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let (name, count) = part
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| anyhow!("bad line {line:?}"))?;
                let count = number(count, line)?;
                match name {
                    "connect" => parsed.connect_errors = count,
                    "read" => parsed.read_errors = count,
                    "write" => parsed.write_errors = count,
                    "timeout" => parsed.timeouts = count,
                    _ => return Err(anyhow!("unknown socket error {name:?} in {line:?}")),
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            parsed.non_2xx = number(rest, line)?;
        }
    }
    parsed.requests = requests.ok_or_else(|| anyhow!("no \"N requests in\" line"))?;
    parsed.requests_per_sec = requests_per_sec.ok_or_else(|| anyhow!("no Requests/sec line"))?;
    parsed.p50_us = p50_us.ok_or_else(|| anyhow!("no 50% line (was --latency given?)"))?;
    parsed.p99_us = p99_us.ok_or_else(|| anyhow!("no 99% line (was --latency given?)"))?;
    Ok(parsed)
}

fn number(text: &str, line: &str) -> Result<u64> {
    text.trim()
        .parse()
        .with_context(|| format!("bad number {text:?} in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from wrk 4.1.0 (Debian 4.1.0-3+b2) against grace on this
    // machine: `wrk -t2 -c64 -d1s --latency http://127.0.0.1:40839/`.
    const KEEP_ALIVE: &str = "\
Running 1s test @ http://127.0.0.1:40839/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.36ms    1.76ms  30.05ms   86.98%
    Req/Sec    35.96k    18.03k   86.25k    70.00%
  Latency Distribution
     50%  598.00us
     75%    1.78ms
     90%    3.60ms
     99%    8.16ms
  71621 requests in 1.00s, 9.15MB read
Requests/sec:  71443.61
Transfer/sec:      9.13MB
";

    // `-H 'Connection: close'` against a path grace answers with 404.
    const NOT_FOUND: &str = "\
Running 1s test @ http://127.0.0.1:40839/nope
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.62ms    3.67ms  38.63ms   93.79%
    Req/Sec    17.49k     3.46k   25.52k    75.00%
  Latency Distribution
     50%  213.00us
     75%    1.83ms
     90%    3.92ms
     99%   20.68ms
  35528 requests in 1.03s, 4.54MB read
  Non-2xx or 3xx responses: 35528
Requests/sec:  34552.75
Transfer/sec:      4.42MB
";

    // The baseline server killed 0.5 s into a 2 s run.
    const SERVER_KILLED: &str = "\
Running 2s test @ http://127.0.0.1:33981/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   277.79us    1.00ms  14.76ms   96.32%
    Req/Sec    45.23k    25.42k   70.28k    83.33%
  Latency Distribution
     50%  103.00us
     75%  134.00us
     90%  191.00us
     99%    5.64ms
  54039 requests in 2.11s, 6.91MB read
  Socket errors: connect 0, read 17, write 72776, timeout 0
Requests/sec:  25665.27
Transfer/sec:      3.28MB
";

    #[test]
    fn reads_throughput_and_percentiles() {
        let out = parse(KEEP_ALIVE).expect("parses");
        assert_eq!(out.requests, 71621);
        assert_eq!(out.requests_per_sec, 71443.61);
        assert_eq!(out.p50_us, 598.0);
        assert_eq!(out.p99_us, 8160.0);
        let measured = out.measured();
        assert_eq!(measured.throughput, 71443.61);
        assert_eq!(measured.p99_ms, 8.16);
        assert_eq!(measured.failures.total(), 0);
    }

    #[test]
    fn non_2xx_responses_are_failures_not_throughput() {
        let measured = parse(NOT_FOUND).expect("parses").measured();
        assert_eq!(measured.failures.get(FailureKind::Non2xx), 35528);
        assert_eq!(measured.throughput, 0.0);
    }

    #[test]
    fn socket_errors_are_failures() {
        let out = parse(SERVER_KILLED).expect("parses");
        assert_eq!((out.read_errors, out.write_errors), (17, 72776));
        let failures = out.failures();
        assert_eq!(failures.total(), 17 + 72776);
        assert_eq!(failures.describe(), "reset=72776 eof=17");
    }

    #[test]
    fn output_without_latency_distribution_is_an_error() {
        let without: String = KEEP_ALIVE
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = parse(&without).expect_err("no p99");
        assert!(err.to_string().contains("99%"), "{err}");
        // What wrk prints when it cannot connect at all (exit status 1).
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused\n").is_err());
    }

    #[test]
    fn command_line_as_the_issue_writes_it() {
        let wrk = Wrk {
            threads: 2,
            connections: 16,
            close: true,
            duration: Duration::from_secs(4),
        };
        assert_eq!(
            wrk.command_line(),
            "wrk -t2 -c16 -d4s --latency -H 'Connection: close'"
        );
    }
}
