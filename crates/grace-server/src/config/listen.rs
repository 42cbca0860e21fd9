//! Listen addresses: parsed, and checked against each other the way the
//! kernel will check them at bind time, so that a pair that can never both
//! listen is a config error (`check` and reload say so) instead of a start
//! that exits 69 or a reload refused half-way.

use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use super::raw::Listen;
use super::{Checker, ConfigError};

/// grace binds IPv6 addresses without `IPV6_V6ONLY` (`Listener::bind`), so
/// a `[::]` socket takes IPv4 as well unless the host's default says
/// otherwise. Linux's default is dual-stack; without the file (no IPv6, or
/// not Linux), assume the default.
pub(super) fn v6_wildcard_takes_v4() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map_or(true, |v| v.trim() != "1")
}

/// Why `a` and `b` cannot both listen, when they cannot: the same port, and
/// one address covering the other. With `SO_REUSEADDR` (which grace sets),
/// Linux still refuses a second listening socket on a port whose address
/// overlaps a listening one's: a wildcard covers every address of its
/// family, and a dual-stack `[::]` covers IPv4 too.
fn collision(a: SocketAddr, b: SocketAddr, dual_stack: bool) -> Option<String> {
    let port = a.port();
    if port != b.port() || port == 0 {
        return None;
    }
    // `[::ffff:a.b.c.d]` is the IPv4 address a.b.c.d on a dual-stack socket.
    let plain = |addr: SocketAddr| match addr {
        SocketAddr::V6(v6) if dual_stack => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(addr, |v4| SocketAddr::from((v4, port))),
        _ => addr,
    };
    let (pa, pb) = (plain(a), plain(b));
    if pa == pb {
        return Some(if a == b {
            "it is the same address".to_owned()
        } else {
            format!(
                "{} is the IPv4 address {pa} on a dual-stack socket",
                if a.is_ipv6() { a } else { b }
            )
        });
    }
    if pa.is_ipv4() == pb.is_ipv4() {
        return (pa.ip().is_unspecified() || pb.ip().is_unspecified()).then(|| {
            "a wildcard address takes its port on every address of its family".to_owned()
        });
    }
    let v6 = if pa.is_ipv6() { pa } else { pb };
    (dual_stack && v6.ip().is_unspecified()).then(|| {
        format!(
            "{v6} also takes IPv4 connections on port {port} (IPv6 sockets are dual-stack \
             here: net.ipv6.bindv6only = 0)"
        )
    })
}

impl Checker {
    /// The entries of a `listen` value, each with its place in the file.
    pub(super) fn listen(
        &self,
        listen: Spanned<Listen>,
        may_be_empty: bool,
    ) -> Result<Vec<(SocketAddr, Range<usize>)>, ConfigError> {
        let whole = listen.span();
        let entries = listen.into_inner().0;
        if entries.is_empty() && !may_be_empty {
            return Err(self.fail(whole, "`listen` is empty: give at least one address"));
        }
        let mut addrs: Vec<(SocketAddr, Range<usize>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            let span = if entry.span().is_empty() {
                whole.clone()
            } else {
                entry.span()
            };
            let text = entry.get_ref();
            let addr: SocketAddr = text.parse().map_err(|_| {
                let hint = if text.parse::<std::net::IpAddr>().is_ok() {
                    " (it has no port)"
                } else {
                    ""
                };
                self.fail(
                    span.clone(),
                    format!(
                        "invalid listen address \"{text}\"{hint}: expected IP:PORT, \
                         such as \"0.0.0.0:8080\" or \"[::1]:8080\""
                    ),
                )
            })?;
            if addrs.iter().any(|(a, _)| *a == addr) {
                return Err(self.fail(span, format!("listen address {addr} is given twice")));
            }
            let earlier = addrs.iter().map(|(a, _)| *a);
            self.must_not_collide("listen address", addr, &span, earlier, "in `listen`")?;
            addrs.push((addr, span));
        }
        Ok(addrs)
    }

    /// `[server] admin_listen`, given `[server] listen`.
    pub(super) fn admin_listen(
        &self,
        addr: &Spanned<String>,
        listen: &[SocketAddr],
    ) -> Result<SocketAddr, ConfigError> {
        let parsed: SocketAddr = addr.get_ref().parse().map_err(|_| {
            self.fail(
                addr.span(),
                format!(
                    "invalid admin_listen address \"{}\": expected IP:PORT, such as \
                     \"127.0.0.1:9090\"",
                    addr.get_ref()
                ),
            )
        })?;
        if listen.contains(&parsed) && parsed.port() != 0 {
            return Err(self.fail(
                addr.span(),
                format!("admin_listen {parsed} is also in `listen`: give it its own address"),
            ));
        }
        let listen = listen.iter().copied();
        self.must_not_collide("admin_listen", parsed, &addr.span(), listen, "in `listen`")?;
        Ok(parsed)
    }

    /// Refuses `addr` (the key `what`, at `span`) when it collides with one
    /// of `others` (those of `whose`).
    pub(super) fn must_not_collide(
        &self,
        what: &str,
        addr: SocketAddr,
        span: &Range<usize>,
        others: impl IntoIterator<Item = SocketAddr>,
        whose: &str,
    ) -> Result<(), ConfigError> {
        for other in others {
            if let Some(why) = collision(addr, other, self.dual_stack) {
                return Err(self.fail(
                    span.clone(),
                    format!(
                        "{what} {addr} overlaps {other} ({whose}): {why}, so the two cannot \
                         both listen; keep one"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collide(a: &str, b: &str, dual_stack: bool) -> bool {
        let (a, b) = (a.parse().unwrap(), b.parse().unwrap());
        let one_way = collision(a, b, dual_stack).is_some();
        assert_eq!(one_way, collision(b, a, dual_stack).is_some(), "{a} {b}");
        one_way
    }

    #[test]
    fn collisions_follow_what_linux_refuses_to_bind() {
        // Measured on Linux with SO_REUSEADDR on both sockets.
        assert!(collide("0.0.0.0:80", "[::]:80", true));
        assert!(collide("127.0.0.1:80", "[::]:80", true));
        assert!(collide("0.0.0.0:80", "127.0.0.1:80", true));
        assert!(collide("[::1]:80", "[::]:80", true));
        assert!(collide("127.0.0.1:80", "[::ffff:127.0.0.1]:80", true));
        assert!(!collide("0.0.0.0:80", "[::1]:80", true));
        assert!(!collide("127.0.0.1:80", "127.0.0.2:80", true));
        assert!(!collide("0.0.0.0:80", "[::]:81", true));
        assert!(!collide("0.0.0.0:0", "[::]:0", true));
        // `[::]` is IPv6 only where the host says so.
        assert!(!collide("0.0.0.0:80", "[::]:80", false));
        assert!(collide("[::1]:80", "[::]:80", false));
    }
}
