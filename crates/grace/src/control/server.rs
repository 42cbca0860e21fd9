//! Answering on the control socket.
//!
//! Each connection is its own task, bounded in number, in time to send its
//! request, and in the size of that request: a client that says nothing,
//! says too much, or stops reading can hold at most its own task, never the
//! accept loop or another client.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{
    AppState, CertificateStatus, ErrorKind, Exited, LastReload, Line, Progress, Reply, Request,
    Status, MAX_REQUEST_LINE,
};
use super::socket::ControlSocket;
use crate::drain::Outcome;
use crate::error::ReloadError;
use crate::lifecycle::Controller;

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one reply line may take to be written (a client that stops
/// reading is dropped, not waited for).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Control connections served at once; more are answered `busy`.
const MAX_CLIENTS: usize = 32;
/// How often `stop` with `wait` looks at the drain.
const PROGRESS_TICK: Duration = Duration::from_millis(250);
/// A progress line goes out at least this often, so the time left moves.
const PROGRESS_HEARTBEAT: Duration = Duration::from_secs(1);

type CertificatesFn = dyn Fn() -> Vec<CertificateStatus> + Send + Sync;
type AppFn = dyn Fn() -> AppState + Send + Sync;

/// What `status` reports beyond the lifecycle's own state.
///
/// # Example
///
/// ```
/// use grace::control::ServerInfo;
///
/// // Made at start: `status` reports the uptime from here.
/// let info = ServerInfo::new(Some("/etc/myapp/config.toml".into()));
/// assert_eq!(info.config_path.as_deref(), Some("/etc/myapp/config.toml"));
/// ```
#[derive(Clone)]
pub struct ServerInfo {
    /// Where the configuration comes from, shown as is.
    pub config_path: Option<String>,
    started: Instant,
    certificates: Option<Arc<CertificatesFn>>,
    app: Option<Arc<AppFn>>,
}

impl std::fmt::Debug for ServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInfo")
            .field("config_path", &self.config_path)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl ServerInfo {
    /// Info for a process that started now.
    pub fn new(config_path: Option<String>) -> ServerInfo {
        ServerInfo {
            config_path,
            started: Instant::now(),
            certificates: None,
            app: None,
        }
    }

    /// `status` lists the certificates `certificates` returns, called per
    /// request, so it shows what serves now (after a rotation too).
    ///
    /// # Example
    ///
    /// ```
    /// use grace::control::{protocol::CertificateStatus, ServerInfo};
    ///
    /// let info = ServerInfo::new(None).with_certificates(|| {
    ///     vec![CertificateStatus {
    ///         name: "default".into(),
    ///         subject: "CN=example.com".into(),
    ///         serial: "01".into(),
    ///         not_after: 1_900_000_000,
    ///     }]
    /// });
    /// ```
    pub fn with_certificates(
        mut self,
        certificates: impl Fn() -> Vec<CertificateStatus> + Send + Sync + 'static,
    ) -> Self {
        self.certificates = Some(Arc::new(certificates));
        self
    }

    /// `status` shows the supervised app's state as `app` returns it,
    /// called per request (`grace run`).
    pub fn with_app(mut self, app: impl Fn() -> AppState + Send + Sync + 'static) -> Self {
        self.app = Some(Arc::new(app));
        self
    }
}

/// Serves the control protocol on a [`ControlSocket`]; see the
/// [module docs](super).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
/// use grace::control::{BindMode, ControlServer, ControlSocket, ServerInfo};
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, Shutdown};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let drain = |_: &u32| DrainSettings::default();
/// let lifecycle = Lifecycle::new(reloader, Shutdown::new(), drain);
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
            waiters: waiters.clone(),
            controller,
            info,
            uid: rustix::process::geteuid().as_raw(),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            refusals: RefusalLog::default(),
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
                        tracing::warn!("control socket: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
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
    controller: Controller<T>,
    info: ServerInfo,
    uid: u32,
    slots: Arc<Semaphore>,
    refusals: RefusalLog,
    waiters: TaskTracker,
}

/// Refused peers are logged at most once a second, with a count of those not
/// logged since: a loop of connects from a stranger must not flood the log.
#[derive(Default)]
struct RefusalLog {
    // Milliseconds since `epoch` of the last line logged; 0 = never.
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl RefusalLog {
    /// `Some(suppressed since the last line)` when this refusal may be logged.
    fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now = epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now < last + 1000 {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        // Relaxed is enough: losing the race only drops one log line.
        if self
            .last_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

async fn handle<T: Send + Sync + 'static>(stream: UnixStream, ctx: Arc<Context<T>>) {
    let mut conn = Conn { stream };
    let Ok(_slot) = ctx.slots.clone().try_acquire_owned() else {
        conn.error(ErrorKind::Busy, "too many control connections; try again")
            .await;
        conn.linger().await;
        return;
    };
    let peer = match rustix::net::sockopt::socket_peercred(&conn.stream) {
        Ok(cred) => cred,
        Err(e) => {
            tracing::warn!("control connection refused: cannot read its credentials: {e}");
            return;
        }
    };
    let (peer_uid, peer_pid) = (peer.uid.as_raw(), peer.pid.as_raw_nonzero().get());
    if peer_uid != ctx.uid && peer_uid != 0 {
        if let Some(suppressed) = ctx.refusals.admit() {
            tracing::warn!(
                peer_uid,
                peer_pid,
                suppressed,
                "control connection refused: uid {peer_uid} is neither this server's ({}) nor root",
                ctx.uid
            );
        }
        conn.error(
            ErrorKind::Forbidden,
            &format!("uid {peer_uid} may not control this server"),
        )
        .await;
        conn.linger().await;
        return;
    }
    let request = match conn.read_request().await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err((kind, message)) => {
            tracing::info!(peer_pid, "control request refused: {message}");
            conn.error(kind, &message).await;
            conn.linger().await;
            return;
        }
    };
    tracing::info!(peer_pid, peer_uid, ?request, "control request");
    let c = &ctx.controller;
    match request {
        Request::Stop { wait: true } => {
            // Counted from here to the last line: `close` waits for it.
            let _following = ctx.waiters.token();
            stop(&mut conn, c, true).await;
        }
        Request::Status {} => {
            let _ = conn.send(Reply::Status(status(&ctx))).await;
        }
        Request::Reload {} => {
            let reply = match c.reload().await {
                Ok(generation) => Reply::Reloaded { generation },
                Err(e) => reload_error(&e),
            };
            let _ = conn.send(reply).await;
        }
        Request::Upgrade {} => {
            // Not cancel safe: run it on its own task, so a client that
            // hangs up cannot leave a new process half started.
            let upgrader = c.clone();
            let reply = match tokio::spawn(async move { upgrader.upgrade().await }).await {
                Ok(Ok(up)) => Reply::Upgraded {
                    pid: up.pid,
                    elapsed_secs: up.elapsed.as_secs_f64(),
                },
                Ok(Err(e)) => Reply::Error {
                    kind: ErrorKind::UpgradeFailed,
                    message: e.to_string(),
                },
                Err(join) => Reply::Error {
                    kind: ErrorKind::UpgradeFailed,
                    message: format!("the upgrade task failed: {join}"),
                },
            };
            let _ = conn.send(reply).await;
        }
        Request::Stop { wait } => stop(&mut conn, c, wait).await,
    }
}

async fn stop<T: Send + Sync + 'static>(conn: &mut Conn, c: &Controller<T>, wait: bool) {
    if !c.stop() {
        tracing::info!("stop requested over the control socket: already shutting down");
    }
    let shutdown = c.shutdown();
    shutdown.draining().await;
    if conn.send(Reply::Stopping(progress(c))).await.is_err() || !wait {
        return;
    }
    let mut last = progress(c);
    let mut last_sent = Instant::now();
    loop {
        tokio::select! {
            outcome = shutdown.wait() => {
                let _ = conn.send(Reply::Exited(exited(outcome))).await;
                return;
            }
            _ = tokio::time::sleep(PROGRESS_TICK) => {
                let now = progress(c);
                let changed = (now.phase.as_str(), now.connections, now.requests)
                    != (last.phase.as_str(), last.connections, last.requests);
                if changed || last_sent.elapsed() >= PROGRESS_HEARTBEAT {
                    if conn.send(Reply::Progress(now.clone())).await.is_err() {
                        return;
                    }
                    last = now;
                    last_sent = Instant::now();
                }
            }
        }
    }
}

fn progress<T: Send + Sync + 'static>(c: &Controller<T>) -> Progress {
    let shutdown = c.shutdown();
    Progress {
        phase: shutdown.phase().as_str().to_owned(),
        connections: shutdown.connections(),
        requests: shutdown.requests(),
        deadline_secs: shutdown.deadline().map_or(0.0, |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
                .as_secs_f64()
        }),
    }
}

fn exited(outcome: Outcome) -> Exited {
    match outcome {
        Outcome::Drained { elapsed } => Exited {
            outcome: "drained".into(),
            elapsed_secs: elapsed.as_secs_f64(),
            requests_cut: 0,
        },
        Outcome::Forced {
            requests, elapsed, ..
        } => Exited {
            outcome: "forced".into(),
            elapsed_secs: elapsed.as_secs_f64(),
            requests_cut: requests,
        },
    }
}

fn status<T: Send + Sync + 'static>(ctx: &Context<T>) -> Status {
    let c = &ctx.controller;
    let shutdown = c.shutdown();
    let last_reload = c.reloader().last().map(|last| {
        let at = last
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match last.verdict {
            Ok(generation) => LastReload {
                result: "accepted".into(),
                generation: Some(generation),
                error: None,
                at,
            },
            Err(e) => LastReload {
                result: "rejected".into(),
                generation: None,
                error: Some(e.to_string()),
                at,
            },
        }
    });
    Status {
        pid: std::process::id(),
        generation: c.reloader().config().generation(),
        phase: shutdown.phase().as_str().to_owned(),
        uptime_secs: ctx.info.started.elapsed().as_secs_f64(),
        config_path: ctx.info.config_path.clone(),
        connections: shutdown.connections(),
        requests: shutdown.requests(),
        last_reload,
        certificates: ctx
            .info
            .certificates
            .as_ref()
            .map_or_else(Vec::new, |f| f()),
        app: ctx.info.app.as_ref().map(|f| Box::new(f())),
    }
}

fn reload_error(e: &ReloadError) -> Reply {
    let kind = match e {
        ReloadError::Load(_) => ErrorKind::ConfigRejected,
        ReloadError::Apply(_) => ErrorKind::ApplyFailed,
        _ => ErrorKind::ShuttingDown,
    };
    Reply::Error {
        kind,
        message: e.to_string(),
    }
}

struct Conn {
    stream: UnixStream,
}

impl Conn {
    /// Reads one request line. `Ok(None)`: the client hung up without one.
    async fn read_request(&mut self) -> Result<Option<Request>, (ErrorKind, String)> {
        let mut line = Vec::with_capacity(128);
        let mut reader = BufReader::new((&mut self.stream).take(MAX_REQUEST_LINE as u64 + 1));
        let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
        match read {
            Err(_) => {
                return Err((
                    ErrorKind::Timeout,
                    format!("no request line within {}s", REQUEST_TIMEOUT.as_secs()),
                ))
            }
            Ok(Err(e)) => return Err((ErrorKind::BadRequest, format!("cannot read: {e}"))),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
        if line.len() > MAX_REQUEST_LINE {
            return Err((
                ErrorKind::BadRequest,
                format!("request line longer than {MAX_REQUEST_LINE} bytes"),
            ));
        }
        // A last line without its newline is accepted: `printf` clients.
        let text = std::str::from_utf8(&line)
            .map_err(|_| (ErrorKind::BadRequest, "request is not UTF-8".to_owned()))?;
        serde_json::from_str(text.trim()).map(Some).map_err(|e| {
            (
                ErrorKind::BadRequest,
                format!(
                    "invalid request ({e}); expected one JSON object per line, such as \
                     {{\"cmd\":\"status\"}}; commands: status, reload, upgrade, stop"
                ),
            )
        })
    }

    async fn send(&mut self, reply: Reply) -> Result<(), ()> {
        let mut text = serde_json::to_string(&Line::from(reply)).map_err(|_| ())?;
        text.push('\n');
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(text.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Closes after an error while the client may still be sending: closing
    /// with unread bytes would reset the connection and could destroy the
    /// error line before the client reads it. So: end our side, then read
    /// and discard for a moment (bounded in time and bytes).
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let mut sink = (&mut self.stream).take(1 << 20);
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::io::copy(&mut sink, &mut tokio::io::sink()),
        )
        .await;
    }

    async fn error(&mut self, kind: ErrorKind, message: &str) {
        let _ = self
            .send(Reply::Error {
                kind,
                message: message.to_owned(),
            })
            .await;
    }
}
