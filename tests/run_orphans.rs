//! What a daemonising app leaves behind: grace is a child subreaper, so a
//! process that left the app's process group (`setsid`) is re-parented to
//! grace once its parent is gone, reaped when it exits, and stopped when
//! the app stops.

mod support;

use rustix::process::{kill_process, Pid, Signal};
use support::app::{goserver, parent_of, Run};
use support::{eventually, SOON};

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn daemons_the_app_leaves_are_adopted_reaped_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let daemons = dir.path().join("daemons");
    let script = format!(
        "setsid sleep 600 & echo $! >> {}; exec \"$0\" \"$@\"",
        daemons.display()
    );
    let mut command = vec!["sh".to_owned(), "-c".to_owned(), script];
    command.extend(goserver());
    let mut run = Run::start(
        &["--ready", "delay:300ms", "--stop-timeout", "5s"],
        &command,
    );
    let (code, out, _) = run.reload();
    assert_eq!(code, 0, "{out}");
    run.log().wait_for("app generation stopped generation=1 ");
    let pids: Vec<u32> = eventually(SOON, "two daemons", || {
        let text = std::fs::read_to_string(&daemons).ok()?;
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (pids.len() == 2).then_some(pids)
    });
    // Generation 1's server is gone; its daemon is grace's now.
    eventually(SOON, "the first daemon to be adopted", || {
        (parent_of(pids[0]) == Some(run.pid())).then_some(())
    });
    // It exits: grace reaps it, no zombie stays.
    kill_process(Pid::from_raw(pids[0] as i32).unwrap(), Signal::TERM).unwrap();
    eventually(SOON, "the first daemon to be reaped", || {
        gone(pids[0]).then_some(())
    });

    // The second one is stopped with the app.
    run.signal(Signal::TERM);
    assert_eq!(run.wait_exit(SOON), Some(0), "{}", run.log().text());
    assert!(
        run.log()
            .text()
            .contains("stopping processes the app left behind"),
        "{}",
        run.log().text()
    );
    eventually(SOON, "the second daemon to be gone", || {
        gone(pids[1]).then_some(())
    });
}

/// Host pids of the zombie children of host pid `parent`.
fn zombie_children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
            let state = fields.next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            (ppid == parent && state == "Z").then_some(pid)
        })
        .collect()
}

#[test]
fn as_pid_1_orphans_are_reaped() {
    use std::process::{Command, Stdio};
    let can_unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can_unshare {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and can unshare"
        );
        eprintln!("skipped: cannot create a PID namespace here (needs root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("orphans");
    // Each orphan's parent exits at once; the orphan itself a moment later.
    let script = format!(
        "for i in 1 2 3; do (sleep 0.2 & echo $! >> {}) ; done; exec \"$0\" \"$@\"",
        marker.display()
    );
    let mut grace = Command::new("unshare");
    grace
        .args(["--pid", "--fork", "--mount-proc", support::BIN, "run"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ready",
            "delay:300ms",
            "--control-socket",
        ])
        .arg(dir.path().join("control.sock"))
        .args(["--", "sh", "-c", &script])
        .args(goserver());
    let run = Run::spawn(grace, dir);
    assert!(
        run.log().text().contains("pid=1 "),
        "grace should be PID 1 in its namespace: {}",
        run.log().text()
    );
    // The unshare child (host pid) is grace: it is PID 1 inside.
    let unshare = run.pid();
    let grace_host_pid = eventually(SOON, "grace's host pid", || {
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
    });
    // unshare does not pass signals on: grace itself is told to stop, also
    // when an assertion fails on the way.
    let stop = StopOnDrop(grace_host_pid);
    eventually(SOON, "three orphans started", || {
        let text = std::fs::read_to_string(run.dir.path().join("orphans")).ok()?;
        (text.lines().count() == 3).then_some(())
    });
    // They were adopted by PID 1 and exited: none may stay a zombie.
    eventually(SOON, "the orphans to be reaped", || {
        zombie_children(grace_host_pid).is_empty().then_some(())
    });
    let mut run = run;
    drop(stop);
    assert_eq!(run.wait_exit(SOON), Some(0), "{}", run.log().text());
}

/// Sends SIGTERM to a pid when dropped.
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = kill_process(Pid::from_raw(self.0 as i32).unwrap(), Signal::TERM);
    }
}
