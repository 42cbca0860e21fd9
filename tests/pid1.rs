//! grace as PID 1, as in a container without an init: run in a new PID
//! namespace (`unshare --pid --fork --mount-proc`, as root), no Docker needed.
//! The kernel drops signals to PID 1 that have no handler; grace's handlers
//! must make SIGTERM drain and exit 0.

mod support;

use std::process::{Command, Stdio};

use rustix::process::{kill_process, Pid, Signal};
use support::http::{get, Conn};
use support::{eventually, wait_child, Log, BIN, SOON};

#[test]
fn as_pid_1_sigterm_drains_and_exits_0_and_upgrades_are_refused() {
    if cannot_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grace.toml");
    std::fs::write(
        &config,
        "message = \"init\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [[routes]]\npath = \"/slow\"\ndelay = \"1s\"\nbody = \"slow done\"\n",
    )
    .unwrap();
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", BIN, "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::capture(unshare.stderr.take().unwrap());
    let ready = log.wait_for(" ready");
    assert!(
        ready.contains("pid=1 "),
        "grace should be PID 1 in its namespace: {ready}"
    );
    let addr: std::net::SocketAddr = log
        .wait_for("listening on ")
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    // grace's pid as seen from here: unshare's only child.
    let children = format!("/proc/{0}/task/{0}/children", unshare.id());
    let host_pid: i32 = eventually(SOON, "unshare to fork grace", || {
        std::fs::read_to_string(&children)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let grace = Pid::from_raw(host_pid).unwrap();

    assert_eq!(get(addr, "/").unwrap().body, "init");
    kill_process(grace, Signal::USR2).unwrap();
    let refused = log.wait_for("refusing to upgrade in place as PID 1");
    assert!(refused.contains("run grace under an init"), "{refused}");

    let mut slow = Conn::open(addr).unwrap();
    slow.send("/slow").unwrap();
    kill_process(grace, Signal::TERM).unwrap();
    assert_eq!(slow.recv().unwrap().body, "slow done");
    let status = wait_child(&mut unshare, SOON).expect("grace as PID 1 exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", log.text());
    log.wait_for("exiting code=0");
}

/// Creating a PID namespace needs root (CI runs as root); say so and skip
/// elsewhere rather than fail for the wrong reason.
fn cannot_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and can unshare"
        );
        eprintln!("skipped: cannot create a PID namespace here (needs root)");
    }
    !ok
}
