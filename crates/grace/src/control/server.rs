//! Answering on the control socket: the accept loop, and each connection
//! through its steps ([`limits`](super::limits), then
//! [`framing`](super::framing), then [`dispatch`](super::dispatch)).
//!
//! Each connection is its own task, bounded in number, in time to send its
//! request, and in the size of that request: a client that says nothing,
//! says too much, or stops reading can hold at most its own task, never the
//! accept loop or another client.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::{Handlers, ServerInfo};
use super::framing::Conn;
use super::limits::{Gate, MAX_CLIENTS};
use super::socket::ControlSocket;
use crate::lifecycle::Controller;
use crate::log_limit::LogLimit;

/// How long the accept loop pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the control protocol on a [`ControlSocket`]; see the
/// [module docs](super).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
/// use grace::control::{BindMode, ControlServer, ControlSocket, ServerInfo};
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let drain = |_: &u32| DrainSettings::default();
/// let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), drain);
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.ctl", std::process::id()));
/// let socket = ControlSocket::bind(&path, BindMode::Exclusive)?;
/// let server = ControlServer::start(socket, lifecycle.controller(), ServerInfo::new(None))?;
///
/// let mut client = tokio::net::UnixStream::connect(&path).await?;
/// client.write_all(b"{\"cmd\":\"reload\"}\n").await?;
/// let mut reply = String::new();
/// BufReader::new(client).read_line(&mut reply).await?;
/// assert_eq!(reply, "{\"ok\":true,\"reply\":\"reloaded\",\"generation\":2}\n");
///
/// server.close(Duration::from_secs(1)).await;
/// assert!(!path.exists());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ControlServer {
    socket: ControlSocket,
    stop: CancellationToken,
    // Connections that follow a stop to the end (`stop` with `wait`): the
    // only ones worth delaying the exit for, to send their last line.
    waiters: TaskTracker,
}

impl ControlServer {
    /// Starts answering on `socket`, acting through `controller`.
    ///
    /// # Errors
    /// When the socket cannot be registered with the runtime, or was already
    /// served.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start<T: Send + Sync + 'static>(
        mut socket: ControlSocket,
        controller: Controller<T>,
        info: ServerInfo,
    ) -> std::io::Result<ControlServer> {
        let std_listener = socket.take_listener().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the control socket is already served",
            )
        })?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(std_listener)?;
        let stop = CancellationToken::new();
        let waiters = TaskTracker::new();
        let context = Arc::new(Context {
            handlers: Handlers::new(controller, info, waiters.clone()),
            gate: Gate::new(rustix::process::geteuid().as_raw(), MAX_CLIENTS),
            accept_errors: LogLimit::default(),
        });
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(handle(stream, context.clone()));
                    }
                    Err(e) => {
                        // Out of descriptors, say: back off instead of
                        // spinning; the clients' connects wait in the backlog.
                        if let Some(suppressed) = context.accept_errors.admit() {
                            tracing::warn!(suppressed, "control socket: accept failed: {e}");
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        });
        Ok(ControlServer {
            socket,
            stop,
            waiters,
        })
    }

    /// Makes a takeover socket reachable (see
    /// [`ControlSocket::publish`]): call it once this process serves.
    ///
    /// # Errors
    /// When the rename fails.
    pub fn publish(&mut self) -> Result<(), super::ControlSocketError> {
        self.socket.publish()
    }

    /// Stops accepting, gives clients following a stop (`stop` with `wait`)
    /// up to `grace` to get their last line, then removes the socket's path
    /// if it is still ours. Other control connections are not waited for: a
    /// silent client must not delay the exit.
    ///
    /// # Return value
    /// Resolves as soon as those clients are answered, within `grace`.
    ///
    /// # Cancel safety
    /// Cancel safe once polled: dropping it ends the wait early; accepting
    /// has stopped, the path is removed all the same, and the waiting
    /// clients' connections finish on their own.
    pub async fn close(self, grace: Duration) {
        self.stop.cancel();
        self.waiters.close();
        let _ = tokio::time::timeout(grace, self.waiters.wait()).await;
        drop(self.socket);
    }
}

struct Context<T> {
    handlers: Handlers<T>,
    gate: Gate,
    accept_errors: LogLimit,
}

async fn handle<T: Send + Sync + 'static>(stream: UnixStream, ctx: Arc<Context<T>>) {
    let mut conn = Conn::new(stream);
    let peer = match ctx.gate.admit(conn.stream()) {
        Ok(peer) => peer,
        Err(refused) => {
            if let Some((kind, message)) = refused.reply() {
                conn.refuse(kind, message).await;
            }
            return;
        }
    };
    let (peer_pid, peer_uid) = (peer.peer_pid, peer.peer_uid);
    let request = match conn.read_request().await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(refusal) => {
            tracing::info!(peer_pid, "control request refused: {}", refusal.message);
            conn.refuse(refusal.kind, refusal.message).await;
            return;
        }
    };
    tracing::info!(peer_pid, peer_uid, ?request, "control request");
    ctx.handlers.dispatch(request, &mut conn).await;
}
