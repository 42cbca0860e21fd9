//! Starting one generation of the app: the command in a process group of
//! its own, with the listening sockets at descriptors 3.. in the
//! socket-activation convention (as an upgrade's new grace gets them), its
//! own `NOTIFY_SOCKET`, and its stderr passed through while the last lines
//! are kept for the verdict of a failed start.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

use super::notify_socket::NotifySocket;
use super::orphans::waited;
use super::{AppSpec, GenerationError, StderrTail};
use crate::handoff::inherit::READY_FD_VAR;
use crate::handoff::pass::{inherited_env, Passed};
use crate::handoff::sys::ExecPlan;
use crate::handoff::upgrade::resolve_program;

/// Lines of stderr kept for a failed start's verdict.
const TAIL_LINES: usize = 10;
/// Longest line kept (and passed through in one piece).
const MAX_LINE: u64 = 8192;

/// A started generation: its process, its notify socket, its stderr.
pub(super) struct Generation {
    pub(super) number: u64,
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) started: Instant,
    pub(super) notify: NotifySocket,
    tail: Arc<Mutex<VecDeque<String>>>,
    copier: Option<JoinHandle<()>>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        // Reaped by now, or nobody waits for it: the orphan reaper may.
        waited().remove(&self.pid);
    }
}

impl Generation {
    /// The last lines it wrote to stderr. Waits up to `wait` for the copy
    /// to reach the end (the process and everything that shares its stderr
    /// gone), so that the last words before an exit are in.
    pub(super) async fn stderr_tail(&mut self, wait: Duration) -> StderrTail {
        if let Some(copier) = self.copier.take() {
            let _ = tokio::time::timeout(wait, copier).await;
        }
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        StderrTail(tail.iter().cloned().collect())
    }
}

/// Starts generation `number` of `spec` on `sockets`, its notify socket in
/// `dir`.
pub(super) fn spawn(
    spec: &AppSpec,
    sockets: &[(String, OwnedFd)],
    number: u64,
    dir: &Path,
) -> Result<Generation, GenerationError> {
    let arg0 = spec
        .command
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    // execve does not search PATH: resolved here, as a shell would.
    let program = resolve_program(arg0).map_err(|source| GenerationError::Spawn {
        program: arg0.into(),
        source,
    })?;
    let notify = NotifySocket::bind(dir, number)?;

    let Passed {
        keep_alive,
        moves,
        count,
        names,
        ..
    } = Passed::sockets(sockets, 0)?;
    // Ours are replaced: the activation variables describe these sockets,
    // NOTIFY_SOCKET is this generation's, and systemd's watchdog is ours to
    // feed, not the app's.
    let inherited = inherited_env(
        &[
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
            "WATCHDOG_PID",
            "WATCHDOG_USEC",
            READY_FD_VAR,
        ],
        |k| spec.env.iter().any(|(name, _)| name == k),
    );
    let mut env: Vec<(&OsStr, &OsStr)> = inherited
        .iter()
        .chain(spec.env.iter())
        .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
        .collect();
    env.push(("LISTEN_FDS".as_ref(), count.as_ref()));
    env.push(("LISTEN_FDNAMES".as_ref(), names.as_ref()));
    env.push(("NOTIFY_SOCKET".as_ref(), notify.path().as_os_str()));
    let argv: Vec<&OsStr> = spec.command.iter().map(OsString::as_os_str).collect();
    let plan = ExecPlan::new(program.as_os_str(), &argv, &env, moves)?;

    let mut command = Command::new(&program);
    command.kill_on_drop(false).stderr(Stdio::piped());
    // A group of its own: replaced, crashed or failed, the generation is
    // stopped with everything it started (pre-forked workers, a wrapper
    // script's children), none left holding the sockets.
    command.process_group(0);
    plan.install(&mut command);
    // Held until the pid is registered: the orphan reaper must not take the
    // exit status of a leader that exits at once.
    let mut registered = waited();
    let mut child = command.spawn().map_err(|source| GenerationError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    registered.insert(pid);
    drop(registered);
    // The child has its copies; ours close here.
    drop(keep_alive);
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let copier = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(pass_through(stderr, tail.clone())));
    tracing::info!(generation = number, pid, program = %program.display(), "app generation started");
    Ok(Generation {
        number,
        pid,
        child,
        started: Instant::now(),
        notify,
        tail,
        copier,
    })
}

/// Copies the app's stderr to ours line by line (so that its lines and our
/// log lines do not interleave mid-line), keeping the last few.
async fn pass_through(stderr: ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut reader = BufReader::new(stderr);
    let mut out = tokio::io::stderr();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // Our stderr gone is no reason to stop draining the app's pipe.
        let _ = out.write_all(&line).await;
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}
