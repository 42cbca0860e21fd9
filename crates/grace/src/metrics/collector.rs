//! The lifecycle's state, encoded at scrape time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::requests::{RequestStats, CLASSES, REJECTED};
use crate::drain::{Phase, Shutdown};
use crate::handoff::Handoff;
use crate::reload::Reloader;

const PHASES: [Phase; 5] = [
    Phase::Running,
    Phase::Stopping,
    Phase::Draining,
    Phase::Forcing,
    Phase::Stopped,
];

/// Exports the lifecycle of one process:
///
/// | metric | type | meaning |
/// |---|---|---|
/// | `grace_config_generation` | gauge | generation of the configuration serving |
/// | `grace_config_reloads_total{result}` | counter | reloads by `accepted` / `rejected` |
/// | `grace_config_last_reload_successful` | gauge | 1 when the last reload was accepted (or none ran yet) |
/// | `grace_config_last_reload_timestamp_seconds` | gauge | when the last reload finished (the start time before any) |
/// | `grace_upgrades_total{result}` | counter | upgrades by `succeeded` / `failed` |
/// | `grace_shutdown_phase{phase}` | gauge | 1 for the current phase, 0 for the others |
/// | `grace_open_connections` | gauge | connections open now |
/// | `grace_requests_in_flight` | gauge | requests in flight now |
/// | `grace_http_requests_total{class}` | counter | finished requests by status class (`2xx`…) |
/// | `grace_http_request_duration_seconds` | histogram | call of the service to end of the body |
/// | `grace_http_rejected_requests_total{status}` | counter | requests grace answered itself (`400`, `414`, `431`), not in the two above |
/// | `process_start_time_seconds` | gauge | when this process started, Unix time |
///
/// # Example
///
/// ```
/// use grace::metrics::{MetricsCollector, RequestStats};
/// use grace::{Reloadable, Reloader, ShutdownTrigger};
/// use prometheus_client::{encoding::text::encode, registry::Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// let stats = RequestStats::new();
/// // grace::serve(listeners, service, &shutdown).observe(stats.clone()).start();
/// let collector = MetricsCollector::new(reloader.clone(), shutdown).with_requests(stats);
/// let mut registry = Registry::default(); // the application's own metrics go here too
/// registry.register_collector(Box::new(collector));
/// reloader.reload().await?;
///
/// let mut text = String::new(); // what /metrics would answer
/// encode(&mut text, &registry)?;
/// assert!(text.contains("grace_config_generation 2\n"), "{text}");
/// assert!(text.contains(r#"grace_config_reloads_total{result="accepted"} 1"#), "{text}");
/// assert!(text.contains(r#"grace_shutdown_phase{phase="running"} 1"#), "{text}");
/// # Ok(()) }
/// ```
pub struct MetricsCollector<T> {
    reloader: Reloader<T>,
    shutdown: Shutdown,
    handoff: Option<Arc<Handoff>>,
    requests: Option<Arc<RequestStats>>,
    started: SystemTime,
}

impl<T> std::fmt::Debug for MetricsCollector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("shutdown", &self.shutdown)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> MetricsCollector<T> {
    /// Exports `reloader` and `shutdown`; the process start time is now.
    pub fn new(reloader: Reloader<T>, shutdown: Shutdown) -> Self {
        MetricsCollector {
            reloader,
            shutdown,
            handoff: None,
            requests: None,
            started: SystemTime::now(),
        }
    }

    /// Exports upgrade verdicts too.
    pub fn with_handoff(mut self, handoff: Arc<Handoff>) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Exports request counts and durations too.
    pub fn with_requests(mut self, stats: Arc<RequestStats>) -> Self {
        self.requests = Some(stats);
        self
    }

    /// Sets the process start time (by default, when the collector was made).
    pub fn started_at(mut self, started: SystemTime) -> Self {
        self.started = started;
        self
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn counter_by(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, *value)];
        family
            .encode_family(&labels.as_slice())?
            .encode_counter::<NoLabelSet, _, u64>(count, None)?;
    }
    Ok(())
}

impl<T: Send + Sync + 'static> Collector for MetricsCollector<T> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        gauge(
            e,
            "grace_config_generation",
            "Generation of the configuration serving now (1 at start, +1 per accepted reload).",
            None,
            self.reloader.config().generation(),
        )?;
        counter_by(
            e,
            "grace_config_reloads",
            "Reloads that ran, by verdict.",
            "result",
            &[
                ("accepted", self.reloader.accepted()),
                ("rejected", self.reloader.rejected()),
            ],
        )?;
        let last = self.reloader.last();
        let successful = last
            .as_ref()
            .is_none_or(|l| !matches!(l.verdict, Err(ref e) if !is_shutdown(e)));
        gauge(
            e,
            "grace_config_last_reload_successful",
            "1 when the last reload was accepted (or none ran yet), 0 when it was rejected.",
            None,
            i64::from(successful),
        )?;
        gauge(
            e,
            "grace_config_last_reload_timestamp",
            "When the last reload finished, Unix time; the process start time before any.",
            Some(&Unit::Seconds),
            unix_seconds(last.map_or(self.started, |l| l.at)),
        )?;
        if let Some(handoff) = &self.handoff {
            counter_by(
                e,
                "grace_upgrades",
                "Upgrade attempts, by verdict.",
                "result",
                &[
                    ("succeeded", handoff.succeeded()),
                    ("failed", handoff.failed()),
                ],
            )?;
        }
        let phase = self.shutdown.phase();
        let mut family = e.encode_descriptor(
            "grace_shutdown_phase",
            "1 for the current lifecycle phase, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for p in PHASES {
            let labels = [("phase", p.as_str())];
            family
                .encode_family(&labels.as_slice())?
                .encode_gauge(&i64::from(p == phase))?;
        }
        gauge(
            e,
            "grace_open_connections",
            "Connections open now.",
            None,
            self.shutdown.connections(),
        )?;
        gauge(
            e,
            "grace_requests_in_flight",
            "Requests in flight now.",
            None,
            self.shutdown.requests(),
        )?;
        if let Some(stats) = &self.requests {
            let counts: Vec<(&str, u64)> = CLASSES
                .iter()
                .enumerate()
                .map(|(i, class)| (*class, stats.count(i)))
                .collect();
            counter_by(
                e,
                "grace_http_requests",
                "Finished requests, by status class.",
                "class",
                &counts,
            )?;
            let h = stats.durations();
            e.encode_descriptor(
                "grace_http_request_duration",
                "Time from the call of the service to the end of the response body.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
            let statuses = REJECTED.map(|s| s.to_string());
            let rejected: Vec<(&str, u64)> = statuses
                .iter()
                .enumerate()
                .map(|(i, status)| (status.as_str(), stats.rejected(i)))
                .collect();
            counter_by(
                e,
                "grace_http_rejected_requests",
                "Requests answered by grace before the service saw them (malformed, head or URI too long, HTTP/1.1 without one Host), by status.",
                "status",
                &rejected,
            )?;
        }
        gauge(
            e,
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            Some(&Unit::Seconds),
            unix_seconds(self.started),
        )
    }
}

// A reload refused because the server is shutting down says nothing about
// the configuration.
fn is_shutdown(e: &crate::ReloadError) -> bool {
    matches!(e, crate::ReloadError::ShuttingDown)
}
