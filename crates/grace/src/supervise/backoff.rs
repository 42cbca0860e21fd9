//! Capped exponential back-off between crash restarts.

use std::time::Duration;

/// How long to wait before restarting an app that crashed again.
///
/// The first crash is restarted at once: the listening sockets stay open,
/// so clients wait in the backlog and a quick restart answers them. Each
/// further crash in a row doubles the wait from `initial`, up to `max`. A
/// generation that served for at least `max` before crashing starts the
/// count afresh.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::supervise::Backoff;
///
/// let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
/// let waits: Vec<_> = (1..=6).map(|crash| backoff.delay(crash)).collect();
/// assert_eq!(waits, [0, 100, 200, 400, 800, 1000].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the second crash in a row.
    pub initial: Duration,
    /// The longest wait; also how long a generation must serve for its
    /// crash to count as a first one again.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 10 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait before restarting after the `crash`-th crash in a row
    /// (counted from 1).
    pub fn delay(&self, crash: u32) -> Duration {
        match crash {
            0 | 1 => Duration::ZERO,
            n => self
                .initial
                .checked_mul(1u32.checked_shl(n - 2).unwrap_or(u32::MAX))
                .unwrap_or(self.max)
                .min(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_of_crashes_stay_capped() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(40), backoff.max);
        assert_eq!(backoff.delay(u32::MAX), backoff.max);
    }
}
