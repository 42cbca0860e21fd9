//! Who may hold a control connection: a bounded number at once, and only
//! peers with this process's uid, or root. A refusal is answered, and logged
//! at most once a second: a stranger's connect loop must not flood the log.

use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::protocol::ErrorKind;
use crate::log_limit::LogLimit;

/// Control connections served at once; more are answered `busy`.
pub(super) const MAX_CLIENTS: usize = 32;

/// The checks every control connection passes before its request is read.
pub(super) struct Gate {
    uid: u32,
    slots: Arc<Semaphore>,
    refusals: LogLimit,
}

/// A connection let through: it holds one of the slots while it lives.
pub(super) struct Admitted {
    _slot: OwnedSemaphorePermit,
    pub(super) peer_uid: u32,
    pub(super) peer_pid: i32,
}

/// Why a connection was not let through.
#[derive(Debug)]
pub(super) enum Refused {
    /// Every slot is taken.
    Busy,
    /// The peer's uid is neither ours nor root.
    Forbidden { peer_uid: u32 },
    /// The kernel could not say who the peer is: close without a word.
    NoCredentials,
}

impl Refused {
    /// The error line to answer with, if any.
    pub(super) fn reply(&self) -> Option<(ErrorKind, String)> {
        match self {
            Refused::Busy => Some((
                ErrorKind::Busy,
                "too many control connections; try again".to_owned(),
            )),
            Refused::Forbidden { peer_uid } => Some((
                ErrorKind::Forbidden,
                format!("uid {peer_uid} may not control this server"),
            )),
            Refused::NoCredentials => None,
        }
    }
}

impl Gate {
    /// Serves peers with `uid` (or root), `max_clients` at once.
    pub(super) fn new(uid: u32, max_clients: usize) -> Gate {
        Gate {
            uid,
            slots: Arc::new(Semaphore::new(max_clients)),
            refusals: LogLimit::default(),
        }
    }

    /// Takes a slot for `stream` and checks who is on the other end.
    ///
    /// # Errors
    /// When no slot is free or the peer may not control this server.
    pub(super) fn admit(&self, stream: &UnixStream) -> Result<Admitted, Refused> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        let peer = rustix::net::sockopt::socket_peercred(stream).map_err(|e| {
            tracing::warn!("control connection refused: cannot read its credentials: {e}");
            Refused::NoCredentials
        })?;
        let (peer_uid, peer_pid) = (peer.uid.as_raw(), peer.pid.as_raw_nonzero().get());
        if !self.allows(peer_uid) {
            if let Some(suppressed) = self.refusals.admit() {
                tracing::warn!(
                    peer_uid,
                    peer_pid,
                    suppressed,
                    "control connection refused: uid {peer_uid} is neither this server's ({}) nor root",
                    self.uid
                );
            }
            return Err(Refused::Forbidden { peer_uid });
        }
        Ok(Admitted {
            _slot: slot,
            peer_uid,
            peer_pid,
        })
    }

    fn allows(&self, peer_uid: u32) -> bool {
        peer_uid == self.uid || peer_uid == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_uid_and_root_may_control() {
        let gate = Gate::new(1000, 1);
        assert!(gate.allows(1000));
        assert!(gate.allows(0));
        assert!(!gate.allows(1001));
        let refused = Refused::Forbidden { peer_uid: 1001 };
        assert_eq!(
            refused.reply(),
            Some((
                ErrorKind::Forbidden,
                "uid 1001 may not control this server".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn past_the_limit_connections_are_busy_until_a_slot_frees() {
        let gate = Gate::new(rustix::process::geteuid().as_raw(), 2);
        let pairs: Vec<_> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let first = gate.admit(&pairs[0].0).unwrap();
        assert_eq!(first.peer_pid, std::process::id() as i32);
        let _second = gate.admit(&pairs[1].0).unwrap();
        let refused = gate.admit(&pairs[2].0).err().unwrap();
        assert!(matches!(refused, Refused::Busy), "{refused:?}");
        assert_eq!(refused.reply().unwrap().0, ErrorKind::Busy);
        drop(first);
        gate.admit(&pairs[2].0).unwrap();
    }
}
