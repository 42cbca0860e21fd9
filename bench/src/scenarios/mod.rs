//! The scenarios of issue 4. Each starts the servers it needs on loopback,
//! adds its figures and floor checks to the report, and stops them.

pub mod drain;
pub mod drills;
pub mod external;
pub mod footprint;
pub mod reload_storm;
pub mod steady;
pub mod upgrade_roll;

use std::path::PathBuf;
use std::time::Duration;

use crate::report::Report;

/// What every scenario needs: the binaries, the size of the run, and the
/// report being filled.
pub struct Bench {
    pub grace: PathBuf,
    /// `grace-bench-baseline`: hyper with grace's timeouts.
    pub baseline: PathBuf,
    /// `grace-bench-hyper`: hyper on its defaults.
    pub plain_hyper: PathBuf,
    /// nginx from Debian's packages, when installed.
    pub nginx: Option<PathBuf>,
    /// wrk and h2load from Debian's packages, when installed.
    pub wrk: Option<PathBuf>,
    pub h2load: Option<PathBuf>,
    pub quick: bool,
    pub rounds: usize,
    /// Rounds of the scenarios whose floors are medians of paired rounds:
    /// steady and the reload storm.
    pub paired_rounds: usize,
    /// Where the SVG timelines go.
    pub results_dir: PathBuf,
    /// Path of `results_dir` as BENCHMARKS.md links it.
    pub results_link: String,
    pub report: Report,
    /// Median p99 of grace under steady keep-alive load, for the reload
    /// storm's "p99 versus steady".
    pub steady_keepalive_p99_ms: Option<f64>,
    /// Measurements started while other processes kept the CPUs busy.
    pub contended: u32,
}

impl Bench {
    /// Full length in a full run, `quick` in a `--quick` run.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// Waits for other work on the machine (a build) to stop before a
    /// measurement, up to a limit; counts the measurements it could not
    /// protect, for the report. Returns whether the machine was quiet.
    pub async fn quiet(&mut self) -> bool {
        let patience = self.pick(Duration::from_secs(10), Duration::from_secs(1));
        let quiet = crate::machine::wait_until_quiet(patience).await;
        if !quiet {
            self.contended += 1;
        }
        quiet
    }

    /// One steady run of the harness's own client.
    pub fn steady_duration(&self) -> Duration {
        self.pick(Duration::from_secs(2), Duration::from_millis(400))
    }

    /// One steady run of wrk or h2load: the issue's `-d4s`; whole seconds.
    pub fn tool_duration(&self) -> Duration {
        self.pick(Duration::from_secs(4), Duration::from_secs(1))
    }
}

/// Keep-alive clients, as the reference figures (wrk -c64).
pub const KEEPALIVE_CONCURRENCY: usize = 64;
/// Threads of wrk and h2load (`-t2`), as the reference figures.
pub const TOOL_THREADS: usize = 2;
/// Connection-per-request clients (wrk -c16).
pub const CLOSE_CONCURRENCY: usize = 16;

/// The timeline a scenario plots: its first round measured on a quiet
/// machine, else its first round (the report counts contended rounds).
pub fn keep_for_plot<T>(kept: &mut Option<(bool, T)>, quiet: bool, round: impl FnOnce() -> T) {
    let replace = match kept {
        None => true,
        Some((was_quiet, _)) => !*was_quiet && quiet,
    };
    if replace {
        *kept = Some((quiet, round()));
    }
}
