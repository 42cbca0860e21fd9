//! Acting on a control request through the [`Controller`] and answering it.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio_util::task::TaskTracker;

use super::framing::Conn;
use super::protocol::{
    AppState, CertificateStatus, ErrorKind, Exited, LastReload, Outcome, Progress, ReloadResult,
    Reply, Request, Status,
};
use crate::drain::Outcome as DrainOutcome;
use crate::drain::Shutdown;
use crate::error::ReloadError;
use crate::lifecycle::Controller;
use crate::reload::Reloader;

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

/// Answers requests for one server.
pub(super) struct Handlers<T> {
    controller: Controller<T>,
    info: ServerInfo,
    // Connections that follow a stop to the end (`stop` with `wait`): the
    // only ones worth delaying the exit for, to send their last line.
    waiters: TaskTracker,
}

impl<T: Send + Sync + 'static> Handlers<T> {
    pub(super) fn new(controller: Controller<T>, info: ServerInfo, waiters: TaskTracker) -> Self {
        Handlers {
            controller,
            info,
            waiters,
        }
    }

    /// Acts on `request` and writes the reply lines to `conn`.
    ///
    /// # Cancel safety
    /// Cancel safe: an upgrade runs on its own task, so a client that hangs
    /// up cannot leave a new process half started; a reload or a stop, once
    /// begun, completes without this future.
    pub(super) async fn dispatch(&self, request: Request, conn: &mut Conn) {
        let c = &self.controller;
        // A successful upgrade's verdict comes once our listeners are closed,
        // when the drain may already be over: `close` waits for this line
        // too, or the process could exit before the client hears it.
        let _answering = matches!(request, Request::Upgrade {}).then(|| self.waiters.token());
        let reply = match request {
            Request::Stop { wait } => {
                // Counted from here to the last line, `stopping` alone too:
                // `close` waits for it, or a drain with nothing to wait for
                // could end the process before the client hears it.
                let _answering = self.waiters.token();
                return self.stop(conn, wait).await;
            }
            Request::Status {} => Reply::Status(self.status()),
            Request::Reload {} => match c.reload().await {
                Ok(generation) => Reply::Reloaded { generation },
                Err(e) => reload_error(&e),
            },
            Request::Upgrade {} => {
                let upgrader = c.clone();
                match tokio::spawn(async move { upgrader.upgrade().await }).await {
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
                }
            }
        };
        let _ = conn.send(reply).await;
    }

    async fn stop(&self, conn: &mut Conn, wait: bool) {
        let c = &self.controller;
        if !c.stop() {
            tracing::info!("stop requested over the control socket: already shutting down");
        }
        let shutdown = c.shutdown();
        shutdown.draining().await;
        if conn.send(Reply::Stopping(self.progress())).await.is_err() || !wait {
            return;
        }
        let mut last = self.progress();
        let mut last_sent = tokio::time::Instant::now();
        loop {
            tokio::select! {
                outcome = shutdown.wait() => {
                    let _ = conn.send(Reply::Exited(exited(outcome))).await;
                    return;
                }
                _ = tokio::time::sleep(PROGRESS_TICK) => {
                    let now = self.progress();
                    let changed = (now.phase, now.connections, now.requests)
                        != (last.phase, last.connections, last.requests);
                    if changed || last_sent.elapsed() >= PROGRESS_HEARTBEAT {
                        if conn.send(Reply::Progress(now.clone())).await.is_err() {
                            return;
                        }
                        last = now;
                        last_sent = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    fn progress(&self) -> Progress {
        let shutdown = self.controller.shutdown();
        Progress {
            phase: shutdown.phase().into(),
            connections: shutdown.connections(),
            requests: shutdown.requests(),
            deadline_secs: shutdown.deadline().map_or(0.0, |d| {
                d.saturating_duration_since(tokio::time::Instant::now())
                    .as_secs_f64()
            }),
        }
    }

    fn status(&self) -> Status {
        let c = &self.controller;
        status_of(c.reloader(), c.shutdown(), &self.info)
    }
}

/// What `status` answers (also the status page's core).
pub(crate) fn status_of<T: Send + Sync + 'static>(
    reloader: &Reloader<T>,
    shutdown: &Shutdown,
    info: &ServerInfo,
) -> Status {
    let last_reload = reloader.last().map(|last| {
        let at = last
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match last.verdict {
            Ok(generation) => LastReload {
                result: ReloadResult::Accepted,
                generation: Some(generation),
                error: None,
                at,
            },
            Err(e) => LastReload {
                result: ReloadResult::Rejected,
                generation: None,
                error: Some(e.to_string()),
                at,
            },
        }
    });
    Status {
        pid: std::process::id(),
        generation: reloader.config().generation(),
        phase: shutdown.phase().into(),
        uptime_secs: info.started.elapsed().as_secs_f64(),
        config_path: info.config_path.clone(),
        connections: shutdown.connections(),
        requests: shutdown.requests(),
        last_reload,
        certificates: info.certificates.as_ref().map_or_else(Vec::new, |f| f()),
        app: info.app.as_ref().map(|f| Box::new(f())),
    }
}

fn exited(outcome: DrainOutcome) -> Exited {
    match outcome {
        DrainOutcome::Drained { elapsed } => Exited {
            outcome: Outcome::Drained,
            elapsed_secs: elapsed.as_secs_f64(),
            requests_cut: 0,
        },
        DrainOutcome::Forced {
            requests, elapsed, ..
        } => Exited {
            outcome: Outcome::Forced,
            elapsed_secs: elapsed.as_secs_f64(),
            requests_cut: requests,
        },
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixStream;

    use super::*;
    use crate::config::Reloadable;
    use crate::control::protocol::{Line, Phase};
    use crate::drain::{DrainSettings, ShutdownTrigger};
    use crate::error::BoxError;
    use crate::lifecycle::Lifecycle;
    use crate::reload::Reloader;

    /// Handlers for a server whose reloads load `next`.
    fn handlers(next: Result<u32, &'static str>) -> Handlers<u32> {
        let reloader = Reloader::new(Reloadable::new(1u32), move || next.map_err(BoxError::from));
        let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), |_: &u32| {
            DrainSettings::default()
        });
        let info = ServerInfo::new(Some("app.toml".into())).with_certificates(|| {
            vec![CertificateStatus {
                name: "default".into(),
                subject: "CN=t".into(),
                serial: "01".into(),
                not_after: 1,
            }]
        });
        Handlers::new(lifecycle.controller(), info, TaskTracker::new())
    }

    /// The lines a client reads for `request`.
    async fn exchange(handlers: &Handlers<u32>, request: Request) -> Vec<Line> {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut conn = Conn::new(ours);
        handlers.dispatch(request, &mut conn).await;
        drop(conn);
        let mut lines = BufReader::new(theirs).lines();
        let mut replies = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            replies.push(serde_json::from_str(&line).unwrap());
        }
        replies
    }

    fn only(mut lines: Vec<Line>) -> Line {
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.remove(0)
    }

    #[tokio::test]
    async fn status_reports_the_state_and_the_last_reload() {
        let handlers = handlers(Err("app.toml:1:1: bad"));
        let line = only(exchange(&handlers, Request::Status {}).await);
        let Reply::Status(status) = line.reply else {
            panic!("{line:?}")
        };
        assert_eq!((status.generation, status.phase), (1, Phase::Running));
        assert_eq!(status.config_path.as_deref(), Some("app.toml"));
        assert_eq!(status.last_reload, None);
        assert_eq!(status.certificates[0].subject, "CN=t");

        exchange(&handlers, Request::Reload {}).await;
        let line = only(exchange(&handlers, Request::Status {}).await);
        let Reply::Status(status) = line.reply else {
            panic!("{line:?}")
        };
        let last = status.last_reload.unwrap();
        assert_eq!(last.result, ReloadResult::Rejected);
        assert_eq!(last.error.as_deref(), Some("app.toml:1:1: bad"));
    }

    #[tokio::test]
    async fn reload_answers_with_the_generation_or_why_not() {
        let line = only(exchange(&handlers(Ok(2)), Request::Reload {}).await);
        assert!(line.ok);
        assert_eq!(line.reply, Reply::Reloaded { generation: 2 });

        let line = only(exchange(&handlers(Err("bad")), Request::Reload {}).await);
        assert!(!line.ok);
        assert!(
            matches!(
                &line.reply,
                Reply::Error { kind: ErrorKind::ConfigRejected, message } if message.contains("bad")
            ),
            "{line:?}"
        );
    }

    #[tokio::test]
    async fn upgrade_without_a_handoff_fails_and_says_so() {
        let line = only(exchange(&handlers(Ok(2)), Request::Upgrade {}).await);
        assert!(!line.ok);
        assert!(
            matches!(
                line.reply,
                Reply::Error {
                    kind: ErrorKind::UpgradeFailed,
                    ..
                }
            ),
            "{line:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_answers_once_the_drain_began() {
        let handlers = handlers(Ok(2));
        let line = only(exchange(&handlers, Request::Stop { wait: false }).await);
        let Reply::Stopping(progress) = line.reply else {
            panic!("{line:?}")
        };
        assert!(progress.phase >= Phase::Draining, "{progress:?}");
        // Asked again, it answers the same and neither forces nor restarts.
        let again = only(exchange(&handlers, Request::Reload {}).await);
        assert!(
            matches!(
                again.reply,
                Reply::Error {
                    kind: ErrorKind::ShuttingDown,
                    ..
                }
            ),
            "{again:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_with_wait_follows_the_drain_to_the_exit() {
        let handlers = handlers(Ok(2));
        let lines = exchange(&handlers, Request::Stop { wait: true }).await;
        assert!(matches!(lines[0].reply, Reply::Stopping(_)), "{lines:?}");
        let last = lines.last().unwrap();
        assert!(last.ok, "{last:?}");
        assert!(
            matches!(
                &last.reply,
                Reply::Exited(Exited {
                    outcome: Outcome::Drained,
                    requests_cut: 0,
                    ..
                })
            ),
            "{last:?}"
        );
        let middle = &lines[1..lines.len() - 1];
        assert!(
            middle.iter().all(|l| matches!(l.reply, Reply::Progress(_))),
            "{lines:?}"
        );
    }
}
