//! The checker: from the file as written (`raw`) to a settled [`Config`],
//! every value in range, every error naming its file, line and column.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grace::Limits;
use toml::Spanned;

use super::raw::{RawConfig, RawLimits, RawServer};
use super::{listen, Config, ConfigError, Origin, Server};

/// Checks a parsed file against the rules and settles it into a [`Config`];
/// each error points at the offending span. The sections' own rules live
/// beside their types (`listen.rs`, `routes.rs`, `tls.rs`).
pub(super) struct Checker {
    pub(super) origin: Origin,
    text: Arc<str>,
    /// Whether `[::]` takes IPv4 too here, so that it collides with IPv4
    /// addresses on its port.
    pub(super) dual_stack: bool,
}

impl Checker {
    pub(super) fn new(origin: Origin, text: Arc<str>) -> Checker {
        Checker {
            origin,
            text,
            dual_stack: listen::v6_wildcard_takes_v4(),
        }
    }

    pub(super) fn fail(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.origin.clone(), self.text.clone(), Some(span), message)
    }

    pub(super) fn config(&self, mut raw: RawConfig) -> Result<Config, ConfigError> {
        let raw_tls = raw.server.tls.take();
        let has_tls_listen = raw_tls
            .as_ref()
            .is_some_and(|t| t.get_ref().listen.is_some());
        let server = self.server(raw.server, has_tls_listen)?;
        let tls = match raw_tls {
            None => None,
            Some(raw_tls) => Some(self.tls(raw_tls, &server)?),
        };
        let routes = self.routes(raw.message.as_ref(), &raw.routes, &server)?;
        let app = match raw.app {
            None => None,
            Some(app) => Some(self.app(app)?),
        };
        let mut limits = self.limits(raw.limits)?;
        if let Some(tls) = &tls {
            limits.tls_handshake_timeout = tls.handshake_timeout;
        }
        Ok(Config {
            server,
            routes,
            limits,
            tls,
            app,
        })
    }

    fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let default = Limits::default();
        let timeout = Duration::from_millis(100)..=Duration::from_secs(3600);
        let mut limits = default;
        limits.header_read_timeout = self.duration(
            raw.header_read_timeout,
            default.header_read_timeout,
            timeout.clone(),
            "header_read_timeout",
        )?;
        limits.idle_timeout = self.duration(
            raw.idle_timeout,
            default.idle_timeout,
            timeout.clone(),
            "idle_timeout",
        )?;
        limits.write_timeout = self.duration(
            raw.write_timeout,
            default.write_timeout,
            timeout,
            "write_timeout",
        )?;
        limits.max_header_size = self.int(
            raw.max_header_size,
            default.max_header_size,
            Limits::MIN_HEADER_SIZE..=1024 * 1024,
            "max_header_size",
        )?;
        limits.max_connections = self.int(
            raw.max_connections,
            default.max_connections,
            1..=1_000_000,
            "max_connections",
        )?;
        limits.http2_max_concurrent_streams = self.int(
            raw.http2_max_concurrent_streams,
            default.http2_max_concurrent_streams,
            1..=10_000,
            "http2_max_concurrent_streams",
        )?;
        limits.http2_max_pending_reset_streams = self.int(
            raw.http2_max_pending_reset_streams,
            default.http2_max_pending_reset_streams,
            1..=10_000,
            "http2_max_pending_reset_streams",
        )?;
        Ok(limits)
    }

    pub(super) fn int<T>(
        &self,
        value: Option<Spanned<i64>>,
        default: T,
        range: std::ops::RangeInclusive<T>,
        key: &str,
    ) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd + std::fmt::Display,
    {
        let Some(value) = value else {
            return Ok(default);
        };
        T::try_from(*value.get_ref())
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                self.fail(
                    value.span(),
                    format!(
                        "`{key}` = {} is out of range: it must be between {} and {}",
                        value.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// `tls_only`: `[server.tls] listen` is given, so `listen` may be empty
    /// (and has no default).
    fn server(&self, raw: RawServer, tls_only: bool) -> Result<Server, ConfigError> {
        let listen = match raw.listen {
            None if tls_only => Vec::new(),
            None => vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
            Some(listen) => self
                .listen(listen, tls_only)?
                .into_iter()
                .map(|(addr, _)| addr)
                .collect(),
        };
        let control_socket = match raw.control_socket {
            None => None,
            Some(path) if path.get_ref().is_empty() => {
                return Err(self.fail(path.span(), "`control_socket` is empty: give a path"))
            }
            Some(path) if path.get_ref().len() > grace::control::MAX_PATH_LEN => {
                let message = format!(
                    "`control_socket` is {} bytes long; a unix socket address holds at most {}",
                    path.get_ref().len(),
                    grace::control::MAX_PATH_LEN
                );
                return Err(self.fail(path.span(), message));
            }
            Some(path) => Some(PathBuf::from(path.into_inner())),
        };
        let admin_listen = match raw.admin_listen {
            None => None,
            Some(addr) => Some(self.admin_listen(&addr, &listen)?),
        };
        Ok(Server {
            control_socket,
            admin_listen,
            metrics: raw.metrics.unwrap_or(true),
            listen,
            shutdown_timeout: self.duration(
                raw.shutdown_timeout,
                Duration::from_secs(30),
                Duration::from_millis(1)..=Duration::from_secs(3600),
                "shutdown_timeout",
            )?,
            shutdown_delay: self.duration(
                raw.shutdown_delay,
                Duration::ZERO,
                Duration::ZERO..=Duration::from_secs(3600),
                "shutdown_delay",
            )?,
            idle_grace: self.duration(
                raw.idle_grace,
                Duration::from_millis(500),
                Duration::ZERO..=Duration::from_secs(60),
                "idle_grace",
            )?,
            upgrade_timeout: self.duration(
                raw.upgrade_timeout,
                Duration::from_secs(30),
                Duration::from_millis(100)..=Duration::from_secs(3600),
                "upgrade_timeout",
            )?,
            watch: raw.watch.unwrap_or(false),
            watch_debounce: self.duration(
                raw.watch_debounce,
                Duration::from_millis(200),
                Duration::from_millis(10)..=Duration::from_secs(60),
                "watch_debounce",
            )?,
        })
    }

    pub(super) fn duration(
        &self,
        value: Option<Spanned<String>>,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let d = humantime::parse_duration(value.get_ref()).map_err(|e| {
            self.fail(
                value.span(),
                format!(
                    "invalid duration \"{}\" for `{key}`: {e}; write it like \"250ms\", \"30s\" or \"1m\"",
                    value.get_ref()
                ),
            )
        })?;
        if !range.contains(&d) {
            return Err(self.fail(
                value.span(),
                format!(
                    "`{key}` = \"{}\" is out of range: it must be between {} and {}",
                    value.get_ref(),
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end()),
                ),
            ));
        }
        Ok(d)
    }
}
