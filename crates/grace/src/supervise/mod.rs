//! Zero-downtime restarts for a program written in any language: grace
//! holds the listening sockets and runs the program on them, one
//! *generation* at a time.
//!
//! A generation is the command started in a process group of its own, with
//! the sockets at descriptors 3.. in the systemd socket-activation
//! convention (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID` set to its own
//! pid) and a `NOTIFY_SOCKET` of its own. It is ready on `READY=1` from it
//! or any process it started ([`Readiness::Notify`]: gunicorn, any
//! `sd_notify` user), or after a fixed delay for programs that cannot tell
//! ([`Readiness::Delay`]: uvicorn `--fd 3`, a Go server on descriptor 3).
//!
//! * **Replace** ([`Supervisor::replace`]): generation N+1 starts on the
//!   same sockets; once it is ready N gets the stop signal, and SIGKILL
//!   after the stop timeout. A new generation that exits, or is not ready
//!   in time, is stopped with its whole group and N serves on: the
//!   [`GenerationError`] says why, with its last lines on stderr.
//! * **Crash**: an unexpected exit is logged and a new generation started
//!   at once, then with capped exponential [`Backoff`] while it keeps
//!   crashing. The sockets stay open throughout: clients wait in the
//!   backlog instead of being refused.
//! * **Stop** ([`Supervisor::stop`]): the stop signal to the generation's
//!   group, SIGKILL after the stop timeout.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use grace::supervise::{AppSpec, Readiness, Supervisor};
//! use grace::Listener;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = Listener::bind("127.0.0.1:8000".parse()?)?;
//! let spec = AppSpec::new(["gunicorn", "--workers", "2", "app:app"])
//!     .ready(Readiness::Notify)
//!     .ready_timeout(Duration::from_secs(30));
//! let app = Supervisor::start(spec, &[listener]).await?; // generation 1 is ready
//! let generation = app.replace(None).await?;             // generation 2 took over
//! println!("generation {generation} serves");
//! let stopped = app.stop().await;
//! assert!(stopped.is_clean(), "{stopped:?}");
//! # Ok(()) }
//! ```

mod backoff;
mod generation;
mod notify_socket;
mod orphans;
mod supervisor;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use backoff::Backoff;
pub(crate) use orphans::waited;
pub use supervisor::{AppStatus, Supervisor};

/// When a new generation counts as ready to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// On `READY=1` sent to `NOTIFY_SOCKET` by the generation or any process
    /// it started.
    Notify,
    /// Once it has been running this long, for programs that cannot tell.
    Delay(Duration),
}

/// The program to supervise, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The program and its arguments; the program is looked up in `PATH`
    /// unless it holds a `/`.
    pub command: Vec<OsString>,
    /// Extra environment, on top of grace's own.
    pub env: Vec<(OsString, OsString)>,
    /// When a generation is ready.
    pub ready: Readiness,
    /// How long a generation may take to be ready before it counts as failed.
    pub ready_timeout: Duration,
    /// The signal number that asks a generation to stop gracefully.
    pub stop_signal: i32,
    /// How long a generation may take to stop before it is killed.
    pub stop_timeout: Duration,
    /// The wait between restarts after crashes.
    pub backoff: Backoff,
    /// Adopt what the app leaves behind: make this process a child
    /// subreaper (PID 1 is one already), reap the orphans it gets, and stop
    /// them (the stop signal, SIGKILL after the stop timeout) when the app
    /// stops, so that a daemonising program is still stopped. A
    /// process-wide change: every orphan of every child of this process
    /// becomes its own. Only for a process that runs nothing else.
    /// Default: off.
    pub adopt_orphans: bool,
}

impl AppSpec {
    /// `command` with the defaults: [`Readiness::Notify`], ready within
    /// 30 s, SIGTERM then SIGKILL after 30 s, the default [`Backoff`].
    pub fn new<I, S>(command: I) -> AppSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        AppSpec {
            command: command.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            ready: Readiness::Notify,
            ready_timeout: Duration::from_secs(30),
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            adopt_orphans: false,
        }
    }

    /// When a generation is ready.
    pub fn ready(mut self, ready: Readiness) -> Self {
        self.ready = ready;
        self
    }

    /// How long a generation may take to be ready.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The graceful stop signal (a number such as `libc::SIGQUIT`) and how
    /// long it may take before SIGKILL.
    pub fn stop(mut self, signal: i32, timeout: Duration) -> Self {
        self.stop_signal = signal;
        self.stop_timeout = timeout;
        self
    }
}

/// The last lines a generation wrote to stderr, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StderrTail(pub Vec<String>);

impl fmt::Display for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nothing on stderr");
        }
        f.write_str("last on stderr: ")?;
        for (i, line) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// Why a new generation did not take over. Whatever served before serves on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerationError {
    /// The command could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// What we tried to run.
        program: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// It exited before it was ready; its process group was stopped.
    #[error("generation {generation} (pid {pid}) exited before it was ready: {status}; {stderr}")]
    Exited {
        /// Its number.
        generation: u64,
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
        /// What it last said.
        stderr: StderrTail,
    },
    /// It was not ready in time; it was stopped with its process group.
    #[error(
        "generation {generation} (pid {pid}) was not ready within {:.1}s; stopped it; {stderr}",
        timeout.as_secs_f64()
    )]
    NotReady {
        /// Its number.
        generation: u64,
        /// Its pid.
        pid: u32,
        /// The limit.
        timeout: Duration,
        /// What it last said.
        stderr: StderrTail,
    },
    /// A stop began; the attempt was given up and stopped.
    #[error("the app is stopping")]
    Stopping,
    /// Preparing the generation failed (its notify socket, its descriptors).
    #[error("cannot prepare the new generation: {0}")]
    Io(#[from] io::Error),
}

/// How the last generation ended when the app was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// The exit status of the generation that was serving; `None` when none
    /// was (it had crashed and was not restarted yet).
    pub status: Option<ExitStatus>,
    /// Whether SIGKILL was needed after the stop timeout.
    pub killed: bool,
    /// The stop signal it was sent.
    pub signal: i32,
}

impl Stopped {
    /// The generation exited within the stop timeout with status 0, or by
    /// the stop signal itself (a program that keeps the default action).
    pub fn is_clean(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        !self.killed
            && self
                .status
                .is_some_and(|s| s.success() || s.signal() == Some(self.signal))
    }
}
