//! TLS listeners (feature `tls`): rustls with the ring provider, ALPN `h2`
//! and `http/1.1`, and certificates swapped atomically on reload.
//!
//! A [`Tls`] handle is given to a [`Listener`](crate::Listener) with
//! [`Listener::with_tls`](crate::Listener::with_tls); every connection that
//! listener accepts is served over TLS, under the same drain rules and
//! [`Limits`](crate::Limits) as plaintext, plus a handshake timeout
//! ([`Limits::tls_handshake_timeout`](crate::Limits::tls_handshake_timeout)).
//!
//! Rotation: load the new files into a [`CertStore`] (every check happens
//! there, so a bad certificate is an error before anything changes), then
//! [`Tls::set_store`]. Handshakes from then on get the new certificates;
//! established connections keep the session they have.
//!
//! # Example
//!
//! ```no_run
//! use grace::tls::{CertStore, Certificate, Tls, Validity};
//! use grace::Listener;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let load = || -> Result<CertStore, grace::tls::CertificateError> {
//!     Ok(CertStore::new(Certificate::load("cert.pem", "key.pem", Validity::Enforce)?))
//! };
//! let tls = Tls::new(load()?);
//! let listener = Listener::bind("127.0.0.1:8443".parse()?)?.with_tls(tls.clone());
//! // ... serve it; later, on a reload:
//! match load() {
//!     Ok(store) => tls.set_store(store),
//!     Err(e) => eprintln!("keeping the old certificate: {e}"),
//! }
//! # Ok(()) }
//! ```

mod certificate;
mod shared;
mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub use certificate::{Certificate, CertificateError, CertificateInfo, Validity, EXPIRY_WARNING};
pub use shared::{certificates, SharedTls};
pub use store::CertStore;

/// What a TLS listener serves with: the rustls configuration and the
/// certificate store it reads per handshake. Cheap to clone; clones share
/// the store, so [`Tls::set_store`] on one is seen by all.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    store: Arc<ArcSwap<CertStore>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field(
                "default",
                &self.store.load().default_certificate().info().subject,
            )
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS 1.2 and 1.3 with the ring provider's safe defaults, no client
    /// certificates, ALPN `h2` then `http/1.1`, certificates from `store`.
    pub fn new(store: CertStore) -> Tls {
        let store = Arc::new(ArcSwap::from_pointee(store));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("invariant: the ring provider supports rustls' default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(store::Resolver {
                store: store.clone(),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Tls {
            config: Arc::new(config),
            store,
        }
    }

    /// Installs `store`: handshakes that start from now on use it;
    /// established connections are untouched.
    pub fn set_store(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The store handshakes use now.
    pub fn store(&self) -> Arc<CertStore> {
        self.store.load_full()
    }

    /// Runs the server side of the handshake on `io`.
    ///
    /// # Cancel safety
    /// Dropping it drops the connection.
    pub(crate) async fn accept<IO>(&self, io: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        TlsAcceptor::from(self.config.clone()).accept(io).await
    }
}
