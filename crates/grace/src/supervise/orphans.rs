//! Processes the app leaves behind. A generation's descendant that leaves
//! its process group (`setsid`: a daemonising program) escapes the group
//! stop, and once its parent is gone it is re-parented: to us when we are
//! PID 1 (a container without an init) or a child subreaper. Either way it
//! is ours to reap, and, being the app's, ours to stop when the app stops.
//!
//! Reaping must never take the exit status of a child tokio waits for (a
//! generation leader, an upgrade's new process), nor stop the new grace an
//! upgrade started: those are registered in [`waited`] before they can
//! exit (the lock is held across the spawn) and left alone.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

static WAITED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The children this process started itself and waits for through tokio:
/// never reaped nor stopped as orphans. Insert a child's pid while holding
/// the guard across its spawn.
pub(crate) fn waited() -> MutexGuard<'static, BTreeSet<u32>> {
    WAITED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Orphans adopted from the app.
#[derive(Debug, Default)]
pub(super) struct Orphans;

impl Orphans {
    /// Reaps every exited child of ours that is not waited for.
    fn reap(&self) {
        let waited = waited();
        for (pid, zombie) in children() {
            if zombie && !waited.contains(&pid) {
                if let Some(pid) = Pid::from_raw(pid as i32) {
                    let _ = waitpid(Some(pid), WaitOptions::NOHANG);
                }
            }
        }
    }

    /// Live children of ours that are not leaders: adopted orphans.
    fn adopted(&self) -> Vec<u32> {
        let waited = waited();
        children()
            .into_iter()
            .filter(|(pid, zombie)| !zombie && !waited.contains(pid))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Stops adopted orphans: `first`, then SIGKILL after `timeout`.
    pub(super) async fn stop_adopted(&self, first: Signal, timeout: Duration) {
        let adopted = self.adopted();
        if adopted.is_empty() {
            return;
        }
        tracing::info!(pids = ?adopted, "stopping processes the app left behind");
        signal_all(&adopted, first);
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            let left = self.adopted();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(pids = ?left, "processes the app left behind ignored the stop signal; killing them");
                signal_all(&left, Signal::KILL);
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.reap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Makes orphans of our descendants ours (a child subreaper; PID 1 gets
/// them anyway) and reaps them as they exit.
///
/// This is a process-wide change: every orphan of every child becomes ours.
/// Only for a process that runs nothing but its app (`grace run`).
pub(super) fn adopt() -> io::Result<()> {
    if std::process::id() != 1 {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    }
    let mut exits = signal(SignalKind::child())?;
    tokio::spawn(async move {
        while exits.recv().await.is_some() {
            Orphans.reap();
        }
    });
    Ok(())
}

fn signal_all(pids: &[u32], signal: Signal) {
    for pid in pids {
        if let Some(pid) = Pid::from_raw(*pid as i32) {
            let _ = kill_process(pid, signal);
        }
    }
}

/// Our children, each with whether it has exited (a zombie).
fn children() -> Vec<(u32, bool)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
            let state = fields.next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            (ppid == me).then_some((pid, state == "Z"))
        })
        .collect()
}
