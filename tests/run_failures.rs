//! A new generation that fails to start is stopped with everything it
//! started, and the old one serves on throughout.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::app::{answering_pid, flaky, group_alive, gunicorn, parent_of, pid_in, Run};
use support::http::get;

#[test]
fn failed_new_generations_are_rejected_with_their_reason_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (command, mode) = flaky(dir.path(), gunicorn(1));
    let env = format!("MODE_FILE={}", mode.display());
    let run = Run::start(
        &[
            "--ready",
            "notify",
            "--ready-timeout",
            "3s",
            "--stop-timeout",
            "5s",
            "--env",
            &env,
        ],
        &command,
    );
    let first = run.app_pid(1);

    // Requests all along, each on a new connection: every one must be
    // answered by the first generation.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, addr) = (stop.clone(), run.addr());
        std::thread::spawn(move || {
            let mut answered = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let res = get(addr, "/").expect("the old generation serves throughout");
                assert_eq!(res.status, 200);
                let pid = answering_pid(&res.body).unwrap();
                assert_eq!(parent_of(pid), Some(first), "answered by {pid}");
                answered += 1;
            }
            answered
        })
    };

    for (how, reason) in [
        ("exit1", "exited before it was ready: exit status: 1"),
        ("hang", "was not ready within 3.0s"),
        ("fork", "was not ready within 3.0s"),
    ] {
        std::fs::write(&mode, how).unwrap();
        let (code, out, _) = run.reload();
        assert_ne!(code, 0, "{how}: {out}");
        assert!(out.contains(reason), "{how}: {out}");
        assert!(
            out.contains(&format!("(mode {how})")),
            "{how}: its stderr: {out}"
        );
        let failed = pid_in(&out);
        assert!(
            !group_alive(failed),
            "{how}: a process of generation pid {failed} survives"
        );
        eprintln!("{how}: rejected: {}", out.trim());
    }
    stop.store(true, Ordering::Relaxed);
    let answered = client.join().unwrap();
    assert!(answered > 0);

    // And the next good one takes over.
    std::fs::write(&mode, "serve").unwrap();
    let (code, out, _) = run.reload();
    assert_eq!(code, 0, "{out}");
    assert!(run.log().text().contains("failed to start"));
}
