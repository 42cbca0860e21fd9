//! `[server.tls]`: checked like the rest of the file, and its certificates
//! loaded as part of it, so a reload with a bad certificate is rejected
//! before anything changes (and `grace check` catches it too).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grace::tls::{CertStore, Certificate, CertificateError, Validity};
use toml::Spanned;

use super::raw::RawTls;
use super::{Checker, ConfigError, Origin, Server};

/// `[server.tls]`, settled.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Addresses served over TLS (none of them in `[server] listen`).
    pub listen: Vec<SocketAddr>,
    /// The certificates, loaded and checked.
    pub store: CertStore,
    pub handshake_timeout: Duration,
}

impl Checker {
    /// Paths in the file are relative to the file's directory (the working
    /// directory for the embedded default).
    fn base_dir(&self) -> PathBuf {
        match &self.origin {
            Origin::File(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            },
            Origin::Embedded => PathBuf::from("."),
        }
    }

    fn path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        if value.get_ref().is_empty() {
            return Err(self.fail(value.span(), format!("`{key}` is empty: give a path")));
        }
        Ok(self.base_dir().join(Path::new(value.get_ref())))
    }

    fn certificate(
        &self,
        cert: &Spanned<String>,
        key: &Spanned<String>,
        validity: Validity,
    ) -> Result<Certificate, ConfigError> {
        let cert_path = self.path(cert, "cert")?;
        let key_path = self.path(key, "key")?;
        Certificate::load(&cert_path, &key_path, validity).map_err(|e| {
            // Point at the line of the file at fault.
            let span = match &e {
                CertificateError::Read { path, .. }
                | CertificateError::Pem { path, .. }
                | CertificateError::NoKey { path }
                | CertificateError::BadKey { path, .. }
                    if *path == key_path =>
                {
                    key.span()
                }
                CertificateError::KeyMismatch { .. } => key.span(),
                _ => cert.span(),
            };
            self.fail(span, e.to_string())
        })
    }

    pub(super) fn tls(
        &self,
        raw: Spanned<RawTls>,
        server: &Server,
    ) -> Result<TlsSettings, ConfigError> {
        let whole = raw.span();
        let raw = raw.into_inner();
        let listen = match raw.listen {
            None => {
                return Err(self.fail(
                    whole,
                    "`[server.tls]` has no `listen`: give the addresses to serve over TLS",
                ))
            }
            Some(listen) => {
                let span = listen.span();
                let addrs = self.listen(listen, false)?;
                for (addr, entry) in &addrs {
                    if server.listen.contains(addr) {
                        return Err(self.fail(
                            span,
                            format!(
                                "{addr} is in both `[server] listen` and `[server.tls] listen`: \
                                 an address is either plain or TLS"
                            ),
                        ));
                    }
                    if server.admin_listen == Some(*addr) {
                        return Err(self.fail(
                            span,
                            format!("{addr} is also `admin_listen`: give it its own address"),
                        ));
                    }
                    let what = "TLS listen address";
                    let plain = server.listen.iter().copied();
                    self.must_not_collide(what, *addr, entry, plain, "in `[server] listen`")?;
                    let admin = server.admin_listen;
                    self.must_not_collide(what, *addr, entry, admin, "`admin_listen`")?;
                }
                addrs.into_iter().map(|(addr, _)| addr).collect()
            }
        };
        let (Some(cert), Some(key)) = (&raw.cert, &raw.key) else {
            return Err(self.fail(
                whole,
                "`[server.tls]` needs both `cert` and `key` (PEM files)",
            ));
        };
        let validity = if raw.allow_expired.unwrap_or(false) {
            Validity::Warn
        } else {
            Validity::Enforce
        };
        // Every name first: a typo is reported without reading any file.
        let mut seen: Vec<String> = Vec::new();
        for sni in &raw.sni {
            let sni = sni.get_ref();
            if sni.names.get_ref().is_empty() {
                return Err(self.fail(
                    sni.names.span(),
                    "`names` is empty: give the names this certificate serves",
                ));
            }
            for name in sni.names.get_ref() {
                let lower = name.get_ref().to_ascii_lowercase();
                let bare = lower.strip_prefix("*.").unwrap_or(&lower);
                if bare.is_empty() || bare.contains('*') || bare.contains(':') {
                    return Err(self.fail(
                        name.span(),
                        format!(
                            "invalid SNI name \"{}\": give a host name such as \
                             \"api.example.com\" or \"*.example.com\"",
                            name.get_ref()
                        ),
                    ));
                }
                if seen.contains(&lower) {
                    return Err(
                        self.fail(name.span(), format!("SNI name \"{lower}\" is given twice"))
                    );
                }
                seen.push(lower);
            }
        }
        let handshake_timeout = self.duration(
            raw.handshake_timeout,
            Duration::from_secs(10),
            Duration::from_millis(100)..=Duration::from_secs(600),
            "handshake_timeout",
        )?;
        let mut store = CertStore::new(self.certificate(cert, key, validity)?);
        for sni in &raw.sni {
            let sni = sni.get_ref();
            let certificate = self.certificate(&sni.cert, &sni.key, validity)?;
            store = store.with_names(
                sni.names.get_ref().iter().map(|n| n.get_ref().clone()),
                certificate,
            );
        }
        Ok(TlsSettings {
            listen,
            store,
            handshake_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Origin};

    fn err(text: &str) -> String {
        parse(text, Origin::File("/etc/grace/c.toml".into()))
            .expect_err("rejected")
            .to_string()
    }

    #[test]
    fn the_tls_section_is_checked_before_its_files_are_read() {
        let e = err("[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        assert!(e.contains("`[server.tls]` has no `listen`"), "{e}");
        let e = err("[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\n");
        assert!(e.contains("needs both `cert` and `key`"), "{e}");
        let e = err(
            "[server]\nlisten = \"127.0.0.1:8443\"\n[server.tls]\nlisten = \"127.0.0.1:8443\"\n\
             cert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        assert!(
            e.contains("in both `[server] listen` and `[server.tls] listen`"),
            "{e}"
        );
    }

    #[test]
    fn tls_addresses_may_not_overlap_plain_or_admin_ones() {
        let e = err(
            "[server]\nlisten = \"127.0.0.1:8443\"\n[server.tls]\nlisten = \"0.0.0.0:8443\"\n\
             cert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        assert!(
            e.starts_with(
                "/etc/grace/c.toml:4:10: TLS listen address 0.0.0.0:8443 overlaps \
                 127.0.0.1:8443 (in `[server] listen`)"
            ),
            "{e}"
        );
        let e = err(
            "[server]\nlisten = []\nadmin_listen = \"[::1]:9000\"\n[server.tls]\n\
             listen = [\"127.0.0.1:8443\", \"[::]:9000\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        assert!(
            e.contains("TLS listen address [::]:9000 overlaps [::1]:9000 (`admin_listen`)"),
            "{e}"
        );
    }

    #[test]
    fn certificate_paths_are_relative_to_the_config_file() {
        let e =
            err("[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        assert!(e.starts_with("/etc/grace/c.toml:3:"), "{e}");
        assert!(e.contains("cannot read /etc/grace/c.pem"), "{e}");
    }

    #[test]
    fn sni_names_are_checked() {
        let e = err(
            "[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [[server.tls.sni]]\nnames = [\"a.*.test\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        assert!(e.contains("invalid SNI name \"a.*.test\""), "{e}");
        let e = err(
            "[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [[server.tls.sni]]\nnames = [\"a.test\", \"A.test\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        assert!(e.contains("SNI name \"a.test\" is given twice"), "{e}");
    }
}
