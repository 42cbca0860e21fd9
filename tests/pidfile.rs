//! The pid file against the real binary: commands signal only the grace that
//! owns the file, a second server refuses a file a live one owns, and the
//! file is written without following links planted by others.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::{config, eventually, run, wait_child, Grace, SOON};

/// A process that is not grace, which the pid file will name.
struct Bystander(Child);

impl Bystander {
    fn start() -> Bystander {
        Bystander(Command::new("sleep").arg("1000").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn is_alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run(args, dir)
}

#[test]
fn commands_refuse_a_pid_file_naming_a_process_that_is_not_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleep = Bystander::start();
    std::fs::write(dir.path().join("p.pid"), format!("{}\n", sleep.pid())).unwrap();
    for action in ["status", "reload", "upgrade", "stop"] {
        let (code, out, err) = command(
            dir.path(),
            &[action, "--pid-file", "p.pid", "--timeout", "2s"],
        );
        assert_eq!(code, 1, "{action}: {out}{err}");
        assert!(
            err.contains(&format!(
                "p.pid names pid {}, which is not the grace server that owns this pid file",
                sleep.pid()
            )),
            "{action}: {err}"
        );
        assert!(out.is_empty(), "{action}: nothing to report: {out}");
        assert!(sleep.is_alive(), "{action} signalled the bystander");
    }

    // Pid 1 is always running, and never this file's grace.
    std::fs::write(dir.path().join("one.pid"), "1\n").unwrap();
    let (code, out, err) = command(dir.path(), &["status", "--pid-file", "one.pid"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("names pid 1, which is not the grace server"),
        "{err}"
    );
}

#[test]
fn a_grace_that_owns_another_pid_file_is_refused_too() {
    let grace = Grace::start(&config("a", "", ""));
    let dir = tempfile::tempdir().unwrap();
    // What a stale pid file whose number was reused by another grace looks like.
    std::fs::write(dir.path().join("p.pid"), format!("{}\n", grace.pid())).unwrap();
    let (code, _, err) = command(dir.path(), &["stop", "--pid-file", "p.pid"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not the grace server that owns"), "{err}");
    let (code, out, _) = command(
        dir.path(),
        &["status", "--pid-file", grace.pid_file().to_str().unwrap()],
    );
    assert_eq!(code, 0);
    assert!(out.contains(&format!("grace is running (pid {})", grace.pid())));
}

#[test]
fn a_second_server_refuses_a_pid_file_a_live_grace_owns() {
    let mut first = Grace::start(&config("a", "", ""));
    let pid_file = first.pid_file();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("g.toml"), config("b", "", "")).unwrap();
    let mut second = Command::new(support::BIN)
        .args(["--config", "g.toml", "--pid-file"])
        .arg(&pid_file)
        .current_dir(other.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut second, SOON);
    if status.is_none() {
        let _ = second.kill();
        let _ = second.wait();
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("the second server kept running:\n{err}"));
    assert_eq!(status.code(), Some(69), "{err}");
    assert!(
        err.contains(&format!(
            "pid file {}: grace pid {} owns it and is running",
            pid_file.display(),
            first.pid()
        )),
        "{err}"
    );
    assert!(
        !err.contains("listening on"),
        "refused before listening: {err}"
    );
    assert_eq!(grace::pidfile::read(&pid_file).unwrap(), first.pid());

    // The first one still answers `stop` through its pid file.
    let (code, out, err) = command(
        other.path(),
        &["stop", "--pid-file", pid_file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(first.wait_exit(SOON).code(), Some(0));
    assert!(!pid_file.exists(), "removed at exit");
    assert!(!grace::pidfile::lock_path(&pid_file).exists());
}

#[test]
fn a_killed_servers_pid_file_neither_blocks_a_new_start_nor_reaches_anyone() {
    let mut first = Grace::start(&config("a", "", ""));
    let pid_file = first.pid_file();
    first.signal(rustix::process::Signal::KILL);
    first.wait_exit(SOON);
    assert!(pid_file.exists(), "a killed server leaves its pid file");
    let (code, _, err) = command(
        first.dir.path(),
        &["stop", "--pid-file", pid_file.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("stale pid file"), "{err}");

    let dir = first.dir.path().to_owned();
    let mut second = Command::new(support::BIN)
        .args(["--config", "grace.toml", "--pid-file", "grace.pid"])
        .current_dir(&dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = eventually(SOON, "the new server to own the pid file", || {
        let (code, out, _) = command(&dir, &["status", "--pid-file", "grace.pid"]);
        (code == 0).then_some(out)
    });
    assert!(pid.contains(&format!("(pid {})", second.id())), "{pid}");
    let (code, _, err) = command(&dir, &["stop", "--pid-file", "grace.pid"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(wait_child(&mut second, SOON).unwrap().code(), Some(0));
}

#[test]
fn after_upgrades_the_pid_file_commands_reach_the_new_process() {
    let mut grace = Grace::start(&config("a", "", ""));
    let pid_file = grace.pid_file();
    let pid_arg = pid_file.to_str().unwrap();
    let dir = grace.dir.path().to_owned();
    for _ in 0..2 {
        let (code, out, err) = command(&dir, &["upgrade", "--pid-file", pid_arg]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let new = grace.live_pid();
    assert_ne!(new, grace.pid());
    let (code, out, _) = command(&dir, &["status", "--pid-file", pid_arg]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("grace is running (pid {new})")),
        "{out}"
    );
    let (code, out, err) = command(&dir, &["stop", "--wait", "--pid-file", pid_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("sent SIGTERM to grace (pid {new})")),
        "{out}"
    );
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert!(!pid_file.exists(), "removed by the last owner");
    let lock = grace::pidfile::lock_path(&pid_file);
    eventually(SOON, "the last process to remove the lock file", || {
        (!lock.exists()).then_some(())
    });
    let verdicts = grace::handoff::status_path(&pid_file);
    eventually(
        SOON,
        "the last process to remove the upgrade record",
        || (!verdicts.exists()).then_some(()),
    );
}

#[test]
fn a_failed_upgrade_leaves_no_upgrade_record_after_the_stop() {
    let mut grace = Grace::start(&config("a", "", ""));
    let pid_file = grace.pid_file();
    let pid_arg = pid_file.to_str().unwrap();
    grace.write_config("message = \n");
    let (code, _, err) = command(grace.dir.path(), &["upgrade", "--pid-file", pid_arg]);
    assert_eq!(code, 1, "{err}");
    let verdicts = grace::handoff::status_path(&pid_file);
    assert!(
        verdicts.exists(),
        "the verdict is recorded for `grace upgrade`"
    );
    // Not `--wait`: our unreaped child would look alive to it.
    let (code, out, err) = command(grace.dir.path(), &["stop", "--pid-file", pid_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert!(!pid_file.exists());
    assert!(
        !verdicts.exists(),
        "{} left behind after the server exited",
        verdicts.display()
    );
}

#[test]
fn the_pid_file_is_written_without_following_a_planted_symlink() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();

    // At start: `sh` plants the links for its own pid, then becomes grace.
    let dir = tempfile::tempdir().unwrap();
    let mut wrapper = Command::new("sh");
    wrapper.args([
        "-c",
        r#"for n in .grace.pid.$$.tmp .grace.pid.upgrade.$$.tmp; do ln -s "$VICTIM" "$n"; done; exec "$0" "$@""#,
        support::BIN,
    ]);
    wrapper.current_dir(dir.path()).env("VICTIM", &victim);
    let grace = Grace::start_command(wrapper, dir, &config("a", "", ""), &[]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(grace.live_pid(), grace.pid());

    // At an upgrade: the old process writes the new pid and the verdict,
    // with the links still planted at the names of its pid.
    for name in [".grace.pid.{}.tmp", ".grace.pid.upgrade.{}.tmp"] {
        let link = grace
            .dir
            .path()
            .join(name.replace("{}", &grace.pid().to_string()));
        assert!(link.symlink_metadata().unwrap().is_symlink());
    }
    let (code, out, err) = command(
        grace.dir.path(),
        &["upgrade", "--pid-file", grace.pid_file().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_ne!(grace.live_pid(), grace.pid());
    assert!(
        out.contains(&format!("upgraded: pid {} serves", grace.live_pid())),
        "{out}"
    );
}
