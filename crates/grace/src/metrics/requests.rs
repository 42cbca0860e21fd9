//! Per-request tallies kept on the request path: status classes and a
//! duration histogram, atomics only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::histogram::{AtomicHistogram, HistogramSnapshot};

/// The status classes counted, in label order.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::metrics::{RequestStats, CLASSES};
///
/// let stats = RequestStats::new();
/// stats.record(http::StatusCode::NOT_FOUND, Duration::from_millis(1));
/// let counts: Vec<_> = CLASSES.iter().enumerate().map(|(i, c)| (*c, stats.count(i))).collect();
/// assert_eq!(counts[3], ("4xx", 1));
/// ```
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Requests served by [`serve`](crate::serve), counted by status class and
/// timed from the call of the service to the end of the response body.
///
/// Attach one with [`Serve::observe`](crate::Serve::observe); share it with
/// a [`MetricsCollector`](super::MetricsCollector) to export it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use grace::metrics::RequestStats;
///
/// let stats = RequestStats::new(); // an Arc: one for serve, one for the collector
/// stats.record(StatusCode::OK, Duration::from_millis(3));
/// stats.record(StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(40));
/// assert_eq!(stats.count(1), 1); // CLASSES[1] is "2xx"
/// assert_eq!(stats.count(4), 1); // "5xx"
/// assert_eq!(stats.durations().count, 2);
/// ```
#[derive(Debug, Default)]
pub struct RequestStats {
    by_class: [AtomicU64; 5],
    durations: AtomicHistogram,
}

impl RequestStats {
    /// Empty tallies, ready to share.
    pub fn new() -> Arc<RequestStats> {
        Arc::new(RequestStats::default())
    }

    /// Records one finished request.
    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).saturating_sub(1);
        if let Some(counter) = self.by_class.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.durations.observe(elapsed);
    }

    /// Requests finished so far with a status in `CLASSES[i]`.
    pub fn count(&self, class: usize) -> u64 {
        self.by_class
            .get(class)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The duration histogram as it stands.
    pub fn durations(&self) -> HistogramSnapshot {
        self.durations.snapshot()
    }
}

/// Times one request; records it when dropped, which is when its response
/// body is finished or abandoned.
pub(crate) struct Timing {
    stats: Arc<RequestStats>,
    start: Instant,
    // None until the response head exists: a request abandoned before it
    // had one (client gone, handler error) has no status class, and is left
    // out of the histogram too, so the two always count the same requests.
    status: Option<StatusCode>,
}

impl Timing {
    pub(crate) fn start(stats: Arc<RequestStats>) -> Timing {
        Timing {
            stats,
            start: Instant::now(),
            status: None,
        }
    }

    pub(crate) fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        if let Some(status) = self.status {
            self.stats.record(status, self.start.elapsed());
        }
    }
}
