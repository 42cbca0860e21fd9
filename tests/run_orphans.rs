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
