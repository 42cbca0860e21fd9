//! Receiving listening sockets: systemd's socket-activation protocol, spoken
//! by systemd and by a grace parent handing over its listeners.
//!
//! `LISTEN_PID` must be our pid (otherwise the variables were meant for
//! another process and are ignored), `LISTEN_FDS` counts descriptors from 3,
//! `LISTEN_FDNAMES` names them, colon-separated. Each descriptor is checked
//! (a listening TCP stream socket), owned, and marked close-on-exec; the
//! variables are removed so no child of ours misreads them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use rustix::net::{sockopt, AddressFamily, SocketType};

use super::ready::ReadyPipe;
use super::sys;
use crate::listener::Listener;

/// The first inherited descriptor, by the protocol.
pub(crate) const LISTEN_FDS_START: RawFd = 3;
/// More would be a malformed environment, not a real server.
const MAX_FDS: usize = 1024;

/// The variable naming the descriptor a grace child reports readiness on.
pub(crate) const READY_FD_VAR: &str = "GRACE_UPGRADE_READY_FD";

/// Why inherited sockets could not be taken.
///
/// A server should refuse to start on one: the environment promised
/// sockets it does not have, and binding instead would hide a broken unit
/// or upgrade.
///
/// # Example
///
/// ```
/// use grace::handoff::{ActivationError, Inherited};
///
/// std::env::set_var("LISTEN_PID", std::process::id().to_string());
/// std::env::set_var("LISTEN_FDS", "two");
/// let err = Inherited::take().unwrap_err();
/// assert!(matches!(err, ActivationError::InvalidVariable { var: "LISTEN_FDS", .. }));
/// assert_eq!(err.to_string(), r#"LISTEN_FDS="two": not a number"#);
/// assert!(std::env::var_os("LISTEN_FDS").is_none()); // cleared either way
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// A variable is not what the protocol says.
    #[error("{var}={value:?}: {why}")]
    InvalidVariable {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A descriptor is missing or not a listening TCP socket.
    #[error("inherited descriptor {fd}: {why}")]
    InvalidDescriptor {
        /// Its number.
        fd: RawFd,
        /// What is wrong.
        why: String,
    },
}

/// A listening socket received from the parent.
#[derive(Debug)]
struct Socket {
    name: Option<String>,
    addr: SocketAddr,
    fd: OwnedFd,
}

/// Sockets (and, from a grace parent, a readiness pipe) this process was
/// started with.
///
/// # Example
///
/// ```no_run
/// use grace::handoff::Inherited;
/// use grace::Listener;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // Before anything else reads the environment, spawns a child or a
///     // thread: the runtime starts after.
///     let mut inherited = Inherited::take()?;
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let addr = "127.0.0.1:8080".parse()?;
///         let listener = match inherited.listener("127.0.0.1:8080", addr) {
///             Some(listener) => listener?,   // handed over: same socket, same backlog
///             None => Listener::bind(addr)?, // first start
///         };
///         # drop(listener);
///         Ok::<(), Box<dyn std::error::Error>>(())
///     })
/// }
/// ```
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<Socket>,
    ready: Option<ReadyPipe>,
}

impl Inherited {
    /// Reads and clears the socket-activation variables and takes the
    /// descriptors they name. No variables: nothing inherited.
    ///
    /// Call it early, before other threads read the environment.
    ///
    /// # Errors
    /// Malformed variables, or descriptors that are not listening TCP
    /// sockets. Descriptors already taken are closed.
    pub fn take() -> Result<Inherited, ActivationError> {
        warn_if_threads_run();
        let var = |name| std::env::var(name).ok();
        let parsed = parse(
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            var(READY_FD_VAR).as_deref(),
            std::process::id(),
        );
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", READY_FD_VAR] {
            std::env::remove_var(name);
        }
        let Some(parsed) = parsed? else {
            return Ok(Inherited::default());
        };
        let mut sockets = Vec::with_capacity(parsed.names.len());
        for (i, name) in parsed.names.into_iter().enumerate() {
            let fd = LISTEN_FDS_START + i as RawFd;
            let invalid = |why: String| ActivationError::InvalidDescriptor { fd, why };
            let owned = sys::claim_inherited(fd).map_err(|e| {
                invalid(match e.kind() {
                    io::ErrorKind::AlreadyExists => e.to_string(),
                    _ => format!("not open: {e}"),
                })
            })?;
            let addr = check_listening_tcp(&owned).map_err(invalid)?;
            sockets.push(Socket {
                name,
                addr,
                fd: owned,
            });
        }
        let ready = match parsed.ready_fd {
            None => None,
            Some(fd) => {
                Some(
                    ReadyPipe::claim(fd).map_err(|e| ActivationError::InvalidDescriptor {
                        fd,
                        why: format!("not a readiness pipe: {e}"),
                    })?,
                )
            }
        };
        Ok(Inherited { sockets, ready })
    }

    /// True when started by a grace parent handing over its listeners (as
    /// opposed to systemd or a first start).
    pub fn from_upgrade(&self) -> bool {
        self.ready.is_some()
    }

    /// How many sockets are still unclaimed.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when no socket is left unclaimed.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Takes the inherited socket named `name`, or else the one bound to
    /// `addr` (when its port is not 0), as a [`Listener`] named `name`.
    /// `None` when there is no such socket: bind one.
    ///
    /// # Errors
    /// The inner `Err` when the inherited socket cannot be registered with
    /// the runtime.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use grace::{handoff::Inherited, Listener};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = Inherited::take()?; // first: one thread so far
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut listeners = Vec::new();
    /// // By name first (systemd's FileDescriptorName=, or the name a grace
    /// // parent registered), then by address.
    /// for (name, addr) in [("public", "0.0.0.0:8443"), ("admin", "127.0.0.1:9000")] {
    ///     let addr = addr.parse()?;
    ///     listeners.push(match inherited.listener(name, addr) {
    ///         Some(listener) => listener?,
    ///         None => Listener::bind(addr)?.with_name(name),
    ///     });
    /// }
    /// inherited.close_unclaimed(); // addresses no longer configured
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }) }
    /// ```
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn listener(&mut self, name: &str, addr: SocketAddr) -> Option<io::Result<Listener>> {
        let i = self
            .sockets
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
            .or_else(|| {
                (addr.port() != 0)
                    .then(|| self.sockets.iter().position(|s| s.addr == addr))
                    .flatten()
            })?;
        let socket = self.sockets.remove(i);
        Some(Listener::from_fd(name.to_owned(), socket.fd))
    }

    /// Closes the sockets nobody claimed, naming each in the log: their
    /// addresses are no longer configured.
    pub fn close_unclaimed(&mut self) {
        for socket in self.sockets.drain(..) {
            tracing::warn!(
                fd = socket.fd.as_raw_fd(),
                addr = %socket.addr,
                name = socket.name.as_deref().unwrap_or(""),
                "closing an inherited socket that no listen address asks for"
            );
        }
    }

    /// The pipe to tell a grace parent that we are ready, if it started us.
    pub fn take_ready_pipe(&mut self) -> Option<ReadyPipe> {
        self.ready.take()
    }
}

/// Says so when other threads already run, or may start at any moment (we
/// are inside an async runtime, whose workers start when it likes): one of
/// them may read the variables while we remove them (a data race on the
/// environment), or fork a child that inherits descriptors we have not yet
/// marked close-on-exec.
fn warn_if_threads_run() {
    let in_runtime = tokio::runtime::Handle::try_current().is_ok();
    // Linux lists each thread of the process there; elsewhere, count one.
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count);
    if threads > 1 || in_runtime {
        tracing::warn!(
            threads,
            in_runtime,
            "inherited sockets taken while other threads run or may start: take them first \
             in main, before any runtime or thread starts"
        );
    }
}

fn check_listening_tcp(fd: &OwnedFd) -> Result<SocketAddr, String> {
    let kind = sockopt::socket_type(fd).map_err(|e| format!("not a socket: {e}"))?;
    if kind != SocketType::STREAM {
        return Err("not a stream socket".into());
    }
    let domain = sockopt::socket_domain(fd).map_err(|e| e.to_string())?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err("not a TCP socket (IPv4 or IPv6)".into());
    }
    if !sockopt::socket_acceptconn(fd).map_err(|e| e.to_string())? {
        return Err("not listening".into());
    }
    let addr = rustix::net::getsockname(fd).map_err(|e| e.to_string())?;
    SocketAddr::try_from(addr).map_err(|_| "no IP address".to_owned())
}

#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    names: Vec<Option<String>>,
    ready_fd: Option<RawFd>,
}

fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    ready_fd: Option<&str>,
    our_pid: u32,
) -> Result<Option<Parsed>, ActivationError> {
    let Some(fds) = listen_fds else {
        return Ok(None);
    };
    let invalid = |var, value: &str, why| ActivationError::InvalidVariable {
        var,
        value: value.to_owned(),
        why,
    };
    let pid =
        listen_pid.ok_or_else(|| invalid("LISTEN_PID", "", "missing while LISTEN_FDS is set"))?;
    let pid: u32 = pid
        .parse()
        .map_err(|_| invalid("LISTEN_PID", pid, "not a process id"))?;
    if pid != our_pid {
        // Meant for another process (we were started by one that was).
        tracing::debug!(
            listen_pid = pid,
            our_pid,
            "ignoring socket activation meant for another process"
        );
        return Ok(None);
    }
    let count: usize = fds
        .parse()
        .map_err(|_| invalid("LISTEN_FDS", fds, "not a number"))?;
    if count > MAX_FDS {
        return Err(invalid(
            "LISTEN_FDS",
            fds,
            "more descriptors than a server can use",
        ));
    }
    let names = match listen_fdnames {
        None => vec![None; count],
        Some(all) => {
            let names: Vec<Option<String>> = all.split(':').map(|n| Some(decode_name(n))).collect();
            if names.len() != count {
                return Err(invalid(
                    "LISTEN_FDNAMES",
                    all,
                    "does not name as many descriptors as LISTEN_FDS counts",
                ));
            }
            names
        }
    };
    let ready_fd = match ready_fd {
        None => None,
        Some(v) => {
            let fd: RawFd = v
                .parse()
                .map_err(|_| invalid(READY_FD_VAR, v, "not a descriptor number"))?;
            if fd < LISTEN_FDS_START + count as RawFd {
                return Err(invalid(READY_FD_VAR, v, "overlaps the listening sockets"));
            }
            Some(fd)
        }
    };
    Ok(Some(Parsed { names, ready_fd }))
}

/// Names travel in a colon-separated list, and addresses contain colons:
/// percent-encode `%` and `:`.
pub(crate) fn encode_name(name: &str) -> String {
    name.replace('%', "%25").replace(':', "%3A")
}

fn decode_name(name: &str) -> String {
    name.replace("%3A", ":").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_colons_survive_the_trip() {
        for name in ["127.0.0.1:8080", "[::1]:443", "100%:x", "grace.socket"] {
            assert_eq!(decode_name(&encode_name(name)), name);
            assert!(!encode_name(name).contains(':'));
        }
    }

    #[test]
    fn variables_for_another_process_are_ignored() {
        assert_eq!(parse(Some("1"), Some("2"), None, None, 77).unwrap(), None);
        assert_eq!(parse(None, None, None, None, 77).unwrap(), None);
    }

    #[test]
    fn names_and_the_ready_pipe_are_read() {
        let parsed = parse(Some("77"), Some("2"), Some("a%3A1:b"), Some("5"), 77)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.names, vec![Some("a:1".into()), Some("b".into())]);
        assert_eq!(parsed.ready_fd, Some(5));
    }

    #[test]
    fn malformed_variables_are_errors_that_say_which() {
        let err =
            |pid, fds, names, ready| parse(pid, fds, names, ready, 77).unwrap_err().to_string();
        assert_eq!(
            err(None, Some("1"), None, None),
            "LISTEN_PID=\"\": missing while LISTEN_FDS is set"
        );
        assert_eq!(
            err(Some("x"), Some("1"), None, None),
            "LISTEN_PID=\"x\": not a process id"
        );
        assert_eq!(
            err(Some("77"), Some("-1"), None, None),
            "LISTEN_FDS=\"-1\": not a number"
        );
        assert!(err(Some("77"), Some("2"), Some("a"), None).contains("as many descriptors"));
        assert!(err(Some("77"), Some("2"), None, Some("4")).contains("overlaps"));
        assert!(err(Some("77"), Some("99999"), None, None).contains("more descriptors"));
    }
}
