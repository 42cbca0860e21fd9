//! Per-request tallies kept on the request path: status classes and a
//! duration histogram, atomics only.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// The statuses of requests grace answers itself, before the service sees
/// them, in label order: `400 Bad Request` (malformed, or HTTP/1.1 without
/// exactly one `Host`), `414 URI Too Long`, `431 Request Header Fields Too
/// Large`.
///
/// # Example
///
/// ```
/// use grace::metrics::{RequestStats, REJECTED};
///
/// let stats = RequestStats::new();
/// stats.reject(http::StatusCode::URI_TOO_LONG);
/// assert_eq!(REJECTED[1], 414);
/// assert_eq!(stats.rejected(1), 1);
/// assert_eq!(stats.count(3), 0); // not among the requests the service answered
/// ```
pub const REJECTED: [u16; 3] = [400, 414, 431];

/// Shards of the tallies. Every request of every connection writes here:
/// one shared set of counters would have its cache lines bounce between the
/// cores on each request. Each thread writes to its own shard (threads are
/// spread round-robin), and a scrape adds the shards up. The drain's
/// in-flight request count is sharded the same way.
pub(crate) const SHARDS: usize = 8;

/// One shard, on cache lines of its own (128 bytes: adjacent-line
/// prefetchers pair lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    by_class: [AtomicU64; 5],
    durations: AtomicHistogram,
}

std::thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The shard the current thread writes to.
pub(crate) fn shard() -> usize {
    SHARD.with(|s| *s)
}

/// Requests served by [`serve`](crate::serve), counted by status class and
/// timed from the call of the service to the end of the response body.
///
/// Attach one with [`Serve::observe`](crate::Serve::observe); share it with
/// a `MetricsCollector` (feature `metrics`) to export it.
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
    shards: [Shard; SHARDS],
    // Not sharded: a rejection closes its connection, which costs far more
    // than a contended counter.
    rejected: [AtomicU64; REJECTED.len()],
}

impl RequestStats {
    /// Empty tallies, ready to share.
    pub fn new() -> Arc<RequestStats> {
        Arc::new(RequestStats::default())
    }

    /// Records one finished request.
    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        let shard = &self.shards[shard()];
        let class = usize::from(status.as_u16() / 100).saturating_sub(1);
        if let Some(counter) = shard.by_class.get(class) {
            // Relaxed: an independent tally; nothing is published through it.
            counter.fetch_add(1, Ordering::Relaxed);
        }
        shard.durations.observe(elapsed);
    }

    /// Records one request answered by grace itself with `status`, one of
    /// [`REJECTED`] (others are ignored). Such requests never reached the
    /// service: they are not in [`count`](Self::count) nor in the durations.
    pub fn reject(&self, status: StatusCode) {
        if let Some(i) = REJECTED.iter().position(|s| *s == status.as_u16()) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests rejected so far with the status `REJECTED[i]`.
    pub fn rejected(&self, i: usize) -> u64 {
        self.rejected
            .get(i)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Requests finished so far with a status in `CLASSES[i]`.
    pub fn count(&self, class: usize) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.by_class.get(class))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The duration histogram as it stands, all shards added up.
    pub fn durations(&self) -> HistogramSnapshot {
        let mut total = self.shards[0].durations.snapshot();
        for shard in &self.shards[1..] {
            let s = shard.durations.snapshot();
            total.sum += s.sum;
            total.count += s.count;
            for (t, (_, n)) in total.buckets.iter_mut().zip(s.buckets) {
                t.1 += n;
            }
        }
        total
    }
}

/// Times one request. Holds no reference to the tallies: the connection
/// that serves the request records it (see `Activity`), so timing a request
/// touches no reference count shared by every connection.
pub(crate) struct Timing {
    start: Instant,
    // None until the response head exists: a request abandoned before it
    // had one (client gone, handler error) has no status class, and is left
    // out of the histogram too, so the two always count the same requests.
    status: Option<StatusCode>,
}

impl Timing {
    pub(crate) fn start() -> Timing {
        Timing {
            start: Instant::now(),
            status: None,
        }
    }

    pub(crate) fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    /// Records the request in `stats` as finished now, if it had a
    /// response.
    pub(crate) fn finish(self, stats: &RequestStats) {
        if let Some(status) = self.status {
            stats.record(status, self.start.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_across_threads() {
        let stats = RequestStats::new();
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let status = if i % 3 == 0 { 404 } else { 200 };
                        stats.record(
                            StatusCode::from_u16(status).unwrap(),
                            Duration::from_millis(2),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stats.count(1), 8000);
        assert_eq!(stats.count(3), 4000);
        let d = stats.durations();
        assert_eq!(d.count, 12_000);
        assert_eq!(d.buckets[1], (0.0025, 12_000));
        assert!((d.sum - 24.0).abs() < 1e-6, "{}", d.sum);
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// What recording costs per request, on two threads at once (run with
    /// `cargo test --release -p grace --lib record_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn record_cost() {
        const N: u32 = 5_000_000;
        let stats = RequestStats::new();
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..N {
                        let mut t = Timing::start();
                        t.set_status(StatusCode::OK);
                        t.finish(&stats);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let per = start.elapsed() / N;
        println!("Timing start + record, 2 threads: {per:?} per request per thread");
        assert_eq!(stats.count(1), 2 * u64::from(N));
    }
}
