//! Why a [`Server`](super::Server) could not start, and the exit status
//! each reason deserves.

use crate::error::{BindError, BoxError};
use crate::handoff::ActivationError;
use crate::pidfile::PidFileError;

/// Why a [`Server`](super::Server) could not start.
///
/// Each variant is a different thing for an operator to fix, so each maps
/// to its own exit status ([`StartError::exit_code`]).
///
/// # Example
///
/// ```no_run
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper::{service::service_fn, Response};
///
/// let service = |_config, _shutdown| {
///     service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) })
/// };
/// let server = grace::Server::new(|| std::fs::read_to_string("app.conf"))
///     .listen("127.0.0.1:8080".parse().unwrap());
/// let code = match server.run_blocking(service) {
///     Ok(outcome) => if outcome.is_clean() { 0 } else { 75 },
///     Err(e) => {
///         eprintln!("cannot start: {e}");
///         e.exit_code()
///     }
/// };
/// std::process::exit(i32::from(code));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The first configuration was rejected by the loader.
    #[error("invalid configuration: {0}")]
    Config(#[source] BoxError),
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// An inherited socket could not be used for the listener it names.
    #[error("cannot use the inherited socket for {name}: {source}")]
    Inherited {
        /// The listener's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Inherited sockets (`LISTEN_FDS`) were malformed.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// The pid file is owned by a live server, or cannot be written.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The control socket is answered by a live server, or cannot be
    /// created.
    #[cfg(feature = "control")]
    #[error(transparent)]
    ControlSocket(#[from] crate::control::ControlSocketError),
    /// Signal handlers, the runtime, the file watch, or the program's path
    /// for upgrades: the OS said no.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// sysexits(3) statuses.
const EX_UNAVAILABLE: u8 = 69;
const EX_OSERR: u8 = 71;
const EX_CANTCREAT: u8 = 73;
const EX_CONFIG: u8 = 78;

impl StartError {
    /// The sysexits(3) status a process should exit with: 78 (`EX_CONFIG`)
    /// for a rejected configuration, 69 (`EX_UNAVAILABLE`) when an address,
    /// the pid file or the control socket is taken by someone else, 73
    /// (`EX_CANTCREAT`) when the pid file or control socket cannot be
    /// created, 71 (`EX_OSERR`) for the rest. A service manager told not to
    /// restart on 78 stops a restart loop on a bad configuration.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => EX_CONFIG,
            StartError::Bind(_) | StartError::Inherited { .. } => EX_UNAVAILABLE,
            StartError::PidFile(PidFileError::InUse { .. }) => EX_UNAVAILABLE,
            StartError::PidFile(_) => EX_CANTCREAT,
            #[cfg(feature = "control")]
            StartError::ControlSocket(crate::control::ControlSocketError::InUse { .. }) => {
                EX_UNAVAILABLE
            }
            #[cfg(feature = "control")]
            StartError::ControlSocket(_) => EX_CANTCREAT,
            StartError::Activation(_) | StartError::Os { .. } => EX_OSERR,
        }
    }

    pub(crate) fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
        move |source| StartError::Os { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_sysexits_status() {
        let io = || std::io::Error::other("no");
        assert_eq!(StartError::Config("bad".into()).exit_code(), 78);
        let taken = PidFileError::InUse {
            path: "x.pid".into(),
            pid: Some(1),
        };
        assert_eq!(StartError::PidFile(taken).exit_code(), 69);
        let unwritable = PidFileError::Write {
            path: "x.pid".into(),
            source: io(),
        };
        assert_eq!(StartError::PidFile(unwritable).exit_code(), 73);
        let inherited = StartError::Inherited {
            name: "a".into(),
            source: io(),
        };
        assert_eq!(inherited.exit_code(), 69);
        assert_eq!(
            StartError::os("installing signal handlers")(io()).exit_code(),
            71
        );
    }
}
