//! Stopping a failed upgrade attempt as a whole.
//!
//! The new process starts in a process group of its own (its pid is the
//! group id), and whatever it forks stays in that group unless it asks to
//! leave: a wrapper script's background job, a pre-forking server's workers.
//! They all inherited our listening sockets; a member left running after a
//! failed attempt would keep the port's backlog open with nobody accepting,
//! so that connections hang instead of being refused once we are gone, and
//! a restart cannot bind. So the whole group is stopped, not just the child.
//!
//! A descendant that leaves the group (`setsid`, `setpgid`: daemons do) is
//! out of reach. Making grace a child subreaper (`PR_SET_CHILD_SUBREAPER`)
//! would let us find it, but that is a process-wide change: every orphan of
//! every child of the embedding program would become ours to reap, and a
//! library cannot reap what it did not start without stealing exit statuses
//! from whoever waits for them. Under systemd, `KillMode=control-group`
//! (the default) ends such escapees when the unit stops.

use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use tokio::process::Child;
use tokio::time::Instant;

/// How long the attempt's processes get to exit after SIGTERM.
const GRACE_PERIOD: Duration = Duration::from_secs(5);
/// How long SIGKILLed processes get to be gone before we say so and move on.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Stops a child that failed to take over, with every process still in its
/// group: SIGTERM (each drains whatever it may have accepted), then SIGKILL
/// to what is left after [`GRACE_PERIOD`]. The child is always reaped.
pub(super) async fn stop(child: &mut Child, pid: u32) {
    stop_group(child, pid, Signal::TERM, GRACE_PERIOD).await;
}

/// How a process group's stop ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupStop {
    /// The leader's exit status, once reaped.
    pub(crate) status: Option<std::process::ExitStatus>,
    /// Whether SIGKILL was needed: the leader or another member outlived
    /// the grace period.
    pub(crate) killed: bool,
}

/// Stops `child` (pid `pid`, leader of its own process group) and every
/// process still in that group: `signal`, then SIGKILL to what is left after
/// `grace`. The child is always reaped; resolves once the group is empty or
/// SIGKILL did not empty it within [`KILL_WAIT`].
///
/// When the child itself already exited (and was reaped), its pid still
/// names the group as long as any member lives: the kernel does not hand out
/// a pid that is in use as a process group id. Only an empty group's number
/// could be reused, by a new process that also made itself a group leader in
/// the microseconds between the reaping and this call; then the signal would
/// miss nothing of ours but reach a stranger. We accept that window rather
/// than wait for exits without reaping.
pub(crate) async fn stop_group(
    child: &mut Child,
    pid: u32,
    signal_first: Signal,
    grace: Duration,
) -> GroupStop {
    let Some(group) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        // No pid: tokio lost it only once the child was reaped; kill what we can.
        let _ = child.kill().await;
        return GroupStop {
            status: child.try_wait().ok().flatten(),
            killed: true,
        };
    };
    signal(group, signal_first);
    let deadline = Instant::now() + grace;
    let status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    if status.is_some() && wait_empty(group, deadline).await {
        return GroupStop {
            status,
            killed: false,
        };
    }
    tracing::warn!(
        pid,
        signal = ?signal_first,
        "a process of the group ignored the stop signal; killing the process group"
    );
    signal(group, Signal::KILL);
    let _ = child.kill().await;
    if !wait_empty(group, Instant::now() + KILL_WAIT).await {
        tracing::error!(pid, "processes of the group survive SIGKILL");
    }
    GroupStop {
        status: status.or_else(|| child.try_wait().ok().flatten()),
        killed: true,
    }
}

fn signal(group: Pid, signal: Signal) {
    match kill_process_group(group, signal) {
        // Everyone already gone.
        Ok(()) | Err(Errno::SRCH) => {}
        Err(e) => tracing::warn!(
            group = group.as_raw_nonzero().get(),
            "cannot signal a process group: {e}"
        ),
    }
}

/// Waits until no live process is left in `group`, or `deadline`; returns
/// whether the group emptied.
async fn wait_empty(group: Pid, deadline: Instant) -> bool {
    let mut pause = Duration::from_millis(5);
    loop {
        if !has_live_member(group) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn has_live_member(group: Pid) -> bool {
    match test_kill_process_group(group) {
        Err(Errno::SRCH) => false,
        // The kernel still counts zombies (exited, not yet reaped by their
        // new parent, which is not us): they hold no descriptors, so they
        // keep nothing open. /proc tells them apart.
        _ => live_member_in_proc(group.as_raw_nonzero().get()).unwrap_or(true),
    }
}

fn live_member_in_proc(group: i32) -> std::io::Result<bool> {
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone since the listing: not a member any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = state_and_group(&stat) {
            if pgrp == group && state != "Z" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The state and process group from a `/proc/PID/stat` line. The command
/// name before them is in parentheses and may itself hold spaces and `)`.
fn state_and_group(stat: &str) -> Option<(&str, i32)> {
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let _ppid = fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_command_names() {
        assert_eq!(state_and_group("42 (a) b) S 1 42 42 0 -1"), Some(("S", 42)));
        assert_eq!(state_and_group("7 (sleep) Z 1 5 5 0"), Some(("Z", 5)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[tokio::test]
    async fn a_group_and_its_background_job_are_stopped() {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg("sleep 600 & exec sleep 600")
            .process_group(0);
        let mut child = command.spawn().unwrap();
        let pid = child.id().unwrap();
        let group = Pid::from_raw(pid as i32).unwrap();
        // The background job is forked by the shell before it execs.
        let start = Instant::now();
        while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
            != b"sleep\x00600\x00"
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the shell never exec'd"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(has_live_member(group));
        stop(&mut child, pid).await;
        assert!(!has_live_member(group));
    }
}
