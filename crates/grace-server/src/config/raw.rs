//! The configuration as written: every field optional, every value that a
//! later check may reject keeps its position in the file.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub message: Option<Spanned<String>>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub limits: RawLimits,
    pub app: Option<Spanned<super::app::RawApp>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<Listen>>,
    pub shutdown_timeout: Option<Spanned<String>>,
    pub shutdown_delay: Option<Spanned<String>>,
    pub idle_grace: Option<Spanned<String>>,
    pub upgrade_timeout: Option<Spanned<String>>,
    pub watch: Option<bool>,
    pub watch_debounce: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub metrics: Option<bool>,
    pub tls: Option<Spanned<RawTls>>,
}

/// `[server.tls]`: addresses served over TLS, and their certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Option<Spanned<Listen>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub allow_expired: Option<bool>,
    #[serde(default)]
    pub sni: Vec<Spanned<RawSni>>,
}

/// `[[server.tls.sni]]`: a certificate for some names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSni {
    pub names: Spanned<Vec<Spanned<String>>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[limits]`: what one client may cost the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub write_timeout: Option<Spanned<String>>,
    pub max_header_size: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub http2_max_concurrent_streams: Option<Spanned<i64>>,
    pub http2_max_pending_reset_streams: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: Spanned<String>,
    pub status: Option<Spanned<i64>>,
    pub body: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub delay: Option<Spanned<String>>,
}

/// `listen = "ADDR"` or `listen = ["ADDR", ...]`, each entry with its span.
#[derive(Debug)]
pub struct Listen(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListenVisitor;

        impl<'de> Visitor<'de> for ListenVisitor {
            type Value = Listen;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as \"0.0.0.0:8080\", or a list of them")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Listen, E> {
                // The span of a lone string is the whole value's; the caller
                // re-attaches it.
                Ok(Listen(vec![Spanned::new(0..0, v.to_owned())]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listen, A::Error> {
                let mut all = Vec::new();
                while let Some(addr) = seq.next_element::<Spanned<String>>()? {
                    all.push(addr);
                }
                Ok(Listen(all))
            }
        }

        deserializer.deserialize_any(ListenVisitor)
    }
}
