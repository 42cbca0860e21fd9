//! SIGUSR2 under `grace run`: a new grace inherits the listeners and starts
//! its own app generation; the old grace stops its app once that one is
//! ready, and exits 0. No request is lost on the way.

mod support;

use rustix::process::{kill_process, Pid, Signal};
use support::app::{gunicorn, parent_of, until_served_by, Run, Wrk};
use support::{eventually, SOON};

#[test]
fn upgrading_grace_itself_hands_the_sockets_to_a_new_grace_and_app() {
    let mut run = Run::start(&["--ready", "notify"], &gunicorn(2));
    let old_grace = run.pid();
    let wrk = Wrk::start(run.addr(), 8, true);
    run.signal(Signal::USR2);
    // The new grace's first generation: its log goes to the same stderr.
    let line = run
        .log()
        .wait_count("app generation ready generation=1 ", 2, SOON);
    let app: u32 = line.split("pid=").nth(1).unwrap().trim().parse().unwrap();
    let new_grace = parent_of(app).unwrap();
    assert_ne!(new_grace, old_grace);
    assert_eq!(run.wait_exit(SOON), Some(0), "{}", run.log().text());
    until_served_by(run.addr(), app);
    let report = wrk.stop();
    eprintln!("gunicorn, Connection: close, grace upgraded by SIGUSR2: {report:?}");
    assert_eq!(report.failed(), 0, "{report:?}");
    let pid_file = std::fs::read_to_string(run.dir.path().join("grace.pid")).unwrap();
    assert_eq!(pid_file.trim(), new_grace.to_string());

    let new = Pid::from_raw(new_grace as i32).unwrap();
    kill_process(new, Signal::TERM).unwrap();
    eventually(SOON, "the new grace to exit", || {
        (!std::path::Path::new(&format!("/proc/{new_grace}")).exists()
            || std::fs::read_to_string(format!("/proc/{new_grace}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    eventually(SOON, "its app to be gone", || {
        (!support::app::group_alive(app)).then_some(())
    });
}
