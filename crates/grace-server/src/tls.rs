//! The TLS listeners' certificates while serving (the library's
//! [`SharedTls`]), shown in `/metrics` and `status`, with expiry warnings.

use std::time::SystemTime;

use grace::control::protocol::CertificateStatus;
use grace::tls::{certificates, Certificate, SharedTls, EXPIRY_WARNING};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Warns about certificates close to expiry every `every` (loading warns
/// too, but a server that is never reloaded would otherwise say nothing as
/// the date comes closer). Needs a tokio runtime.
pub fn watch_expiry(certs: SharedTls, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        // The first tick is now: loading already warned.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(store) = certs.current() else {
                continue;
            };
            let now = SystemTime::now();
            for (name, cert) in certificates(&store) {
                let info = cert.info();
                let left = info.expires_in(now);
                if left < EXPIRY_WARNING {
                    tracing::warn!(
                        name,
                        subject = %info.subject,
                        serial = %info.serial,
                        days_left = left.as_secs() / 86_400,
                        "certificate expires soon: rotate it and reload"
                    );
                }
            }
        }
    });
}

/// For the control socket's `status`.
pub fn status(certs: &SharedTls) -> Vec<CertificateStatus> {
    let Some(store) = certs.current() else {
        return Vec::new();
    };
    certificates(&store)
        .into_iter()
        .map(|(name, cert)| {
            let info = cert.info();
            CertificateStatus {
                name,
                subject: info.subject.clone(),
                serial: info.serial.clone(),
                not_after: info.not_after,
            }
        })
        .collect()
}

/// `grace_tls_certificate_*`: what the TLS listeners serve now.
#[derive(Debug)]
pub struct CertCollector {
    pub certs: SharedTls,
}

impl Collector for CertCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.certs.current() else {
            return Ok(());
        };
        let all = certificates(&store);
        let label = |name: &str, cert: &Certificate| {
            let info = cert.info();
            vec![
                ("name", name.to_owned()),
                ("subject", info.subject.clone()),
                ("serial", info.serial.clone()),
            ]
        };
        let mut expiry = encoder.encode_descriptor(
            "grace_tls_certificate_expiry_timestamp_seconds",
            "When each certificate served now expires (notAfter), in seconds since 1970.",
            None,
            MetricType::Gauge,
        )?;
        for (name, cert) in &all {
            let labels = label(name, cert);
            ConstGauge::new(cert.info().not_after).encode(expiry.encode_family(&labels)?)?;
        }
        let mut left = encoder.encode_descriptor(
            "grace_tls_certificate_expires_in_seconds",
            "Seconds until each certificate served now expires (0 once expired).",
            None,
            MetricType::Gauge,
        )?;
        let now = SystemTime::now();
        for (name, cert) in &all {
            let labels = label(name, cert);
            let seconds = i64::try_from(cert.info().expires_in(now).as_secs()).unwrap_or(i64::MAX);
            ConstGauge::new(seconds).encode(left.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
