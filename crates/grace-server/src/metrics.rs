//! `/metrics`: the library's lifecycle and request metrics, plus what only
//! this server's configuration knows, in the OpenMetrics text format.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{header::CONTENT_TYPE, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use grace::Reloadable;

use crate::config::Config;

const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry, filled in once the lifecycle exists (the HTTP service is
/// built before the reloader, which needs the running listeners).
#[derive(Default)]
pub struct Metrics {
    registry: OnceLock<Registry>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    pub fn install(&self, registry: Registry) {
        let _ = self.registry.set(registry);
    }

    pub fn respond(&self) -> Response<Full<Bytes>> {
        let mut text = String::with_capacity(4096);
        let (status, body) = match self.registry.get() {
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics not ready\n".to_owned(),
            ),
            Some(registry) => {
                match prometheus_client::encoding::text::encode(&mut text, registry) {
                    Ok(()) => (StatusCode::OK, text),
                    Err(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot encode metrics\n".to_owned(),
                    ),
                }
            }
        };
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
        res
    }
}

/// What only this server's schema knows: how many routes the configuration
/// serving now has.
#[derive(Debug)]
pub struct ConfigCollector {
    pub config: Reloadable<Config>,
}

impl Collector for ConfigCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.config.load().routes.len() as u64;
        encoder
            .encode_descriptor(
                "grace_config_routes",
                "Routes in the configuration serving now.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&routes)
    }
}
