//! The listeners a [`Server`](super::Server) serves: named after their
//! address, plain or TLS, taken from inherited sockets or bound, and
//! re-evaluated on every reload with a prepare step (bind what is new,
//! before the swap) and a commit (start and stop listeners, after it).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::BoxError;
use crate::handoff::{Handoff, Inherited};
use crate::http::Running;
use crate::listener::Listener;
use crate::reload::Commit;
use crate::server::StartError;

pub(crate) type AddrsFn<T> = Arc<dyn Fn(&T) -> Vec<SocketAddr> + Send + Sync>;
#[cfg(feature = "tls")]
pub(crate) type CertsFn<T> = Arc<dyn Fn(&T) -> Option<crate::tls::CertStore> + Send + Sync>;

/// Which addresses to serve for a configuration, and how.
pub(crate) struct Addresses<T> {
    pub(crate) plain: Vec<AddrsFn<T>>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<(AddrsFn<T>, CertsFn<T>)>,
    #[cfg(feature = "tls")]
    pub(crate) shared: crate::tls::SharedTls,
}

impl<T> Clone for Addresses<T> {
    fn clone(&self) -> Self {
        Addresses {
            plain: self.plain.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            #[cfg(feature = "tls")]
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Addresses<T> {
    pub(crate) fn new() -> Self {
        Addresses {
            plain: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            shared: crate::tls::SharedTls::default(),
        }
    }

    /// Every address served for `config`, and whether over TLS.
    fn of(&self, config: &T) -> Vec<(SocketAddr, bool)> {
        let plain = self
            .plain
            .iter()
            .flat_map(|addrs| addrs(config))
            .map(|addr| (addr, false));
        #[cfg(feature = "tls")]
        let plain = plain.chain(
            self.tls
                .iter()
                .flat_map(|(addrs, _)| addrs(config))
                .map(|addr| (addr, true)),
        );
        plain.collect()
    }

    /// Wraps `listener` in TLS when `tls`: the certificates were installed
    /// by whoever checked that `config` has some.
    fn secure(&self, listener: Listener, tls: bool, _store: Option<&Store>) -> Listener {
        #[cfg(feature = "tls")]
        if let (true, Some(store)) = (tls, _store) {
            return listener.with_tls(self.shared.handle(store));
        }
        let _ = tls;
        listener
    }

    fn store(&self, _config: &T) -> Option<Store> {
        #[cfg(feature = "tls")]
        if let Some((_, certs)) = &self.tls {
            return certs(_config);
        }
        None
    }

    /// The listeners for the first configuration: the inherited socket of
    /// that name (or address) when there is one, a newly bound one
    /// otherwise. An upgrade hands TLS sockets over like plain ones; the new
    /// process's configuration says again which are TLS.
    pub(crate) fn open(
        &self,
        config: &T,
        inherited: &mut Inherited,
    ) -> Result<Vec<Listener>, StartError> {
        let all = self.of(config);
        let store = self.store(config);
        if all.iter().any(|(_, tls)| *tls) && store.is_none() {
            return Err(StartError::Config(
                "TLS listeners without certificates".into(),
            ));
        }
        #[cfg(feature = "tls")]
        if let Some(store) = &store {
            self.shared.install(store);
        }
        let mut listeners = Vec::with_capacity(all.len());
        for (addr, tls) in all {
            let name = addr.to_string();
            let listener = match inherited.listener(&name, addr) {
                Some(Ok(listener)) => {
                    tracing::info!(name, addr = %listener.local_addr(), "using inherited socket");
                    listener
                }
                Some(Err(source)) => return Err(StartError::Inherited { name, source }),
                None => Listener::bind(addr)?,
            };
            listeners.push(self.secure(listener, tls, store.as_ref()));
        }
        Ok(listeners)
    }

    /// The reload step for listen changes. New addresses are bound before
    /// the swap, so a failure rejects the whole reload and changes nothing;
    /// after the swap the new certificates are installed (new handshakes use
    /// them, open connections keep theirs), new addresses start accepting,
    /// and removed addresses stop (their connections drain). Unchanged
    /// addresses keep their socket and its backlog. An address that moves
    /// between plain and TLS is refused: its socket would have to be closed
    /// and bound again, which an upgrade does without losing the backlog.
    pub(crate) fn prepare(
        &self,
        old: &T,
        new: &T,
        running: &Running,
        handoff: &Arc<Handoff>,
    ) -> Result<Option<Commit>, BoxError> {
        let old_all = self.of(old);
        let new_all = self.of(new);
        for (addr, tls) in &new_all {
            if old_all.iter().any(|(a, t)| a == addr && t != tls) {
                return Err(format!(
                    "{addr} moves between plain and TLS listeners: that needs an upgrade, not a \
                     reload"
                )
                .into());
            }
        }
        let added: Vec<(SocketAddr, bool)> = new_all
            .iter()
            .filter(|a| !old_all.contains(a))
            .copied()
            .collect();
        let removed: Vec<String> = old_all
            .iter()
            .filter(|a| !new_all.contains(a))
            .map(|(addr, _)| addr.to_string())
            .collect();
        let store = self.store(new);
        if added.is_empty() && removed.is_empty() && store.is_none() {
            return Ok(None);
        }
        if added.iter().any(|(_, tls)| *tls) && store.is_none() {
            return Err("TLS listeners without certificates".into());
        }
        let bound = added
            .into_iter()
            .map(|(addr, tls)| Listener::bind(addr).map(|l| (l, tls)))
            .collect::<Result<Vec<_>, _>>()?;
        let (this, running, handoff) = (self.clone(), running.clone(), handoff.clone());
        Ok(Some(Box::new(move || {
            #[cfg(feature = "tls")]
            if let Some(store) = &store {
                this.shared.install(store);
            }
            for (listener, tls) in bound {
                register(&handoff, &listener);
                running.add(this.secure(listener, tls, store.as_ref()));
            }
            for name in removed {
                handoff.unregister(&name);
                running.remove(&name);
            }
        })))
    }
}

#[cfg(feature = "tls")]
type Store = crate::tls::CertStore;
/// Without TLS there are no certificates to carry.
#[cfg(not(feature = "tls"))]
type Store = std::convert::Infallible;

/// Passes `listener` to an upgrade's new process; one that cannot be passed
/// is bound anew there, which only costs its backlog, so serving goes on.
pub(crate) fn register(handoff: &Handoff, listener: &Listener) {
    if let Err(e) = handoff.register(listener) {
        tracing::warn!(
            listener = listener.name(),
            "upgrades will not pass this socket: {e}"
        );
    }
}

/// Name of the admin socket in a hand-off: not an address, so it can never
/// be taken for a main listener (or the other way round).
pub(crate) const ADMIN_NAME: &str = "admin";

/// The admin listener on `addr`: inherited from a parent of an upgrade, or
/// newly bound.
pub(crate) fn admin(addr: SocketAddr, inherited: &mut Inherited) -> Result<Listener, StartError> {
    match inherited.listener(ADMIN_NAME, addr) {
        Some(Ok(listener)) => Ok(listener),
        Some(Err(source)) => Err(StartError::Inherited {
            name: ADMIN_NAME.to_owned(),
            source,
        }),
        None => Ok(Listener::bind(addr)?.with_name(ADMIN_NAME)),
    }
}
