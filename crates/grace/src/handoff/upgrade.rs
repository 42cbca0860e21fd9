//! The parent's side of a zero-downtime upgrade: start the binary found at
//! our own path with our listening sockets, wait for it to be ready, and only
//! then let the caller drain. A child that fails leaves us serving as if
//! nothing happened.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::pipe::{pipe_with, PipeFlags};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::inherit::{GENERATION_VAR, READY_FD_VAR};
use super::pass::{inherited_env, Passed};
use super::ready::READY_LINE;
use super::sys::ExecPlan;
use crate::drain::Shutdown;
use crate::listener::Listener;

/// Why an upgrade did not happen. The old process keeps serving in every case.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use grace::handoff::{Handoff, UpgradeError};
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let handoff = Arc::new(Handoff::from_current_process()?);
/// let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
/// let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), |_: &()| DrainSettings::default())
///     .with_handoff(handoff.clone());
/// let controller = lifecycle.controller();
/// controller.stop();
/// // Refused before anything is started: no new process while draining.
/// let err = controller.upgrade().await.unwrap_err();
/// assert!(matches!(err, UpgradeError::ShuttingDown), "{err}");
/// assert_eq!(handoff.failed(), 1); // counted, for metrics
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Another upgrade is under way.
    #[error("an upgrade is already in progress")]
    InProgress,
    /// A shutdown began.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// This process was not set up for upgrades (no [`Handoff`]).
    #[error("upgrades are not enabled in this process")]
    Disabled,
    /// As PID 1 our exit would end the container.
    #[error(
        "refusing to upgrade in place as PID 1: the container would end when this process exits; \
         let the orchestrator restart the container, or run grace under an init (tini, docker run --init)"
    )]
    Pid1,
    /// The new process could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// What we tried to run.
        program: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The new process exited before it was ready.
    #[error("the new process (pid {pid}) exited before it was ready: {status}")]
    ChildExited {
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
    },
    /// The new process did not report ready in time, and was stopped.
    #[error("the new process (pid {pid}) was not ready within {}; stopped it", humanize(*timeout))]
    ReadyTimeout {
        /// Its pid.
        pid: u32,
        /// The limit.
        timeout: Duration,
    },
    /// Preparing or watching the hand-off failed.
    #[error("hand-off failed: {0}")]
    HandoffIo(#[from] io::Error),
}

fn humanize(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A successful upgrade.
///
/// # Example
///
/// ```no_run
/// use grace::handoff::{Handoff, Upgraded};
/// use grace::{DrainSettings, ShutdownTrigger};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let handoff = Handoff::from_current_process()?;
/// # let trigger = ShutdownTrigger::new();
/// let Upgraded { pid, elapsed } = handoff.upgrade(trigger.watcher()).await?;
/// println!("pid {pid} ready after {elapsed:?}; draining");
/// trigger.begin(DrainSettings::default());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    /// The new process.
    pub pid: u32,
    /// From trigger to the new process's "ready".
    pub elapsed: Duration,
}

/// Hands this process's listening sockets to a new process of the binary at
/// the same path.
///
/// The path is made absolute when the `Handoff` is created (from `argv[0]`
/// and the working directory then), not taken from `/proc/self/exe`: the file
/// *now* at that path runs, which is how a newly installed version takes over.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::handoff::Handoff;
///
/// let handoff = Handoff::from_current_process()?
///     .ready_timeout(Duration::from_secs(10))
///     .pid_file("/run/myapp.pid");
/// // Resolved now, so a later `cd` cannot change which binary takes over.
/// assert!(handoff.program().is_absolute());
/// assert_eq!((handoff.succeeded(), handoff.failed()), (0, 0));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Handoff {
    program: PathBuf,
    argv: Vec<OsString>,
    // Milliseconds; atomic so a reload can change it while an upgrade may run.
    ready_timeout_ms: AtomicU64,
    pid_file: Option<PathBuf>,
    // Our own duplicates of the listening sockets, dropped when the drain
    // starts: a socket kept open by nobody's accept loop would queue
    // connections that no one ever answers.
    sockets: Mutex<Option<Vec<(String, OwnedFd)>>>,
    in_progress: AtomicBool,
    // Verdicts recorded so far, for metrics.
    succeeded: AtomicU64,
    failed: AtomicU64,
    observers: Observers,
    // The configuration generation serving now, passed to the new process
    // so that its numbers continue from ours.
    generation: Option<tokio::sync::watch::Receiver<u64>>,
}

type ObserverFn = dyn Fn(Result<&Upgraded, &UpgradeError>) + Send + Sync;

// Called once per verdict, never on the request path.
#[derive(Default)]
struct Observers(Mutex<Vec<Box<ObserverFn>>>);

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observers")
    }
}

impl Observers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<ObserverFn>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Handoff {
    /// A hand-off that re-runs this process's own command line.
    ///
    /// # Errors
    /// When `argv[0]` cannot be resolved to a file.
    pub fn from_current_process() -> io::Result<Handoff> {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let arg0 = argv
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no argv[0]"))?;
        let program = resolve_program(arg0)?;
        Ok(Handoff {
            program,
            argv,
            ready_timeout_ms: AtomicU64::new(30_000),
            pid_file: None,
            sockets: Mutex::new(Some(Vec::new())),
            in_progress: AtomicBool::new(false),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            observers: Observers::default(),
            generation: None,
        })
    }

    /// Runs `argv` of `program` instead of this process's command line.
    #[cfg(test)]
    pub(crate) fn command(mut self, program: &str, argv: &[&str]) -> Self {
        self.program = PathBuf::from(program);
        self.argv = argv.iter().map(OsString::from).collect();
        self
    }

    /// How long the new process may take to report ready. Default: 30 s.
    pub fn ready_timeout(self, timeout: Duration) -> Self {
        self.set_ready_timeout(timeout);
        self
    }

    /// Changes the ready timeout for the next upgrades (after a reload).
    pub fn set_ready_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.ready_timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn current_ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms.load(Ordering::Relaxed))
    }

    /// Rewrites this pid file with the new pid once it is ready, and records
    /// each attempt's verdict next to it (see [`status_path`](super::status_path)).
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// The program a new process will run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Adds `listener` to the sockets handed over, under its name.
    ///
    /// # Errors
    /// When the socket cannot be duplicated (out of descriptors).
    pub fn register(&self, listener: &Listener) -> io::Result<()> {
        let fd = listener.as_fd().try_clone_to_owned()?;
        if let Some(sockets) = self.lock().as_mut() {
            sockets.push((listener.name().to_owned(), fd));
        }
        Ok(())
    }

    /// Removes the socket named `name` from those handed over.
    pub fn unregister(&self, name: &str) {
        if let Some(sockets) = self.lock().as_mut() {
            sockets.retain(|(n, _)| n != name);
        }
    }

    /// Stops handing over: closes our duplicates. Called when the drain
    /// starts.
    pub fn release(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<(String, OwnedFd)>>> {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the new process and waits until it is ready, it fails, or the
    /// ready timeout passes. On success the caller drains (the new process
    /// already accepts on the same sockets); on failure nothing changed.
    ///
    /// # Return value
    /// Resolves once the new process reported ready, exited, or ran out of
    /// the ready timeout, or a shutdown began; at once when another upgrade
    /// is under way.
    ///
    /// Whether to upgrade at all (not during a shutdown, not as PID 1) is
    /// the [`Lifecycle`](crate::Lifecycle)'s decision: go through
    /// [`Controller::upgrade`](crate::Controller::upgrade) when there is one.
    ///
    /// # Errors
    /// An [`UpgradeError`] saying why nothing changed: another upgrade under
    /// way, a shutdown began, or the new process could not start,
    /// exited or was not ready in time. It is stopped then, with every
    /// process still in its process group (it gets one of its own): SIGTERM,
    /// then SIGKILL after 5 s; this resolves only once they are gone.
    /// Descendants that left the group (`setsid`) are out of reach.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future ends the attempt. The next upgrade
    /// may start at once, and a new process already started is stopped in
    /// the background (SIGTERM to its group, SIGKILL after 5 s), as a failed
    /// one is.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use grace::{handoff::Handoff, DrainSettings, Listener, ShutdownTrigger};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = Listener::bind("127.0.0.1:8080".parse()?)?;
    /// let handoff = Arc::new(Handoff::from_current_process()?);
    /// handoff.register(&listener)?;
    /// let trigger = ShutdownTrigger::new();
    /// let shutdown = trigger.watcher().clone();
    /// let ours = handoff.clone();
    /// shutdown.on_drain(move || ours.release()); // or the listeners never close
    /// // grace::serve(vec![listener], service, &shutdown).start();
    /// match handoff.upgrade(&shutdown).await {
    ///     Ok(up) => {
    ///         println!("pid {} serves; draining", up.pid);
    ///         trigger.begin(DrainSettings::default()); // no delay: the new one serves
    ///     }
    ///     Err(e) => eprintln!("upgrade failed, serving on: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn upgrade(&self, shutdown: &Shutdown) -> Result<Upgraded, UpgradeError> {
        let result = self.start_new(shutdown).await;
        self.record(result)
    }

    /// [`upgrade`](Self::upgrade) without recording the verdict: the
    /// [`Lifecycle`](crate::Lifecycle) records a success only once this
    /// process stopped listening.
    pub(crate) async fn start_new(&self, shutdown: &Shutdown) -> Result<Upgraded, UpgradeError> {
        let Some(_in_progress) = InProgress::claim(&self.in_progress) else {
            return Err(UpgradeError::InProgress);
        };
        let result = self.run(shutdown).await;
        if let (Ok(up), Some(pid_file)) = (&result, &self.pid_file) {
            if let Err(e) = crate::pidfile::write_atomically(pid_file, up.pid) {
                tracing::error!(pid_file = %pid_file.display(), "cannot rewrite the pid file: {e}");
            }
        }
        result
    }

    /// Upgrades that handed over to a ready new process.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Upgrades that failed or were refused; this process served on.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Calls `observer` with each verdict, refusals included (a status
    /// page's history). It runs on the upgrading task: keep it short.
    pub fn observe(
        &self,
        observer: impl Fn(Result<&Upgraded, &UpgradeError>) + Send + Sync + 'static,
    ) {
        self.observers.lock().push(Box::new(observer));
    }

    /// Counts the verdict, and writes it next to the pid file for
    /// `grace upgrade` to read.
    pub(crate) fn record(
        &self,
        result: Result<Upgraded, UpgradeError>,
    ) -> Result<Upgraded, UpgradeError> {
        let up = result.map_err(|e| self.record_failure(e))?;
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        if let Some(pid_file) = &self.pid_file {
            super::status::record(pid_file, Ok(up.pid));
        }
        self.tell(Ok(&up));
        Ok(up)
    }

    fn tell(&self, verdict: Result<&Upgraded, &UpgradeError>) {
        for observe in self.observers.lock().iter() {
            observe(verdict);
        }
    }

    /// Counts and records a failed upgrade; also one the
    /// [`Lifecycle`](crate::Lifecycle) refused before anything started.
    pub(crate) fn record_failure(&self, error: UpgradeError) -> UpgradeError {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(pid_file) = &self.pid_file {
            super::status::record(pid_file, Err(error.to_string()));
        }
        self.tell(Err(&error));
        error
    }

    async fn run(&self, shutdown: &Shutdown) -> Result<Upgraded, UpgradeError> {
        let start = Instant::now();
        let (child, ready) = self.spawn()?;
        let pid = child.id().unwrap_or(0);
        let mut attempt = Attempt { child: Some(child) };
        let child = attempt.child();
        tracing::info!(pid, program = %self.program.display(), "upgrade: new process started, waiting for it to be ready");
        let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready)?;
        let mut phase = shutdown.watch_phase();
        let timeout = self.current_ready_timeout();
        let mut line = Vec::with_capacity(READY_LINE.len());
        let mut first_line = (&mut ready).take(READY_LINE.len() as u64);
        let verdict = tokio::select! {
            biased;
            read = first_line.read_to_end(&mut line) => match read {
                Ok(_) if line == READY_LINE => Ok(()),
                // EOF without the line: the child is gone, or about to be.
                Ok(_) => Err(self.exited(child, pid).await),
                Err(e) => Err(UpgradeError::HandoffIo(e)),
            },
            status = child.wait() => Err(match status {
                Ok(status) => UpgradeError::ChildExited { pid, status },
                Err(e) => UpgradeError::HandoffIo(e),
            }),
            _ = tokio::time::sleep(timeout) => Err(UpgradeError::ReadyTimeout { pid, timeout }),
            () = shutdown_started(&mut phase) => Err(UpgradeError::ShuttingDown),
        };
        match verdict {
            Ok(()) => {
                // Ready: it serves now, and outlives us.
                attempt.child.take();
                Ok(Upgraded {
                    pid,
                    elapsed: start.elapsed(),
                })
            }
            Err(e) => {
                let mut child = attempt.child.take();
                if let Some(child) = child.as_mut() {
                    super::group::stop(child, pid).await;
                }
                Err(e)
            }
        }
    }

    async fn exited(&self, child: &mut Child, pid: u32) -> UpgradeError {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) => UpgradeError::ChildExited { pid, status },
            Ok(Err(e)) => UpgradeError::HandoffIo(e),
            Err(_) => UpgradeError::HandoffIo(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!(
                    "the new process (pid {pid}) closed its readiness pipe without reporting ready"
                ),
            )),
        }
    }

    fn spawn(&self) -> Result<(Child, OwnedFd), UpgradeError> {
        let guard = self.lock();
        let sockets = guard.as_ref().ok_or(UpgradeError::ShuttingDown)?;
        // The readiness pipe's write end follows the sockets.
        let (ready_read, ready_write) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
        let mut passed = Passed::sockets(sockets, 1)?;
        drop(guard);
        let ready_fd = passed.add(&ready_write)?.to_string();
        drop(ready_write);
        let Passed {
            keep_alive,
            moves,
            count,
            names,
            ..
        } = passed;
        // Our activation variables are replaced, and WATCHDOG_PID names us:
        // once the child is the main process, the watchdog is its to feed.
        let inherited = inherited_env(
            &[
                "LISTEN_PID",
                "LISTEN_FDS",
                "LISTEN_FDNAMES",
                "WATCHDOG_PID",
                READY_FD_VAR,
                GENERATION_VAR,
            ],
            |_| false,
        );
        let mut env: Vec<(&OsStr, &OsStr)> = inherited
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .collect();
        env.push(("LISTEN_FDS".as_ref(), count.as_ref()));
        env.push(("LISTEN_FDNAMES".as_ref(), names.as_ref()));
        env.push((READY_FD_VAR.as_ref(), ready_fd.as_ref()));
        let generation = self.generation.as_ref().map(|g| g.borrow().to_string());
        if let Some(generation) = &generation {
            env.push((GENERATION_VAR.as_ref(), generation.as_ref()));
        }
        let argv: Vec<&OsStr> = self.argv.iter().map(OsString::as_os_str).collect();
        let plan = ExecPlan::new(self.program.as_os_str(), &argv, &env, moves)?;

        let mut command = Command::new(&self.program);
        command.kill_on_drop(false);
        // A group of its own, so that a failed attempt is stopped with all
        // it started (see `group`). A ready one keeps the group: a terminal's
        // Ctrl+C, sent to the foreground group, no longer reaches it, which
        // is what a server that outlives the process it replaced needs.
        command.process_group(0);
        plan.install(&mut command);
        // Registered before it can exit, and for good: a supervisor adopting
        // orphans must never reap it nor stop it (it outlives us once ready).
        let mut waited = crate::supervise::waited();
        let child = command.spawn().map_err(|source| UpgradeError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        waited.insert(child.id().unwrap_or(0));
        drop(waited);
        // The child has its copies; ours close here.
        drop(keep_alive);
        Ok((child, ready_read))
    }
}

impl Handoff {
    /// Passes the configuration generation serving at each upgrade to the
    /// new process (as `GRACE_GENERATION`, read by
    /// [`Inherited::generation`](super::Inherited::generation)), so that its
    /// generations continue from ours instead of starting again at 1.
    /// `generations` is [`Reloadable::subscribe`](crate::Reloadable::subscribe).
    ///
    /// # Example
    ///
    /// ```
    /// use grace::{handoff::Handoff, Reloadable};
    ///
    /// let config = Reloadable::new(());
    /// let handoff = Handoff::from_current_process()?.follow_generation(config.subscribe());
    /// # drop(handoff);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn follow_generation(mut self, generations: tokio::sync::watch::Receiver<u64>) -> Self {
        self.generation = Some(generations);
        self
    }
}

/// Holds the in-progress flag for one upgrade, and releases it however the
/// upgrade ends: a verdict, or its future dropped (a cancelled control
/// request, a `select!`). Without it a dropped upgrade refused every later
/// one with [`UpgradeError::InProgress`].
struct InProgress<'a>(&'a AtomicBool);

impl<'a> InProgress<'a> {
    fn claim(flag: &'a AtomicBool) -> Option<Self> {
        // SeqCst: the flag is the only thing keeping two children from being
        // handed the same sockets at once; no weaker ordering is worth it here.
        (!flag.swap(true, Ordering::SeqCst)).then_some(InProgress(flag))
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A started new process not yet ready. Dropped unresolved (the upgrade's
/// future was dropped), it is stopped in the background as a failed attempt
/// is, rather than left holding our sockets with nobody watching it.
struct Attempt {
    child: Option<Child>,
}

impl Attempt {
    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("invariant: the child is taken only once the attempt ends")
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().unwrap_or(0);
        tracing::warn!(
            pid,
            "upgrade abandoned before the new process was ready; stopping it"
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { super::group::stop(&mut child, pid).await });
            }
            // No runtime left to wait with: kill now, the kernel reaps it
            // once we exit.
            Err(_) => {
                let _ = child.start_kill();
            }
        }
    }
}

async fn shutdown_started(phase: &mut tokio::sync::watch::Receiver<crate::drain::Phase>) {
    // The guard `wait_for` returns is not Send: drop it before resolving.
    let _ = phase
        .wait_for(|p| *p != crate::drain::Phase::Running)
        .await
        .is_ok();
}

pub(crate) fn resolve_program(arg0: &OsStr) -> io::Result<PathBuf> {
    let path = Path::new(arg0);
    if arg0.as_encoded_bytes().contains(&b'/') {
        return Ok(if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()?.join(path)
        });
    }
    // Found through PATH, as the shell did when it started us.
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .map(|found| {
            if found.is_absolute() {
                Ok(found)
            } else {
                std::env::current_dir().map(|cwd| cwd.join(found))
            }
        })
        .unwrap_or_else(|| {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not in PATH", path.display()),
            ))
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reports ready at once, as a new grace process does once it serves.
    pub(crate) const READY_AT_ONCE: &str = "eval \"echo ready >&$GRACE_UPGRADE_READY_FD\"";

    #[tokio::test]
    async fn an_upgrade_dropped_midway_does_not_block_the_next() {
        // Never ready: the caller (a control client, a `select!`) gives up first.
        let handoff = Handoff::from_current_process()
            .unwrap()
            .command("/bin/sh", &["sh", "-c", "sleep 30"]);
        let trigger = crate::drain::ShutdownTrigger::new();
        let shutdown = trigger.watcher();
        let cancelled =
            tokio::time::timeout(Duration::from_millis(200), handoff.upgrade(shutdown)).await;
        assert!(cancelled.is_err(), "the child never reports ready");

        let handoff = handoff.command("/bin/sh", &["sh", "-c", READY_AT_ONCE]);
        let up = handoff.upgrade(shutdown).await;
        assert!(up.is_ok(), "{up:?}");
    }

    #[test]
    fn relative_and_bare_program_names_become_absolute() {
        assert!(resolve_program(OsStr::new("./grace"))
            .unwrap()
            .is_absolute());
        assert!(resolve_program(OsStr::new("sh")).unwrap().is_absolute());
        assert!(resolve_program(OsStr::new("surely-no-such-program-xyz")).is_err());
    }
}
