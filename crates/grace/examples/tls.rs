//! HTTPS with certificate rotation: the certificates are part of the
//! configuration, so SIGHUP reloads them, a bad pair is rejected (the old
//! one keeps serving), and new handshakes get the new pair at once.
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
//!     -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost
//! cargo run --example tls -- . 127.0.0.1:8443
//! curl -k https://127.0.0.1:8443/
//! # replace cert.pem and key.pem, then: kill -HUP <pid>
//! ```

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{service::service_fn, Response};

use grace::tls::{CertStore, Certificate, CertificateError, Validity};

/// Everything here is the certificates; a real configuration has more.
fn load(dir: &Path) -> Result<CertStore, CertificateError> {
    let cert = Certificate::load(dir.join("cert.pem"), dir.join("key.pem"), Validity::Enforce)?;
    Ok(CertStore::new(cert))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8443".into())
        .parse()?;

    let outcome = grace::Server::new(move || load(&dir))
        .listen_tls([addr], |store: &CertStore| store.clone())
        .run_blocking(|_config, _shutdown| {
            service_fn(|_request| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello over tls"))))
            })
        })?;
    std::process::exit(if outcome.is_clean() { 0 } else { 75 });
}
