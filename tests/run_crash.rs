//! An app that dies is restarted at once on the same sockets: clients wait
//! in the backlog instead of being refused. Repeated crashes back off.

mod support;

use rustix::process::{kill_process_group, Pid, Signal};
use support::app::{flaky, gunicorn, until_served_by, Run, Wrk};
use support::SOON;

fn kill_group(pid: u32) {
    kill_process_group(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
}

#[test]
fn kill_9_under_load_refuses_no_connection() {
    let run = Run::start(&["--ready", "notify"], &gunicorn(2));
    let first = run.app_pid(1);
    let wrk = Wrk::start(run.addr(), 8, true);
    until_served_by(run.addr(), first);
    // The master and its workers at once: nobody accepts until the next
    // generation does.
    let killed = std::time::Instant::now();
    kill_group(first);
    let second = run.app_pid(2);
    until_served_by(run.addr(), second);
    let waited = killed.elapsed();
    let report = wrk.stop();
    eprintln!("gunicorn kill -9 under Connection: close load: {report:?}; served again {waited:?} after the kill");
    assert!(
        run.log().text().contains("the app exited unexpectedly"),
        "{}",
        run.log().text()
    );
    assert_eq!(report.connect, 0, "connections refused: {report:?}");
    assert_eq!(report.timeout, 0, "{report:?}");
}

#[test]
fn repeated_crashes_back_off_and_the_app_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (command, mode) = flaky(dir.path(), gunicorn(1));
    let env = format!("MODE_FILE={}", mode.display());
    let run = Run::start(
        &[
            "--ready",
            "notify",
            "--backoff",
            "200ms",
            "--backoff-max",
            "2s",
            "--env",
            &env,
        ],
        &command,
    );
    let first = run.app_pid(1);
    std::fs::write(&mode, "exit1").unwrap();
    kill_group(first);
    // The restart at once and two more fail, each after a longer wait.
    run.log()
        .wait_count("app generation failed to start", 3, SOON);
    std::fs::write(&mode, "serve").unwrap();
    let line = run.log().wait_for("app generation ready generation=5 ");
    let waits: Vec<String> = run
        .log()
        .text()
        .lines()
        .filter_map(|l| l.split("restart_in=").nth(1))
        .map(|r| r.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(waits[..3], ["0ns", "200ms", "400ms"], "{waits:?}");
    let pid = line.split("pid=").nth(1).unwrap().trim().parse().unwrap();
    until_served_by(run.addr(), pid);
}
