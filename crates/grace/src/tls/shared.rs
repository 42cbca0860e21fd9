//! One [`Tls`] handle for every TLS listener of a server, created with the
//! first certificate store and only swapped after that.

use std::sync::{Arc, OnceLock};

use super::{CertStore, Certificate, Tls};

/// The handle all TLS listeners of a [`Server`](crate::Server) share.
/// Created with the first store (at start, or by the first reload that adds
/// TLS listeners), then only swapped. Cheap to clone; clones share it.
///
/// # Example
///
/// ```
/// use grace::tls::SharedTls;
///
/// let shared = SharedTls::default();
/// assert!(shared.current().is_none()); // no TLS listener yet
/// ```
#[derive(Debug, Default, Clone)]
pub struct SharedTls {
    tls: Arc<OnceLock<Tls>>,
}

impl SharedTls {
    /// The handle, created with `store` if there is none yet.
    pub fn handle(&self, store: &CertStore) -> Tls {
        self.tls.get_or_init(|| Tls::new(store.clone())).clone()
    }

    /// Installs `store` for the handshakes from now on, logging each
    /// certificate it serves.
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

    /// The certificates served now; `None` before the first TLS listener.
    pub fn current(&self) -> Option<Arc<CertStore>> {
        self.tls.get().map(Tls::store)
    }
}

/// Each certificate of `store` with the name it is served for: `default`,
/// or its SNI names joined with commas.
pub fn certificates(store: &CertStore) -> Vec<(String, &Certificate)> {
    let mut all = vec![("default".to_owned(), store.default_certificate())];
    all.extend(store.named().map(|(names, cert)| (names.join(","), cert)));
    all
}
