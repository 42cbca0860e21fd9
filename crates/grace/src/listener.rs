//! Listening sockets and the accept loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::error::BindError;
use crate::log_limit::LogLimit;

/// How many completed connections the kernel queues for us. Large, because
/// a restart or a reload storm must not overflow it into refused connects.
const BACKLOG: u32 = 1024;

/// A bound on open connections that [`Listener::accept_until`] asks before
/// each accept. Defined here and implemented by the HTTP layer above, so the
/// listener depends on no server above it.
pub(crate) trait ConnectionLimit {
    /// One open connection's place under the limit, held while it is open.
    type Slot;

    /// Waits for a free slot.
    ///
    /// # Cancel safety
    /// Must be cancel safe: the accept loop drops it when told to stop.
    fn admit(&self, listener: &str) -> impl Future<Output = Self::Slot> + Send;

    /// A slot even past the limit, for connections the kernel had already
    /// completed when the listener closes.
    fn admit_now(&self) -> Self::Slot;
}

/// A listening TCP socket with a stable name.
///
/// The name identifies the socket across a hand-off to another process;
/// by default it is the address it was asked to listen on.
///
/// # Example
///
/// ```
/// use grace::Listener;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("127.0.0.1:0".parse()?)?;
/// // Port 0 picked a free port, but the name stays the address asked for:
/// // that is how the new process of an upgrade finds this socket again.
/// assert_eq!(listener.name(), "127.0.0.1:0");
/// assert_ne!(listener.local_addr().port(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener {
    name: String,
    addr: SocketAddr,
    inner: TcpListener,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
}

impl Listener {
    /// Binds `addr` with `SO_REUSEADDR` (so a restart does not wait for
    /// `TIME_WAIT` sockets) and a deep backlog. Port 0 picks a free port;
    /// [`Listener::local_addr`] tells which.
    ///
    /// # Errors
    /// A [`BindError`] naming the address and the OS's reason.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn bind(addr: SocketAddr) -> Result<Listener, BindError> {
        let requested = addr;
        let fail = |source| BindError { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(fail)?;
        socket.set_reuseaddr(true).map_err(fail)?;
        socket.bind(addr).map_err(fail)?;
        let inner = socket.listen(BACKLOG).map_err(fail)?;
        let addr = inner.local_addr().map_err(fail)?;
        Ok(Listener {
            name: requested.to_string(),
            addr,
            inner,
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Accepts one connection: for services that run their own accept loop
    /// (non-HTTP ones). Select it against [`Shutdown::draining`] to stop.
    ///
    /// [`Shutdown::draining`]: crate::Shutdown::draining
    ///
    /// # Cancel safety
    /// Cancel safe: no connection is lost by dropping it.
    ///
    /// # Errors
    /// As `accept(2)`.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.inner.accept().await
    }

    /// Serves an already listening socket (inherited, or made by the caller)
    /// under `name`.
    ///
    /// # Errors
    /// When the descriptor cannot be made non-blocking or registered.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn from_fd(name: String, fd: std::os::fd::OwnedFd) -> io::Result<Listener> {
        let std = std::net::TcpListener::from(fd);
        std.set_nonblocking(true)?;
        let inner = TcpListener::from_std(std)?;
        let addr = inner.local_addr()?;
        Ok(Listener {
            name,
            addr,
            inner,
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Renames the listener. The name is how a new process finds this socket
    /// after an upgrade: use the address as configured (`127.0.0.1:0` stays
    /// `127.0.0.1:0` whatever port it got).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Serves this listener's connections over TLS with `tls` (feature
    /// `tls`). The socket itself is unchanged, so an upgrade hands it over
    /// like any other: the new process decides again whether it is TLS.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use grace::tls::{CertStore, Certificate, Tls, Validity};
    /// use grace::Listener;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cert = Certificate::load("cert.pem", "key.pem", Validity::Enforce)?;
    /// let listener = Listener::bind("[::1]:8443".parse()?)?.with_tls(Tls::new(CertStore::new(cert)));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::tls::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS this listener serves with, if any.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::Tls> {
        self.tls.as_ref()
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts connections, handing each to `on_conn` with its place under
    /// the connection limit, until `stop` is cancelled (the drain started, or
    /// this listener was removed). At the limit it waits for a slot before
    /// accepting, so the excess waits in the kernel's backlog. Once stopped it
    /// takes the connections the kernel had already completed, so closing the
    /// socket does not reset them, and closes it: from then on connects are
    /// refused instead of left in a queue nobody reads.
    pub(crate) async fn accept_until<L, F>(
        self,
        stop: CancellationToken,
        admission: &L,
        mut on_conn: F,
    ) where
        L: ConnectionLimit,
        F: FnMut(TcpStream, SocketAddr, L::Slot),
    {
        let mut backoff = Backoff::default();
        loop {
            let slot = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                slot = admission.admit(&self.name) => slot,
            };
            let accepted = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                accepted = self.inner.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    on_conn(stream, peer, slot);
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    let pause = backoff.next(&self.name, &e);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        self.sweep_and_close(admission, &mut on_conn);
    }

    fn sweep_and_close<L, F>(self, admission: &L, on_conn: &mut F)
    where
        L: ConnectionLimit,
        F: FnMut(TcpStream, SocketAddr, L::Slot),
    {
        let name = self.name;
        let std = match self.inner.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::warn!(listener = %name, "could not take queued connections: {e}");
                return;
            }
        };
        let mut taken = 0usize;
        loop {
            match std.accept() {
                Ok((stream, peer)) => match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => {
                        taken += 1;
                        on_conn(stream, peer, admission.admit_now());
                    }
                    Err(e) => tracing::debug!(listener = %name, "dropping queued connection: {e}"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    tracing::warn!(listener = %name, "stopped taking queued connections: {e}");
                    break;
                }
            }
        }
        drop(std);
        // From this line on, connects to this address are refused.
        tracing::info!(listener = %name, queued = taken, "closed listener {name}");
    }
}

/// Errors that concern one connection that is already gone; the listener
/// itself is fine and accepting again is right.
fn is_per_connection(e: &io::Error) -> bool {
    // The accept(2) man page lists EPROTO and EPERM (a firewall) as errors of
    // the pending connection; std has no ErrorKind for them.
    const PENDING_CONNECTION: [rustix::io::Errno; 2] =
        [rustix::io::Errno::PROTO, rustix::io::Errno::PERM];
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error().is_some_and(|code| {
        PENDING_CONNECTION.contains(&rustix::io::Errno::from_raw_os_error(code))
    })
}

/// Back-off for resource errors (EMFILE, ENFILE, ENOBUFS, ENOMEM): retrying at
/// once would spin a core while nothing can change. Logs at most once per
/// second while errors repeat.
#[derive(Default)]
struct Backoff {
    pause: Duration,
    // Accepts that failed since the last success.
    failures: u64,
    log: LogLimit,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        if self.failures != 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        *self = Backoff::default();
    }

    fn next(&mut self, listener: &str, error: &io::Error) -> Duration {
        self.pause = (self.pause * 2).clamp(Self::FIRST, Self::MAX);
        self.failures += 1;
        if let Some(suppressed) = self.log.admit() {
            tracing::error!(
                listener,
                pause_ms = self.pause.as_millis() as u64,
                suppressed,
                "accept failed, backing off: {error}"
            );
        }
        self.pause
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_the_pending_connection_are_not_the_listeners() {
        for errno in [libc::EPROTO, libc::EPERM, libc::ECONNABORTED, libc::EINTR] {
            assert!(
                is_per_connection(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(
                !is_per_connection(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_a_second_and_starts_over_after_a_success() {
        let mut backoff = Backoff::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<_> = (0..10).map(|_| backoff.next("t", &emfile)).collect();
        assert_eq!(pauses[0], Backoff::FIRST);
        assert_eq!(pauses[1], Backoff::FIRST * 2);
        assert_eq!(pauses[9], Backoff::MAX);
        assert_eq!(backoff.failures, 10);
        backoff.reset();
        assert_eq!(backoff.next("t", &emfile), Backoff::FIRST);
    }
}
