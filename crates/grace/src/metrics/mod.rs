//! Prometheus metrics for the lifecycle and the requests it serves.
//!
//! Everything here is read at scrape time from state that grace keeps anyway
//! (generation, verdict counters, phase, connection and request counts), or
//! tallied on the request path with atomics only ([`RequestStats`]). A
//! [`MetricsCollector`] plugs it into a `prometheus_client` registry, next to
//! whatever metrics the application registers itself.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use grace::metrics::{MetricsCollector, RequestStats};
//! use grace::{Reloadable, Reloader, Shutdown};
//! use prometheus_client::registry::Registry;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Reloadable::new(1u32);
//! let reloader = Reloader::new(config, || Ok::<_, grace::BoxError>(2u32));
//! let shutdown = Shutdown::new();
//! let stats = RequestStats::new();
//! // grace::serve(listeners, service, &shutdown).observe(stats.clone()).start();
//! let mut registry = Registry::default();
//! registry.register_collector(Box::new(
//!     MetricsCollector::new(reloader, shutdown).with_requests(stats),
//! ));
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry)?;
//! # Ok(()) }
//! ```

#[cfg(feature = "metrics")]
mod collector;
pub mod histogram;
pub(crate) mod requests;

#[cfg(feature = "metrics")]
pub use collector::MetricsCollector;
pub use requests::{RequestStats, CLASSES};
