//! Logging events that repeat at a client's will (a full connection table,
//! malformed requests, refused control peers) or at the system's (accept
//! failing for want of descriptors) without letting them fill the log.
//!
//! Below both the listeners and HTTP, so each layer logs the same way.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets at most one log line a second through, and counts the ones it held
/// back for the next line to report.
#[derive(Default)]
pub(crate) struct LogLimit {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(lines held back since the last one)` when this event may be
    /// logged. The lock is taken only for events being logged or counted,
    /// never on a request that is served.
    pub(crate) fn admit(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if state
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_a_second_with_the_count_held_back() {
        let limit = LogLimit::default();
        assert_eq!(limit.admit(), Some(0));
        assert_eq!(limit.admit(), None);
        assert_eq!(limit.admit(), None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(limit.admit(), Some(2));
    }
}
