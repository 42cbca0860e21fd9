//! h2load (nghttp2-client) over h2c with prior knowledge. Its summary has
//! the throughput and the failure counts; its "time for request" line has
//! only min/max/mean/sd, so p50/p99 come from the per-request `--log-file`.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::process::Command;

use super::Measured;
use crate::failure::{FailureKind, Failures};
use crate::load::new_histogram;

/// One h2load run: `h2load -t{threads} -c{clients} -m{streams} -D {secs}
/// --log-file=F http://ADDR/`.
#[derive(Debug, Clone, Copy)]
pub struct H2load {
    pub threads: usize,
    /// Connections.
    pub clients: usize,
    /// Concurrent streams per connection.
    pub streams: usize,
    /// Whole seconds.
    pub duration: Duration,
}

impl H2load {
    pub fn command_line(&self) -> String {
        format!(
            "h2load -t{} -c{} -m{} -D {}",
            self.threads,
            self.clients,
            self.streams,
            self.duration.as_secs()
        )
    }

    pub async fn run(&self, bin: &Path, addr: SocketAddr) -> Result<Measured> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("h2load.log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.clients))
            .arg(format!("-m{}", self.streams))
            .args(["-D", &self.duration.as_secs().max(1).to_string()])
            .arg(format!("--log-file={}", log.display()))
            .arg(format!("http://{addr}/"));
        let limit = self.duration + Duration::from_secs(15);
        let stdout = super::run(cmd, addr, limit).await?;
        let summary =
            parse(&stdout).with_context(|| format!("reading h2load's output:\n{stdout}"))?;
        // h2load exits 0 when it could not connect at all.
        if summary.started == 0 {
            bail!("h2load sent no request to {addr}:\n{stdout}");
        }
        let file = std::fs::File::open(&log)
            .with_context(|| format!("opening h2load's log {}", log.display()))?;
        let log = read_log(std::io::BufReader::new(file))?;
        Ok(summary.measured(&log.latency))
    }
}

/// The summary lines of h2load's report.
#[derive(Debug, Clone, PartialEq)]
pub struct H2loadOutput {
    /// `finished in …, N req/s`: succeeded requests (2xx and 3xx) per second.
    pub requests_per_sec: f64,
    pub started: u64,
    pub done: u64,
    /// Status 2xx or 3xx.
    pub succeeded: u64,
    /// Every request that did not succeed, HTTP-level failures included.
    pub failed: u64,
    /// Failed other than by status (a reset stream, a network error); part of `failed`.
    pub errored: u64,
    /// Timed out; part of `errored`.
    pub timeout: u64,
    pub status_3xx: u64,
}

impl H2loadOutput {
    /// Counted as the harness counts: 3xx is a failure here (the route
    /// answers 200), though h2load counts it as succeeded.
    ///
    /// A connection that closes with requests in flight is not counted by
    /// h2load at all (seen here: a server killed mid-run left 0 failed);
    /// losses under change are the harness client's job, in the drills.
    pub fn failures(&self) -> Failures {
        let mut failures = Failures::default();
        failures.add_n(FailureKind::Timeout, self.timeout);
        failures.add_n(
            FailureKind::Reset,
            self.errored.saturating_sub(self.timeout),
        );
        failures.add_n(
            FailureKind::Non2xx,
            self.failed.saturating_sub(self.errored) + self.status_3xx,
        );
        failures
    }

    /// The summary's figures with percentiles from the log's latencies.
    pub fn measured(&self, latency: &Histogram<u64>) -> Measured {
        let ok = self.succeeded.saturating_sub(self.status_3xx);
        let share = if self.succeeded == 0 {
            0.0
        } else {
            ok as f64 / self.succeeded as f64
        };
        let quantile = |q| {
            if latency.is_empty() {
                f64::NAN
            } else {
                latency.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Measured {
            throughput: self.requests_per_sec * share,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            failures: self.failures(),
        }
    }
}

/// Reads h2load's report: `finished in`, `requests:` and `status codes:`.
pub fn parse(output: &str) -> Result<H2loadOutput> {
    let mut requests_per_sec = None;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let rate = rest
                .split(", ")
                .find_map(|part| part.strip_suffix(" req/s"))
                .ok_or_else(|| anyhow!("no req/s in {line:?}"))?;
            requests_per_sec = Some(
                rate.parse::<f64>()
                    .with_context(|| format!("bad rate in {line:?}"))?,
            );
        } else if let Some(rest) = line
            .strip_prefix("requests: ")
            .or_else(|| line.strip_prefix("status codes: "))
        {
            // `52113 total, 52177 started, …` and `52113 2xx, 0 3xx, …`
            for part in rest.split(", ") {
                let (count, name) = part
                    .split_once(' ')
                    .ok_or_else(|| anyhow!("bad part {part:?} in {line:?}"))?;
                let count = count
                    .parse()
                    .with_context(|| format!("bad count {part:?} in {line:?}"))?;
                counts.insert(name.to_string(), count);
            }
        }
    }
    let count = |name: &str| {
        counts
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("no {name:?} count in h2load's output"))
    };
    Ok(H2loadOutput {
        requests_per_sec: requests_per_sec.ok_or_else(|| anyhow!("no \"finished in\" line"))?,
        started: count("started")?,
        done: count("done")?,
        succeeded: count("succeeded")?,
        failed: count("failed")?,
        errored: count("errored")?,
        timeout: count("timeout")?,
        status_3xx: count("3xx")?,
    })
}

/// What `--log-file` holds: one line per finished request.
pub struct Log {
    /// Microseconds to the end of each 2xx response.
    pub latency: Histogram<u64>,
    /// Lines with another status, or -1 (a failed stream).
    pub not_2xx: u64,
}

/// Reads the tab-separated `start µs, status, µs to end of response` lines.
pub fn read_log(reader: impl BufRead) -> Result<Log> {
    let mut log = Log {
        latency: new_histogram(),
        not_2xx: 0,
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line.context("reading h2load's log")?;
        let mut fields = line.split('\t');
        let (Some(_start), Some(status), Some(micros)) =
            (fields.next(), fields.next(), fields.next())
        else {
            bail!(
                "h2load log line {}: want 3 tab-separated fields in {line:?}",
                n + 1
            );
        };
        let status: i32 = status
            .parse()
            .with_context(|| format!("h2load log line {}: status {status:?}", n + 1))?;
        if (200..300).contains(&status) {
            let micros: u64 = micros
                .parse()
                .with_context(|| format!("h2load log line {}: time {micros:?}", n + 1))?;
            // Values beyond the histogram's bounds are clamped, not lost.
            log.latency.saturating_record(micros.max(1));
        } else {
            log.not_2xx += 1;
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from h2load (nghttp2 1.52.0, Debian) against grace on this
    // machine: `h2load -t2 -c16 -m4 -D 1 --log-file=… http://127.0.0.1:40839/`
    // (the progress lines before "finished" left out).
    const OK: &str = "\
Stopped all clients for thread #0

finished in 1.00s, 52113.00 req/s, 2.14MB/s
requests: 52113 total, 52177 started, 52113 done, 52113 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 52113 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.14MB (2242779) total, 408.15KB (417944) headers (space savings 91.65%), 865.16KB (885921) data
                     min         max         mean         sd        +/- sd
time for request:       12us     18.22ms      1.18ms      1.53ms    87.53%
time for connect:       33us      1.03ms       587us       436us    62.50%
time to 1st byte:     2.37ms      4.23ms      3.16ms       765us    87.50%
req/s           :    3104.89     3390.35     3251.18      116.50    62.50%
";

    // `h2load -t1 -c2 -m2 -D 1 http://127.0.0.1:40839/nope`: grace answers 404.
    const NOT_FOUND: &str = "\
finished in 1.00s, 21553.00 req/s, 757.96KB/s
requests: 21553 total, 21557 started, 21553 done, 0 succeeded, 21553 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 21553 4xx, 0 5xx
traffic: 757.96KB (776148) total, 168.51KB (172554) headers (space savings 91.66%), 210.48KB (215530) data
";

    // `h2load -c1 -D 1 http://127.0.0.1:1/`: nothing listens; exit status 0.
    const REFUSED: &str = "\
finished in 1.00s, 0.00 req/s, 0B/s
requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
";

    // Twenty lines of the `--log-file` of the OK run (every 2600th).
    const LOG: &str = "\
1795990251958379\t200\t1956
1795990251990776\t200\t1271
1795990252042480\t200\t2387
1795990252116776\t200\t530
1795990252146713\t200\t266
1795990252176017\t200\t533
1795990252206130\t200\t1228
1795990252252950\t200\t3549
1795990252318955\t200\t984
1795990252369545\t200\t3094
1795990252420995\t200\t335
1795990252473475\t200\t1509
1795990252513164\t200\t518
1795990252561857\t200\t331
1795990252614889\t200\t779
1795990252680958\t200\t3793
1795990252755278\t200\t333
1795990252801576\t200\t844
1795990252844747\t200\t962
1795990252916552\t200\t1315
";

    #[test]
    fn reads_throughput_and_counts() {
        let out = parse(OK).expect("parses");
        assert_eq!(out.requests_per_sec, 52113.0);
        assert_eq!(
            (out.started, out.done, out.succeeded),
            (52177, 52113, 52113)
        );
        assert_eq!(out.failures().total(), 0);
    }

    #[test]
    fn http_failures_are_counted_as_non_2xx() {
        let out = parse(NOT_FOUND).expect("parses");
        let measured = out.measured(&new_histogram());
        assert_eq!(measured.failures.get(FailureKind::Non2xx), 21553);
        assert_eq!(measured.throughput, 0.0);
        assert!(measured.p99_ms.is_nan());
    }

    #[test]
    fn a_run_that_never_connected_shows_no_request_started() {
        let out = parse(REFUSED).expect("parses");
        assert_eq!(out.started, 0);
    }

    #[test]
    fn percentiles_come_from_the_log_file() {
        let log = read_log(LOG.as_bytes()).expect("reads");
        assert_eq!(log.latency.len(), 20);
        assert_eq!(log.not_2xx, 0);
        let measured = parse(OK).expect("parses").measured(&log.latency);
        // Sorted: … 962 (10th of 20) … 3793 (20th); 3 significant digits.
        assert_eq!(measured.p50_ms, 0.962);
        assert!(
            (measured.p99_ms - 3.793).abs() < 0.004,
            "{}",
            measured.p99_ms
        );
    }

    #[test]
    fn failed_streams_in_the_log_are_not_latencies() {
        // h2load writes status -1 for a failed stream.
        let log = read_log("1\t200\t100\n2\t-1\t5000\n3\t404\t90\n".as_bytes()).expect("reads");
        assert_eq!((log.latency.len(), log.not_2xx), (1, 2));
        assert!(read_log("1\t200\n".as_bytes()).is_err());
    }

    #[test]
    fn output_without_a_summary_is_an_error() {
        assert!(parse("starting benchmark...\n").is_err());
    }
}
