//! Which certificate a handshake gets: a default, and per-name ones chosen by
//! the client's SNI.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certificate::Certificate;

/// A default certificate and per-name ones, chosen by the name the client
/// asks for (SNI). Names match exactly (case-insensitive), or through a
/// wildcard `*.example.com`, which matches one label (`a.example.com`, not
/// `example.com` nor `a.b.example.com`). An exact name wins over a wildcard;
/// anything else, or no SNI at all, gets the default.
///
/// A store is immutable: a reload builds a new one and installs it with
/// [`Tls::set_store`](super::Tls::set_store).
///
/// # Example
///
/// ```no_run
/// use grace::tls::{CertStore, Certificate, Validity};
///
/// let main = Certificate::load("main.pem", "main.key", Validity::Enforce)?;
/// let api = Certificate::load("api.pem", "api.key", Validity::Enforce)?;
/// let store = CertStore::new(main).with_names(["api.example.com", "*.api.example.com"], api);
/// # Ok::<(), grace::tls::CertificateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CertStore {
    default: Certificate,
    // In the order added: for listing.
    named: Vec<(Vec<String>, Certificate)>,
    // Lower-case name (a wildcard kept with its `*.`) → certificate.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    /// A store serving `default` to every client.
    pub fn new(default: Certificate) -> Self {
        CertStore {
            default,
            named: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// Serves `cert` to clients asking for one of `names`. A name given
    /// twice goes to the certificate added last.
    pub fn with_names<I, N>(mut self, names: I, cert: Certificate) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        let names: Vec<String> = names
            .into_iter()
            .map(|n| n.into().to_ascii_lowercase())
            .collect();
        for name in &names {
            self.by_name
                .insert(name.clone(), cert.certified_key().clone());
        }
        self.named.push((names, cert));
        self
    }

    /// The default certificate.
    pub fn default_certificate(&self) -> &Certificate {
        &self.default
    }

    /// The per-name certificates, with their names, in the order added.
    pub fn named(&self) -> impl Iterator<Item = (&[String], &Certificate)> {
        self.named.iter().map(|(n, c)| (n.as_slice(), c))
    }

    /// The certificate for a client asking for `server_name` (`None`: the
    /// client sent no SNI).
    pub(crate) fn resolve(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        server_name
            .and_then(|name| self.lookup(&name.to_ascii_lowercase()))
            .unwrap_or_else(|| self.default.certified_key())
    }

    fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        if let Some(key) = self.by_name.get(name) {
            return Some(key);
        }
        let (_, parent) = name.split_once('.')?;
        self.by_name.get(&format!("*.{parent}"))
    }
}

/// The rustls side: reads whichever store is installed now, per handshake.
#[derive(Debug)]
pub(crate) struct Resolver {
    pub(crate) store: Arc<ArcSwap<CertStore>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.load().resolve(hello.server_name()).clone())
    }
}
