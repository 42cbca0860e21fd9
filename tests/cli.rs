//! The command line: check, start failures, pid-file commands.

mod support;

use std::process::{Command, Stdio};

use support::{run, wait_child, SOON};

#[test]
fn check_accepts_a_valid_file_and_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.toml"), "message = \"hi\"\n").unwrap();
    let (code, out, _) = run(&["check", "--config", "ok.toml"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("ok.toml: configuration is valid"), "{out}");

    let (code, out, _) = run(&["check"], dir.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("<embedded default config>: configuration is valid"),
        "{out}"
    );
}

#[test]
fn check_rejects_with_78_and_points_at_the_mistake() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "message = \"hi\"\n[[routes]]\npath = \"/x\"\nstatus = 1000\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(code, 78);
    assert!(
        err.contains("bad.toml:4:10: invalid status 1000: expected a number from 200 to 599"),
        "{err}"
    );
    assert!(
        err.contains("4 | status = 1000\n  |          ^^^^"),
        "{err}"
    );

    let (code, _, err) = run(&["check", "--config", "missing.toml"], dir.path());
    assert_eq!(code, 78);
    assert!(
        err.contains("missing.toml: cannot read the config file"),
        "{err}"
    );
}

#[test]
fn the_config_path_can_come_from_grace_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("env.toml"), "bogus = 1\n").unwrap();
    let out = Command::new(support::BIN)
        .arg("check")
        .env("GRACE_CONFIG", dir.path().join("env.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("env.toml:1:1: unknown field `bogus`"));
}

#[test]
fn starting_with_a_bad_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--config", "bad.toml"], dir.path());
    assert_eq!(code, 78);
    assert!(
        err.contains("bad.toml:2:10: invalid listen address \"nowhere\""),
        "{err}"
    );
}

#[test]
fn a_bind_conflict_exits_69_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!("[server]\nlisten = [\"{addr}\"]\n"),
    )
    .unwrap();
    let mut child = Command::new(support::BIN)
        .args(["--config", "c.toml"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, SOON).expect("grace should exit on a bind conflict");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(69));
    assert!(
        err.contains(&format!(
            "error: cannot listen on {addr}: Address already in use"
        )),
        "{err}"
    );
}

#[test]
fn pid_file_commands_explain_missing_and_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["reload", "--pid-file", "none.pid"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("cannot read pid file none.pid"), "{err}");

    // A pid that surely is not running: a child we started and reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    std::fs::write(dir.path().join("stale.pid"), format!("{pid}\n")).unwrap();
    let (code, _, err) = run(&["stop", "--pid-file", "stale.pid"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "stale pid file stale.pid: no process {pid} is running"
        )),
        "{err}"
    );

    std::fs::write(dir.path().join("junk.pid"), "abc\n").unwrap();
    let (code, _, err) = run(&["stop", "--pid-file", "junk.pid"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("does not hold a pid"), "{err}");
}

#[test]
fn usage_errors_exit_64_and_version_works() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, _) = run(&["--no-such-flag"], dir.path());
    assert_eq!(code, 64);
    let (code, out, _) = run(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert!(out.starts_with("grace "), "{out}");
}

#[test]
fn check_summarises_every_address_it_would_listen_on() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("c.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.path().join("tls.toml"),
        "message = \"hi\"\n[server]\nlisten = \"127.0.0.1:8080\"\n\
         admin_listen = \"127.0.0.1:9090\"\n[server.tls]\n\
         listen = [\"127.0.0.1:8443\", \"[::1]:8443\"]\ncert = \"c.pem\"\nkey = \"c.key\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--config", "tls.toml"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "tls.toml: configuration is valid (1 routes, listening on 127.0.0.1:8080; \
             TLS on 127.0.0.1:8443, [::1]:8443; admin on 127.0.0.1:9090)"
        ),
        "{out}"
    );

    // Only TLS: no empty plain list.
    std::fs::write(
        dir.path().join("tls-only.toml"),
        "message = \"hi\"\n[server.tls]\nlisten = \"127.0.0.1:8443\"\n\
         cert = \"c.pem\"\nkey = \"c.key\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--config", "tls-only.toml"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("tls-only.toml: configuration is valid (1 routes, TLS on 127.0.0.1:8443)"),
        "{out}"
    );
}
