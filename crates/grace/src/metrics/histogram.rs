//! A fixed-bucket histogram of durations that records with atomics only.
//!
//! prometheus-client's `Histogram` takes a lock on every observation; on the
//! request path that lock would be shared by every connection of every core.
//! Here an observation is two relaxed `fetch_add`s (one bucket, the sum), and
//! a scrape reads the buckets one by one. A scrape racing observations may see
//! a count and a sum a few requests apart: each is exact on its own, and the
//! next scrape catches up, which is all a rate() needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (`+Inf` is implicit), from 1 ms
/// (a cached answer) to 10 s (a slow handler or a slow client).
pub(crate) const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

const fn nanos(seconds: f64) -> u64 {
    (seconds * 1e9) as u64
}

// The same bounds in nanoseconds, for integer comparisons on the hot path.
const BOUNDS_NS: [u64; 12] = [
    nanos(BUCKETS[0]),
    nanos(BUCKETS[1]),
    nanos(BUCKETS[2]),
    nanos(BUCKETS[3]),
    nanos(BUCKETS[4]),
    nanos(BUCKETS[5]),
    nanos(BUCKETS[6]),
    nanos(BUCKETS[7]),
    nanos(BUCKETS[8]),
    nanos(BUCKETS[9]),
    nanos(BUCKETS[10]),
    nanos(BUCKETS[11]),
];

/// Durations counted into [`BUCKETS`], plus their sum.
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    // Non-cumulative: counts[i] holds observations in (bound[i-1], bound[i]];
    // the last slot is +Inf. Cumulated at scrape time, off the hot path.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A point-in-time reading of the request durations
/// ([`RequestStats::durations`](super::RequestStats::durations)).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of all observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
    /// `(upper bound in seconds, count in that bucket alone)`, ending with
    /// `+Inf`. Not cumulative: prometheus-client's encoder cumulates.
    pub buckets: Vec<(f64, u64)>,
}

impl AtomicHistogram {
    /// Records one duration.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS
            .iter()
            .position(|bound| ns <= *bound)
            .unwrap_or(BUCKETS.len());
        // Relaxed: the counts are independent tallies; no other memory is
        // published through them.
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The buckets, count and sum as they stand.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, slot) in self.counts.iter().enumerate() {
            let n = slot.load(Ordering::Relaxed);
            count += n;
            let bound = BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        HistogramSnapshot {
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_run_from_a_millisecond_to_ten_seconds_then_inf() {
        assert_eq!((BUCKETS[0], BUCKETS[BUCKETS.len() - 1]), (0.001, 10.0));
        // A snapshot has one more bucket: +Inf.
        let snapshot = AtomicHistogram::default().snapshot();
        assert_eq!(snapshot.buckets.len(), BUCKETS.len() + 1);
    }

    #[test]
    fn a_snapshot_places_each_observation_once() {
        let histogram = AtomicHistogram::default();
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 2);
        assert_eq!(snapshot.buckets[2], (0.005, 1)); // 3 ms: in (2.5 ms, 5 ms]
        assert_eq!(snapshot.buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn a_snapshot_sums_in_seconds_per_bucket() {
        let histogram = AtomicHistogram::default();
        histogram.observe(Duration::from_millis(250));
        histogram.observe(Duration::from_millis(750));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.sum, 1.0); // seconds
        assert_eq!(snapshot.sum / snapshot.count as f64, 0.5); // the mean
                                                               // Per bucket, not cumulative.
        assert_eq!(snapshot.buckets.iter().map(|(_, n)| n).sum::<u64>(), 2);
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_micros(500)); // <= 1ms
        h.observe(Duration::from_millis(1)); // <= 1ms (bounds are inclusive)
        h.observe(Duration::from_millis(30)); // <= 50ms
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.001, 2));
        assert_eq!(s.buckets[4], (0.025, 0));
        assert_eq!(s.buckets[5], (0.05, 1));
        assert_eq!(s.buckets[11], (10.0, 0));
        assert_eq!(s.buckets[12], (f64::INFINITY, 1));
        assert!((s.sum - 60.0315).abs() < 1e-9, "{}", s.sum);
    }
}
