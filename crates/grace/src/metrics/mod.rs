//! Prometheus metrics for the lifecycle and the requests it serves.
//!
//! Everything here is read at scrape time from state that grace keeps anyway
//! (generation, verdict counters, phase, connection and request counts), or
//! tallied on the request path with atomics only ([`RequestStats`]). A
//! `MetricsCollector` (feature `metrics`) plugs it into a `prometheus_client` registry, next to
//! whatever metrics the application registers itself.
//!
//! The wiring is shown on `MetricsCollector` (feature `metrics`): the
//! example lives there so that it is only built when the collector is.

#[cfg(feature = "metrics")]
mod collector;
mod histogram;
pub(crate) mod requests;

#[cfg(feature = "metrics")]
pub use collector::MetricsCollector;
pub use histogram::HistogramSnapshot;
pub use requests::{RequestStats, CLASSES, REJECTED};
