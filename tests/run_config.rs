//! `[app]` in the configuration file: `grace --config FILE` supervises
//! instead of serving routes, and a reload re-reads the file.

mod support;

use std::process::Command;

use support::app::{flaky, goserver, pid_in, until_served_by, Run};
use support::BIN;

/// `command` is flaky.sh around the Go server; `mode` tells it what to do.
fn config(
    dir: &std::path::Path,
    command: &[String],
    mode: &std::path::Path,
    ready: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncontrol_socket = {:?}\n\n\
         [app]\ncommand = {command:?}\nready = {ready:?}\nstop_timeout = \"5s\"\n\
         env = {{ MODE_FILE = {:?} }}\n",
        dir.join("control.sock").display().to_string(),
        mode.display().to_string(),
    )
}

#[test]
fn an_app_section_is_supervised_and_reloads_reread_it() {
    let dir = tempfile::tempdir().unwrap();
    let (command, mode) = flaky(dir.path(), goserver());
    let path = dir.path().join("grace.toml");
    std::fs::write(&path, config(dir.path(), &command, &mode, "delay:300ms")).unwrap();
    let mut grace = Command::new(BIN);
    grace
        .arg("--config")
        .arg(&path)
        .arg("--pid-file")
        .arg(dir.path().join("grace.pid"));
    let run = Run::spawn(grace, dir);
    let first = run.app_pid(1);
    until_served_by(run.addr(), first);

    // A broken file is rejected as a configuration, before any generation.
    let dir = run.dir.path();
    std::fs::write(&path, config(dir, &command, &mode, "sometimes")).unwrap();
    let (code, out, _) = run.reload();
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("`ready`"), "{out}");

    // The file's new environment reaches the new generation: this one is
    // told to fail, and says so.
    let other = dir.join("other-mode");
    std::fs::write(&other, "exit1").unwrap();
    std::fs::write(&path, config(dir, &command, &other, "delay:300ms")).unwrap();
    let (code, out, _) = run.reload();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("(mode exit1)"), "{out}");
    assert!(pid_in(&out) > 0);

    std::fs::write(&path, config(dir, &command, &mode, "delay:300ms")).unwrap();
    let (code, out, _) = run.reload();
    assert_eq!(code, 0, "{out}");
    until_served_by(run.addr(), run.app_pid(3));
}
