//! Drain: N slow requests in flight, then SIGTERM. Every one must complete,
//! and the process must exit right after the last response, not on a timer.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;

use super::drills::{self, Drain};
use super::Bench;
use crate::grace_config::GraceConfig;
use crate::load::{Expect, Protocol};
use crate::report::{fmt, median, Report};
use crate::target::Server;

/// Slow requests in flight when the signal comes, half HTTP/1.1, half h2c.
pub const IN_FLIGHT: usize = 64;

/// Floor: exit within this long of the last response.
pub const EXIT_FLOOR_MS: f64 = 50.0;

pub async fn run(bench: &mut Bench) -> Result<()> {
    println!("== drain");
    let mut config = GraceConfig::new(1);
    config.slow = bench.pick(Duration::from_secs(2), Duration::from_millis(800));
    let mut rounds = Vec::new();
    for round in 0..bench.rounds {
        let _ = bench.quiet().await;
        let mut server = Server::grace(&bench.grace, &config).await?;
        let drain = drills::drain(
            &mut server,
            "/slow",
            Expect::Body(Bytes::from_static(b"slow")),
            IN_FLIGHT,
            &[Protocol::Http1, Protocol::H2c],
        )
        .await?;
        print_round(round, &drain);
        rounds.push(drain);
    }
    record(&mut bench.report, "grace", "drain", &rounds, true);
    Ok(())
}

pub fn print_round(round: usize, d: &Drain) {
    println!(
        "   round {}: {}/{} completed, exit code {}, exit {} ms after the last response \
         ({} ms after the signal; slowest response {} ms), failures {}",
        round + 1,
        d.completed,
        d.sent,
        exit_code(d),
        fmt(d.exit_after_last_ms),
        fmt(d.signal_to_exit_ms),
        fmt(d.slowest_ms),
        d.failures.describe()
    );
}

/// "-" when there is none: killed by a signal, or not our child (--target).
fn exit_code(d: &Drain) -> String {
    d.exit_code.map_or("-".to_string(), |c| c.to_string())
}

/// Figures of a drain drill; grace is held to the floors, a peer's figures
/// are findings about the peer and go in the notes.
pub fn record(r: &mut Report, who: &str, scenario: &'static str, rounds: &[Drain], floors: bool) {
    let completed: Vec<f64> = rounds
        .iter()
        .map(|d| 100.0 * d.completed as f64 / d.sent as f64)
        .collect();
    let after: Vec<f64> = rounds.iter().map(|d| d.exit_after_last_ms).collect();
    r.figure(
        scenario,
        format!("{who} completed in-flight requests"),
        "%",
        completed,
    );
    r.figure(
        scenario,
        format!("{who} exit after last response"),
        "ms",
        after.clone(),
    );
    r.figure(
        scenario,
        format!("{who} signal to exit"),
        "ms",
        rounds.iter().map(|d| d.signal_to_exit_ms).collect(),
    );
    r.figure(
        scenario,
        format!("{who} slowest response"),
        "ms",
        rounds.iter().map(|d| d.slowest_ms).collect(),
    );
    let lost: u64 = rounds.iter().map(|d| d.sent - d.completed).sum();
    let sent: u64 = rounds.iter().map(|d| d.sent).sum();
    let kinds = rounds
        .iter()
        .fold(crate::failure::Failures::default(), |mut all, d| {
            all.merge(&d.failures);
            all
        });
    let codes: Vec<String> = rounds.iter().map(exit_code).collect();
    let worst = after.iter().copied().fold(f64::MIN, f64::max);
    let completed = format!(
        "{}/{sent} ({}), exit codes {}",
        sent - lost,
        kinds.describe(),
        codes.join(" ")
    );
    let exit = format!("median {} ms, worst {} ms", fmt(median(&after)), fmt(worst));
    if floors {
        r.check_losses(
            format!("{who} drain: 100% of in-flight requests completed"),
            completed,
            lost,
        );
        r.check(
            format!("{who} drain: exit within {EXIT_FLOOR_MS} ms of the last response"),
            exit,
            worst <= EXIT_FLOOR_MS,
        );
    } else {
        r.note(format!("{who} drain: in-flight requests completed {completed}; exit after the last response: {exit}"));
    }
}
