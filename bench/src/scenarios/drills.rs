//! The two drills every server goes through, grace or a peer: a reload storm
//! under load, and a drain with slow requests in flight. Only what the
//! server is told differs (grace gets a new config file before each
//! SIGHUP; nginx's graceful stop is SIGQUIT).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;

use super::KEEPALIVE_CONCURRENCY;
use crate::failure::Failures;
use crate::load::{self, Expect, LoadReport, LoadSpec, Mode, Protocol};
use crate::target::{Server, Signaller};

/// Load starts this long before the first signal and ends this long after
/// the last, so the timeline shows the steady state on both sides.
const MARGIN: Duration = Duration::from_millis(250);

/// Connection-per-request clients during a storm: few, so that the
/// keep-alive p99 stays comparable with the steady scenario, but enough to
/// catch a listener that drops connections.
pub const STORM_CLOSE_CONCURRENCY: usize = 4;

pub struct ReloadStorm {
    pub keepalive: LoadReport,
    pub close: LoadReport,
    /// When each SIGHUP was sent, from the load's origin.
    pub signals: Vec<Duration>,
}

impl ReloadStorm {
    pub fn failures(&self) -> Failures {
        let mut all = self.keepalive.failures.clone();
        all.merge(&self.close.failures);
        all
    }
}

/// Sends `rate` SIGHUPs a second (none with 0) for `length` under
/// keep-alive and connection-per-request load. `before_each(n)` runs before the n-th
/// signal (grace writes a new config there).
pub async fn reload_storm(
    server: &Server,
    path: &str,
    expect: Expect,
    length: Duration,
    rate: u32,
    before_each: impl FnMut(u64) -> Result<()> + Send + 'static,
) -> Result<ReloadStorm> {
    let origin = Instant::now();
    let spec = |protocol, mode, concurrency| {
        let mut spec = LoadSpec::new(server.addr, protocol, mode, concurrency);
        spec.path = path.to_string();
        spec.expect = expect.clone();
        spec.duration = length + 2 * MARGIN;
        spec.record_samples = true;
        spec.origin = origin;
        spec
    };
    let keepalive = tokio::spawn(load::run(spec(
        Protocol::Http1,
        Mode::KeepAlive,
        KEEPALIVE_CONCURRENCY,
    )));
    let close = tokio::spawn(load::run(spec(
        Protocol::Http1,
        Mode::ConnPerRequest,
        STORM_CLOSE_CONCURRENCY,
    )));

    // Rate 0 is the control run: the same load, no signal.
    let paced = pace_reloads(
        server.signaller(),
        origin + MARGIN,
        rate,
        length,
        before_each,
    );
    let (sent, storm) = paced.await.context("reload pacing thread")?;
    let signals = sent.iter().map(|at| *at - origin).collect();
    // Let the load finish before reporting a failed storm, so no task
    // outlives the scenario.
    let keepalive = keepalive.await.context("keep-alive load task")?;
    let close = close.await.context("connection-per-request load task")?;
    storm.context("reload storm")?;
    Ok(ReloadStorm {
        keepalive,
        close,
        signals,
    })
}

/// Sends SIGHUPs for `length`, `rate` a second (none at 0) from `start`, each after
/// `before_each(n)`; returns when each was sent, and the first
/// error, which ends the storm.
///
/// On a thread of its own: writing a config file and signalling take tens of
/// microseconds, and on one of the runtime's threads they would hold up the
/// responses of the load generator's connections queued behind them, which
/// then showed as the server's latency under a storm and never under its
/// control run.
pub fn pace_reloads(
    signaller: Signaller,
    start: Instant,
    rate: u32,
    length: Duration,
    mut before_each: impl FnMut(u64) -> Result<()> + Send + 'static,
) -> tokio::task::JoinHandle<(Vec<Instant>, Result<()>)> {
    tokio::task::spawn_blocking(move || {
        let count = (length.as_secs_f64() * f64::from(rate)).round() as u64;
        let period = Duration::from_secs(1) / rate.max(1);
        let mut signals = Vec::with_capacity(count as usize);
        for n in 0..count {
            let due = start + period * n as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if let Err(e) = before_each(n).and_then(|()| signaller.send(Signal::HUP)) {
                return (signals, Err(e));
            }
            signals.push(Instant::now());
        }
        (signals, Ok(()))
    })
}

pub struct Drain {
    pub sent: u64,
    pub completed: u64,
    pub failures: Failures,
    pub exit_code: Option<i32>,
    /// Exit minus the last complete response, in ms (negative: the client
    /// finished reading after the process was gone).
    pub exit_after_last_ms: f64,
    pub signal_to_exit_ms: f64,
    pub slowest_ms: f64,
}

/// Puts `n` slow requests in flight (split over `protocols`), then sends the
/// server's graceful stop signal and waits for it to exit.
pub async fn drain(
    server: &mut Server,
    path: &str,
    expect: Expect,
    n: usize,
    protocols: &[Protocol],
) -> Result<Drain> {
    let per = n / protocols.len();
    let loads: Vec<_> = protocols
        .iter()
        .map(|protocol| {
            let mut spec = LoadSpec::new(server.addr, *protocol, Mode::KeepAlive, per);
            spec.path = path.to_string();
            spec.expect = expect.clone();
            spec.max_requests = per as u64;
            spec.duration = Duration::from_secs(30);
            spec.timeout = Duration::from_secs(30);
            tokio::spawn(load::run(spec))
        })
        .collect();
    // Long enough for every request to be written and under way on a
    // loaded machine, well short of the slow route's delay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    server.signal(server.graceful_stop_signal())?;
    let mut total = None::<LoadReport>;
    for handle in loads {
        let report = handle.await.context("drain load task")?;
        match &mut total {
            Some(total) => total.merge(report),
            None => total = Some(report),
        }
    }
    let (exit_code, exited) = server.wait_exit(Duration::from_secs(60)).await?;
    let total = total.context("no protocol given to the drain drill")?;
    let last = total.last_ok_at.unwrap_or(signalled);
    let signed_ms = |a: Instant, b: Instant| {
        if a >= b {
            (a - b).as_secs_f64() * 1000.0
        } else {
            -((b - a).as_secs_f64() * 1000.0)
        }
    };
    Ok(Drain {
        sent: (per * protocols.len()) as u64,
        completed: total.ok,
        failures: total.failures.clone(),
        exit_code,
        exit_after_last_ms: signed_ms(exited, last),
        signal_to_exit_ms: signed_ms(exited, signalled),
        slowest_ms: total.latency.max() as f64 / 1000.0,
    })
}
