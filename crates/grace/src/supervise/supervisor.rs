//! The supervisor: one task owns the serving generation and carries out
//! replaces, crash restarts and the stop, one at a time, so that two
//! generations are never started against each other.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::generation::{spawn, Generation};
use super::orphans::{self, Orphans};
use super::{AppSpec, GenerationError, Readiness, Stopped};
use crate::handoff::group::stop_group;
use crate::listener::Listener;

/// How long the end of a failed generation's stderr may take to arrive.
const TAIL_WAIT: Duration = Duration::from_secs(1);

/// What the supervisor reports: for `status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppStatus {
    /// The serving generation's pid; `None` between a crash and the restart.
    pub pid: Option<u32>,
    /// The serving generation's number (the first is 1).
    pub generation: u64,
    /// Generations started to replace a serving one (reloads).
    pub replaced: u64,
    /// Generations started after a crash.
    pub crash_restarts: u64,
    /// Generations that failed to start (exited or not ready in time).
    pub failed_starts: u64,
    /// How the last generation to end ended ("exit status: 0", "signal: 9
    /// (SIGKILL)"), and which it was.
    pub last_exit: Option<(u64, String)>,
    /// When the serving generation became ready.
    pub ready_at: Option<std::time::SystemTime>,
}

impl AppStatus {
    /// Restarts for any reason: replaces and crash restarts.
    pub fn restarts(&self) -> u64 {
        self.replaced + self.crash_restarts
    }
}

enum Request {
    Replace(
        Option<AppSpec>,
        oneshot::Sender<Result<u64, GenerationError>>,
    ),
    Stop(oneshot::Sender<Stopped>),
}

/// Runs an app one generation at a time on listening sockets; see the
/// [module docs](super).
#[derive(Debug)]
pub struct Supervisor {
    requests: mpsc::Sender<Request>,
    status: Arc<Mutex<AppStatus>>,
    stopping: CancellationToken,
}

impl Supervisor {
    /// Starts the first generation of `spec` on (duplicates of)
    /// `listeners`, and supervises it from then on.
    ///
    /// # Return value
    /// Resolves once the first generation is ready, or failed.
    ///
    /// # Errors
    /// Why the first generation did not become ready; nothing is left
    /// running then.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O and time enabled.
    pub async fn start(
        spec: AppSpec,
        listeners: &[Listener],
    ) -> Result<Supervisor, GenerationError> {
        let sockets = listeners
            .iter()
            .map(|l| Ok((l.name().to_owned(), l.as_fd().try_clone_to_owned()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let dir = runtime_dir()?;
        if spec.adopt_orphans {
            orphans::adopt()?;
        }
        let stopping = CancellationToken::new();
        let status = Arc::new(Mutex::new(AppStatus::default()));
        let mut state = State {
            spec,
            sockets,
            dir,
            next: 1,
            status: status.clone(),
            stopping: stopping.clone(),
            retiring: TaskTracker::new(),
        };
        let first = match state.start_generation().await {
            Ok(first) => first,
            Err(e) => {
                let _ = std::fs::remove_dir(&state.dir);
                return Err(e);
            }
        };
        let (requests, rx) = mpsc::channel(8);
        tokio::spawn(state.supervise(first, rx));
        Ok(Supervisor {
            requests,
            status,
            stopping,
        })
    }

    /// Starts a new generation (of `spec` when given, else of the current
    /// one), and once it is ready stops the serving one (the stop signal to
    /// its group, SIGKILL after the stop timeout, in the background).
    ///
    /// # Return value
    /// Resolves once the new generation is ready, or failed (then it has
    /// been stopped with its whole group, and the serving one serves on).
    ///
    /// # Errors
    /// Why the new generation did not take over.
    ///
    /// # Cancel safety
    /// Cancel safe: the replace goes on without the caller.
    pub async fn replace(&self, spec: Option<AppSpec>) -> Result<u64, GenerationError> {
        let (reply, verdict) = oneshot::channel();
        self.requests
            .send(Request::Replace(spec, reply))
            .await
            .map_err(|_| GenerationError::Stopping)?;
        verdict.await.unwrap_or(Err(GenerationError::Stopping))
    }

    /// Stops the app: an attempt under way is given up, the serving
    /// generation gets the stop signal (SIGKILL after the stop timeout), and
    /// generations being retired finish stopping.
    ///
    /// # Return value
    /// Resolves once every process of every generation is gone; a second
    /// call resolves at once with no status.
    pub async fn stop(&self) -> Stopped {
        self.stopping.cancel();
        let (reply, stopped) = oneshot::channel();
        let gone = Stopped {
            status: None,
            killed: false,
            signal: libc::SIGTERM,
        };
        if self.requests.send(Request::Stop(reply)).await.is_err() {
            return gone;
        }
        stopped.await.unwrap_or(gone)
    }

    /// The app's state now.
    pub fn status(&self) -> AppStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A directory of our own for the generations' notify sockets, readable by
/// us only: a `READY=1` must come from the generation, not from anyone.
fn runtime_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("grace-app-{}", std::process::id()));
    // A dead grace of the same pid may have left it.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

struct State {
    spec: AppSpec,
    sockets: Vec<(String, OwnedFd)>,
    dir: PathBuf,
    next: u64,
    status: Arc<Mutex<AppStatus>>,
    stopping: CancellationToken,
    retiring: TaskTracker,
}

impl State {
    fn update(&self, f: impl FnOnce(&mut AppStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn supervise(mut self, first: Generation, mut requests: mpsc::Receiver<Request>) {
        let mut current = Some(first);
        // Crashes in a row, and when to try again after the last one.
        let mut crashes = 0u32;
        let mut restart_at: Option<Instant> = None;
        loop {
            let exited = async {
                match current.as_mut() {
                    Some(generation) => generation.child.wait().await,
                    None => std::future::pending().await,
                }
            };
            let retry = async {
                match restart_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::Replace(spec, reply)) => {
                        if let Some(spec) = spec {
                            self.spec = spec;
                        }
                        let verdict = match self.start_generation().await {
                            Ok(new) => {
                                let number = new.number;
                                if let Some(old) = current.replace(new) {
                                    self.retire(old);
                                }
                                restart_at = None;
                                self.update(|s| s.replaced += 1);
                                Ok(number)
                            }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(verdict);
                    }
                    Some(Request::Stop(reply)) => {
                        let stopped = self.stop(current.take()).await;
                        self.finish().await;
                        let _ = reply.send(stopped);
                        return;
                    }
                    None => {
                        self.stop(current.take()).await;
                        break;
                    }
                },
                status = exited => {
                    let Some(gone) = current.take() else { continue };
                    let status = describe(status.ok());
                    if gone.started.elapsed() >= self.spec.backoff.max {
                        crashes = 0;
                    }
                    crashes += 1;
                    let delay = self.spec.backoff.delay(crashes);
                    tracing::error!(
                        generation = gone.number,
                        pid = gone.pid,
                        status,
                        restart_in = ?delay,
                        "the app exited unexpectedly; starting a new generation"
                    );
                    self.update(|s| {
                        s.pid = None;
                        s.last_exit = Some((gone.number, status));
                    });
                    // The rest of its group, if any, goes with it.
                    self.retire(gone);
                    restart_at = Some(Instant::now() + delay);
                }
                () = retry => {
                    restart_at = None;
                    match self.start_generation().await {
                        Ok(new) => {
                            self.update(|s| s.crash_restarts += 1);
                            current = Some(new);
                        }
                        Err(GenerationError::Stopping) => {}
                        Err(_) => {
                            crashes += 1;
                            let delay = self.spec.backoff.delay(crashes);
                            tracing::warn!(restart_in = ?delay, "the app failed to restart; backing off");
                            restart_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
        }
        self.finish().await;
    }

    /// Waits for the retiring generations, then stops what the app left
    /// behind (when adopting orphans).
    async fn finish(&self) {
        self.retiring.close();
        self.retiring.wait().await;
        if self.spec.adopt_orphans {
            let signal = Signal::from_named_raw(self.spec.stop_signal).unwrap_or(Signal::TERM);
            Orphans.stop_adopted(signal, self.spec.stop_timeout).await;
        }
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Starts the next generation and waits until it is ready; a failed one
    /// is stopped with its whole group before this returns.
    async fn start_generation(&mut self) -> Result<Generation, GenerationError> {
        if self.stopping.is_cancelled() {
            return Err(GenerationError::Stopping);
        }
        let number = self.next;
        self.next += 1;
        let result = match spawn(&self.spec, &self.sockets, number, &self.dir) {
            Ok(generation) => self.wait_ready(generation).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(generation) => {
                tracing::info!(
                    generation = number,
                    pid = generation.pid,
                    "app generation ready"
                );
                self.update(|s| {
                    s.pid = Some(generation.pid);
                    s.generation = number;
                    s.ready_at = Some(std::time::SystemTime::now());
                });
            }
            Err(e) => {
                tracing::error!(generation = number, "app generation failed to start: {e}");
                self.update(|s| s.failed_starts += 1);
            }
        }
        result
    }

    async fn wait_ready(&self, mut generation: Generation) -> Result<Generation, GenerationError> {
        let timeout = self.spec.ready_timeout;
        let ready = self.spec.ready;
        let stopping = self.stopping.clone();
        let (number, pid) = (generation.number, generation.pid);
        enum Failed {
            Exited(ExitStatus),
            NotReady,
            Stopping,
            Io(std::io::Error),
        }
        let failed = {
            let Generation { child, notify, .. } = &mut generation;
            let is_ready = async {
                match ready {
                    Readiness::Notify => notify.ready().await,
                    Readiness::Delay(delay) => tokio::time::sleep(delay).await,
                }
            };
            tokio::select! {
                biased;
                () = stopping.cancelled() => Failed::Stopping,
                status = child.wait() => match status {
                    Ok(status) => Failed::Exited(status),
                    Err(e) => Failed::Io(e),
                },
                () = is_ready => return Ok(generation),
                () = tokio::time::sleep(timeout) => Failed::NotReady,
            }
        };
        self.stop_generation(&mut generation, "failed start").await;
        let stderr = generation.stderr_tail(TAIL_WAIT).await;
        Err(match failed {
            Failed::Exited(status) => GenerationError::Exited {
                generation: number,
                pid,
                status,
                stderr,
            },
            Failed::NotReady => GenerationError::NotReady {
                generation: number,
                pid,
                timeout,
                stderr,
            },
            Failed::Stopping => GenerationError::Stopping,
            Failed::Io(e) => GenerationError::Io(e),
        })
    }

    /// Stops an old generation in the background; [`State::stop`] waits for it.
    fn retire(&self, mut old: Generation) {
        let signal = self.spec.stop_signal;
        let timeout = self.spec.stop_timeout;
        let status = self.status.clone();
        self.retiring.spawn(async move {
            let stopped = stop(&mut old, signal, timeout, "replaced").await;
            if let Some(exit) = stopped.status {
                status.lock().unwrap_or_else(|e| e.into_inner()).last_exit =
                    Some((old.number, describe(Some(exit))));
            }
        });
    }

    async fn stop_generation(&self, generation: &mut Generation, why: &str) -> Stopped {
        stop(
            generation,
            self.spec.stop_signal,
            self.spec.stop_timeout,
            why,
        )
        .await
    }

    async fn stop(&mut self, current: Option<Generation>) -> Stopped {
        let Some(mut generation) = current else {
            tracing::warn!("no app generation was serving when the stop came");
            return Stopped {
                status: None,
                killed: false,
                signal: self.spec.stop_signal,
            };
        };
        let stopped = self.stop_generation(&mut generation, "stop").await;
        self.update(|s| {
            s.pid = None;
            s.last_exit = stopped
                .status
                .map(|exit| (generation.number, describe(Some(exit))));
        });
        stopped
    }
}

async fn stop(generation: &mut Generation, signal: i32, timeout: Duration, why: &str) -> Stopped {
    let (number, pid) = (generation.number, generation.pid);
    tracing::info!(generation = number, pid, why, "stopping app generation");
    let sig = Signal::from_named_raw(signal).unwrap_or(Signal::TERM);
    let result = stop_group(&mut generation.child, pid, sig, timeout).await;
    let stopped = Stopped {
        status: result.status,
        killed: result.killed,
        signal,
    };
    tracing::info!(
        generation = number,
        pid,
        status = describe(result.status),
        killed = result.killed,
        "app generation stopped"
    );
    stopped
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
}
