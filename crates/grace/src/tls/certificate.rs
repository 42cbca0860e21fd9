//! One certificate chain and its private key, read from PEM files and
//! checked before anything serves it.
//!
//! Every check that can fail on a rotation is done here, at load, so a bad
//! rotation is a rejected reload and never a failed handshake: the files are
//! readable, the PEM parses, there is a certificate, the key parses and
//! belongs to it, and today lies inside its validity window.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Certificates expiring sooner than this are logged as a warning at load.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// What to do with a certificate outside its validity window (expired, or
/// not valid yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Validity {
    /// Refuse it with [`CertificateError::Expired`] or
    /// [`CertificateError::NotYetValid`]. The default: serving an expired
    /// certificate breaks every client that checks.
    #[default]
    Enforce,
    /// Serve it anyway, with a warning in the log at each load.
    Warn,
}

/// Why a certificate and key could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("{} holds no certificate (no \"BEGIN CERTIFICATE\" section)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key section.
    #[error("{} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The certificate is not a valid X.509 certificate.
    #[error("{} holds a certificate that cannot be parsed: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is of a type or form the crypto provider cannot sign with.
    #[error("{} holds a key that cannot be used: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's `notAfter` is past.
    #[error("the certificate in {} expired at {not_after}", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// When it expired, as written in the certificate.
        not_after: String,
    },
    /// The certificate's `notBefore` is still ahead.
    #[error("the certificate in {} is not valid before {not_before}", path.display())]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// When it becomes valid, as written in the certificate.
        not_before: String,
    },
}

/// What a certificate says about itself: for logs, status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The subject's distinguished name, such as `CN=example.com`.
    pub subject: String,
    /// The serial number in hex, bytes separated by colons.
    pub serial: String,
    /// Start of the validity window, in seconds since the Unix epoch.
    pub not_before: i64,
    /// End of the validity window, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The certificate file it was read from (`<memory>` for
    /// [`Certificate::from_pem`]).
    pub path: PathBuf,
}

impl CertificateInfo {
    /// How long until it expires (zero once it has).
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        let now = unix_seconds(now);
        Duration::from_secs(u64::try_from(self.not_after.saturating_sub(now)).unwrap_or(0))
    }
}

/// A checked certificate chain with its signing key, ready to serve.
///
/// # Example
///
/// ```no_run
/// use grace::tls::{Certificate, Validity};
///
/// let cert = Certificate::load("cert.pem", "key.pem", Validity::Enforce)?;
/// println!("serving {} (serial {})", cert.info().subject, cert.info().serial);
/// # Ok::<(), grace::tls::CertificateError>(())
/// ```
#[derive(Clone)]
pub struct Certificate {
    key: Arc<CertifiedKey>,
    info: CertificateInfo,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Reads the chain (leaf first) from `cert` and the private key from
    /// `key`, both PEM, and checks them (see the module docs). Logs a warning
    /// when the certificate expires within [`EXPIRY_WARNING`], or when
    /// `validity` is [`Validity::Warn`] and it is outside its window.
    ///
    /// # Errors
    /// A [`CertificateError`] naming the file at fault.
    pub fn load(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        validity: Validity,
    ) -> Result<Certificate, CertificateError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CertificateError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Self::parse(
            &read(cert)?,
            cert,
            &read(key)?,
            key,
            validity,
            SystemTime::now(),
        )
    }

    /// As [`Certificate::load`], from PEM already in memory.
    ///
    /// # Errors
    /// As [`Certificate::load`]; the path in errors is `<memory>`.
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        validity: Validity,
    ) -> Result<Certificate, CertificateError> {
        let memory = Path::new("<memory>");
        Self::parse(cert, memory, key, memory, validity, SystemTime::now())
    }

    fn parse(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
        validity: Validity,
        now: SystemTime,
    ) -> Result<Certificate, CertificateError> {
        let pem = |path: &Path| {
            let path = path.to_owned();
            move |e: rustls::pki_types::pem::Error| CertificateError::Pem {
                path,
                reason: e.to_string(),
            }
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem(cert_path))?;
        let Some(leaf) = chain.first() else {
            return Err(CertificateError::NoCertificate {
                path: cert_path.to_owned(),
            });
        };
        let info = inspect(leaf, cert_path)?;
        let key_der = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => {
                return Err(CertificateError::NoKey {
                    path: key_path.to_owned(),
                })
            }
            Err(e) => return Err(pem(key_path)(e)),
        };
        let signing = any_supported_type(&key_der).map_err(|e| CertificateError::BadKey {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
        let key = CertifiedKey::new(chain, signing);
        match key.keys_match() {
            Ok(()) => {}
            // The provider cannot tell (no public key from this key type):
            // rustls itself accepts that; the handshake would fail visibly.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(CertificateError::KeyMismatch {
                    cert: cert_path.to_owned(),
                    key: key_path.to_owned(),
                })
            }
            Err(e) => {
                return Err(CertificateError::BadCertificate {
                    path: cert_path.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
        check_window(&info, validity, now)?;
        Ok(Certificate {
            key: Arc::new(key),
            info,
        })
    }

    /// What the certificate says about itself.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    pub(crate) fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }
}

/// Subject, serial and validity of the leaf certificate.
fn inspect(leaf: &CertificateDer<'_>, path: &Path) -> Result<CertificateInfo, CertificateError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        CertificateError::BadCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let validity = cert.validity();
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        path: path.to_owned(),
    })
}

fn check_window(
    info: &CertificateInfo,
    validity: Validity,
    now: SystemTime,
) -> Result<(), CertificateError> {
    let now_s = unix_seconds(now);
    let outside = if now_s > info.not_after {
        Some(CertificateError::Expired {
            path: info.path.clone(),
            not_after: format_time(info.not_after),
        })
    } else if now_s < info.not_before {
        Some(CertificateError::NotYetValid {
            path: info.path.clone(),
            not_before: format_time(info.not_before),
        })
    } else {
        None
    };
    match (outside, validity) {
        (Some(error), Validity::Enforce) => Err(error),
        (Some(error), Validity::Warn) => {
            tracing::warn!(
                subject = %info.subject,
                serial = %info.serial,
                "SERVING AN INVALID CERTIFICATE (allowed by configuration): {error}; \
                 clients that verify certificates will refuse it"
            );
            Ok(())
        }
        (None, _) => {
            let left = info.expires_in(now);
            if left < EXPIRY_WARNING {
                tracing::warn!(
                    subject = %info.subject,
                    serial = %info.serial,
                    path = %info.path.display(),
                    days_left = left.as_secs() / 86_400,
                    "certificate expires soon, at {}",
                    format_time(info.not_after)
                );
            }
            Ok(())
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `2026-11-25T15:00:00Z`, for messages: one unambiguous form.
fn format_time(unix: i64) -> String {
    let t = crate::civil_time::Civil::from_unix(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_795_791_600), "2026-11-27T15:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
