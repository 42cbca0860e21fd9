//! The TLS listeners' certificates while serving: one shared handle that
//! every TLS listener reads per handshake, swapped after each accepted
//! reload, and shown in `/metrics`.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use grace::control::protocol::CertificateStatus;
use grace::tls::{CertStore, Certificate, Tls, EXPIRY_WARNING};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The handle all TLS listeners share. Created with the first `[server.tls]`
/// (at start, or by the first reload that adds it), then only swapped.
#[derive(Debug, Default, Clone)]
pub struct Certs {
    tls: Arc<OnceLock<Tls>>,
}

impl Certs {
    /// The handle, created with `store` if there is none yet.
    pub fn handle(&self, store: &CertStore) -> Tls {
        self.tls.get_or_init(|| Tls::new(store.clone())).clone()
    }

    /// Installs `store` for the handshakes from now on.
    pub fn install(&self, store: &CertStore) {
        let tls = self.handle(store);
        tls.set_store(store.clone());
        for (name, cert) in certificates(&tls.store()) {
            let info = cert.info();
            tracing::info!(
                name,
                subject = %info.subject,
                serial = %info.serial,
                not_after = info.not_after,
                "serving certificate"
            );
        }
    }

    /// Warns about certificates close to expiry every `every` (loading
    /// warns too, but a server that is never reloaded would otherwise say
    /// nothing as the date comes closer). Needs a tokio runtime.
    pub fn watch_expiry(&self, every: std::time::Duration) {
        let certs = self.clone();
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

    pub fn current(&self) -> Option<Arc<CertStore>> {
        self.tls.get().map(Tls::store)
    }

    /// For the control socket's `status`.
    pub fn status(&self) -> Vec<CertificateStatus> {
        let Some(store) = self.current() else {
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
}

/// Each certificate with the name it is served for: `default`, or its SNI
/// names joined with commas.
fn certificates(store: &CertStore) -> Vec<(String, &Certificate)> {
    let mut all = vec![("default".to_owned(), store.default_certificate())];
    all.extend(store.named().map(|(names, cert)| (names.join(","), cert)));
    all
}

/// `grace_tls_certificate_*`: what the TLS listeners serve now.
#[derive(Debug)]
pub struct CertCollector {
    pub certs: Certs,
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
