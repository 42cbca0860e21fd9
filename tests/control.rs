//! The control socket against the real binary: verdicts, status, access,
//! misbehaving clients, and the socket file's own life.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::{get, Conn};
use support::{config, run, wait_child, Grace, SOON};

fn socket_arg(grace: &Grace) -> String {
    grace.control_socket().to_str().unwrap().to_owned()
}

#[test]
fn reload_gives_the_verdict_accepted_or_rejected_with_the_full_error() {
    let grace = Grace::start_controlled(&config("one", "", ""));
    grace.write_config(&config("two", "", ""));
    let reply = grace.control(r#"{"cmd":"reload"}"#);
    assert_eq!(
        reply,
        vec![serde_json::json!({"ok": true, "reply": "reloaded", "generation": 2})]
    );
    assert_eq!(get(grace.addr(), "/").unwrap().body, "two");

    grace.write_config("message = \"x\"\n[server]\nshutdown_timeout = 5\n");
    let reply = grace.control(r#"{"cmd":"reload"}"#);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["ok"], false);
    assert_eq!(reply[0]["kind"], "config_rejected");
    let path = grace.config_path().display().to_string();
    let message = reply[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{path}:3:20: invalid type: integer `5`")),
        "{message}"
    );

    // The command line: exit 78 and the error on a rejection, 0 and the
    // generation once the file is fixed.
    let socket = socket_arg(&grace);
    let (code, _, err) = run(&["reload", "--control-socket", &socket], grace.dir.path());
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(":3:20: invalid type"), "{err}");
    grace.write_config(&config("three", "", ""));
    let (code, out, err) = run(
        &["reload", "--control-socket", &socket, "--json"],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        r#"{"ok":true,"reply":"reloaded","generation":3}"#
    );
    assert_eq!(get(grace.addr(), "/").unwrap().body, "three");
}

#[test]
fn status_reports_pid_generation_phase_uptime_config_and_last_reload() {
    let grace = Grace::start_controlled(&config("m", "", ""));
    let status = &grace.control(r#"{"cmd":"status"}"#)[0];
    assert_eq!(status["ok"], true);
    assert_eq!(status["reply"], "status");
    assert_eq!(status["pid"], grace.pid());
    assert_eq!(status["generation"], 1);
    assert_eq!(status["phase"], "running");
    assert!(status["uptime_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        status["config_path"],
        grace.config_path().display().to_string()
    );
    assert!(status["last_reload"].is_null());

    grace.write_config("message = 1\n");
    grace.control(r#"{"cmd":"reload"}"#);
    let status = &grace.control(r#"{"cmd":"status"}"#)[0];
    let last = &status["last_reload"];
    assert_eq!(last["result"], "rejected");
    assert!(last["error"].as_str().unwrap().contains(":1:11:"), "{last}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last["at"].as_f64().unwrap()).abs() < 60.0, "{last}");

    let (code, out, _) = run(
        &["status", "--control-socket", &socket_arg(&grace)],
        grace.dir.path(),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("grace pid {}: running, generation 1", grace.pid())),
        "{out}"
    );
    assert!(out.contains("last reload: rejected at"), "{out}");
}

#[test]
fn several_clients_at_once_are_all_answered_while_one_stays_silent() {
    let grace = Grace::start_controlled(&config("m", "", ""));
    // A silent client holds its own connection, nothing else.
    let _silent = UnixStream::connect(grace.control_socket()).unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let path = grace.control_socket();
            std::thread::spawn(move || {
                let cmd = if i % 2 == 0 { "status" } else { "reload" };
                support::control_lines(&path, &format!(r#"{{"cmd":"{cmd}"}}"#))
            })
        })
        .collect();
    for t in threads {
        let reply = t.join().unwrap();
        assert_eq!(reply.len(), 1);
        assert_eq!(reply[0]["ok"], true, "{reply:?}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "answers waited for the silent client: {:?}",
        start.elapsed()
    );
}

#[test]
fn junk_oversized_and_silent_clients_get_an_error_and_the_server_serves_on() {
    let grace = Grace::start_controlled(&config("m", "", ""));
    let reply = grace.control("hello");
    assert_eq!(reply[0]["kind"], "bad_request", "{reply:?}");
    assert!(reply[0]["message"]
        .as_str()
        .unwrap()
        .contains("commands: status, reload, upgrade, stop"));
    let reply = grace.control(r#"{"cmd":"reload","forse":true}"#);
    assert_eq!(reply[0]["kind"], "bad_request", "{reply:?}");
    let reply = grace.control(r#"{"cmd":"explode"}"#);
    assert_eq!(reply[0]["kind"], "bad_request", "{reply:?}");
    let reply = grace.control(&"x".repeat(100_000));
    assert_eq!(reply[0]["kind"], "bad_request", "{reply:?}");
    // Not UTF-8.
    let mut s = UnixStream::connect(grace.control_socket()).unwrap();
    s.write_all(b"\xff\xfe\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.contains("bad_request"), "{text}");

    // Says nothing: timed out with an error line, then closed.
    let mut silent = UnixStream::connect(grace.control_socket()).unwrap();
    silent.set_read_timeout(Some(SOON)).unwrap();
    let start = Instant::now();
    let mut text = String::new();
    silent.read_to_string(&mut text).unwrap();
    let waited = start.elapsed();
    assert!(text.contains(r#""kind":"timeout""#), "{text}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    // Connects and hangs up at once: nothing to answer, nothing breaks.
    drop(UnixStream::connect(grace.control_socket()).unwrap());

    assert_eq!(grace.control(r#"{"cmd":"status"}"#)[0]["ok"], true);
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn a_peer_with_another_uid_is_refused_and_logged() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client under another uid");
        return;
    }
    let grace = Grace::start_controlled(&config("m", "", ""));
    // The directory must be traversable by the other uid.
    std::fs::set_permissions(grace.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let socket = socket_arg(&grace);
    // A copy the other uid can run wherever the build directory is (CI may
    // build under a directory only root can enter).
    let client = grace.dir.path().join("grace-client");
    std::fs::copy(support::BIN, &client).unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&client)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Mode 0600: the kernel refuses the connect itself.
    let (code, err) = as_nobody(&["status", "--control-socket", &socket]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Permission denied"), "{err}");

    // Even if someone loosens the mode, the server checks the peer's uid.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = as_nobody(&["stop", "--control-socket", &socket]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("uid 65534 may not control this server"),
        "{err}"
    );
    let line = grace.log().wait_for("control connection refused");
    assert!(line.contains("peer_uid=65534"), "{line}");
    assert_eq!(grace.control(r#"{"cmd":"status"}"#)[0]["phase"], "running");
}

#[test]
fn a_live_socket_is_refused_a_stale_one_is_replaced_and_exit_removes_it() {
    let mut first = Grace::start_controlled(&config("m", "", ""));
    let socket = socket_arg(&first);

    // A second server on the same control socket refuses to start.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("g.toml"), config("m", "", "")).unwrap();
    let out = Command::new(support::BIN)
        .args(["--config", "g.toml", "--control-socket", &socket])
        .current_dir(other.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another server is running and answering on it"),
        "{err}"
    );
    assert_eq!(first.control(r#"{"cmd":"status"}"#)[0]["ok"], true);

    // Killed: the socket file stays behind, stale.
    first.signal(rustix::process::Signal::KILL);
    first.wait_exit(SOON);
    assert!(first.control_socket().exists());
    let mut second = Command::new(support::BIN)
        .args(["--config", "g.toml", "--control-socket", &socket])
        .current_dir(other.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let path = first.control_socket();
    support::eventually(SOON, "the new server to answer", || {
        let lines =
            std::panic::catch_unwind(|| support::control_lines(&path, r#"{"cmd":"status"}"#))
                .ok()?;
        (lines[0]["pid"] == second.id()).then_some(())
    });
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Stopped: the socket is gone.
    let reply = support::control_lines(&path, r#"{"cmd":"stop"}"#);
    assert_eq!(reply[0]["reply"], "stopping");
    assert_eq!(wait_child(&mut second, SOON).unwrap().code(), Some(0));
    let mut log = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("removing a stale control socket"), "{log}");
    assert!(!path.exists(), "the socket must be removed at exit");
}

#[test]
fn stop_wait_follows_the_drain_until_the_process_exits() {
    let mut grace = Grace::start_controlled(&config(
        "m",
        "",
        "[[routes]]\npath = \"/slow\"\ndelay = \"1500ms\"\nbody = \"done\"\n",
    ));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    support::eventually(SOON, "the slow request in flight", || {
        let s = &grace.control(r#"{"cmd":"status"}"#)[0];
        (s["requests"] == 1).then_some(())
    });
    let (code, out, err) = run(
        &["stop", "--wait", "--control-socket", &socket_arg(&grace)],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("stopping: drain started; 1 connection(s), 1 request(s) in flight"),
        "{out}"
    );
    assert!(
        lines.last().unwrap().starts_with("exited: drained in"),
        "{out}"
    );
    assert_eq!(slow.recv().unwrap().body, "done");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn stop_wait_as_json_streams_progress_and_the_exit() {
    let mut grace = Grace::start_controlled(&config(
        "m",
        "",
        "[[routes]]\npath = \"/slow\"\ndelay = \"2500ms\"\nbody = \"done\"\n",
    ));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    support::eventually(SOON, "the slow request in flight", || {
        (grace.control(r#"{"cmd":"status"}"#)[0]["requests"] == 1).then_some(())
    });
    let lines = grace.control(r#"{"cmd":"stop","wait":true}"#);
    assert_eq!(lines[0]["reply"], "stopping", "{lines:?}");
    assert_eq!(lines[0]["requests"], 1);
    let deadline = lines[0]["deadline_secs"].as_f64().unwrap();
    assert!(deadline > 25.0 && deadline <= 30.0, "{deadline}");
    // Progress comes every second while the request (2.5 s) is in flight;
    // once it ends the connection closes and the process exits at once.
    assert!(
        lines
            .iter()
            .any(|l| l["reply"] == "progress" && l["requests"] == 1),
        "{lines:?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["reply"], "exited");
    assert_eq!(last["outcome"], "drained");
    assert_eq!(last["ok"], true);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert_eq!(slow.recv().unwrap().body, "done");
}

#[test]
fn upgrade_answers_with_the_new_pid_which_then_owns_the_socket() {
    let grace = Grace::start_controlled(&config("m", "", ""));
    let old = grace.pid();
    let reply = grace.control(r#"{"cmd":"upgrade"}"#);
    assert_eq!(reply[0]["reply"], "upgraded", "{reply:?}");
    let new = reply[0]["pid"].as_u64().unwrap() as u32;
    assert_ne!(new, old);
    let status = &grace.control(r#"{"cmd":"status"}"#)[0];
    assert_eq!(status["pid"], new, "the path now reaches the new process");
    assert_eq!(status["phase"], "running");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
    let reply = grace.control(r#"{"cmd":"stop"}"#);
    assert_eq!(reply[0]["reply"], "stopping");
}

#[test]
fn without_a_socket_commands_signal_and_say_no_verdict_is_available() {
    let grace = Grace::start(&config("a", "", ""));
    let pid_file = grace.pid_file();
    let (code, out, _) = run(
        &["status", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("grace is running (pid {})", grace.pid())),
        "{out}"
    );
    let (code, out, _) = run(
        &["reload", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0);
    assert!(out.contains("a signal carries no verdict"), "{out}");
    let (code, _, err) = run(&["reload"], grace.dir.path());
    assert_eq!(code, 64, "{err}");
}

#[test]
fn an_upgrade_hands_over_the_admin_address_too() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap();
    drop(admin);
    let grace = Grace::start_controlled(&config(
        "m",
        &format!("admin_listen = \"{admin_addr}\""),
        "",
    ));
    let before = support::parse_metrics(&get(admin_addr, "/metrics").unwrap().body);
    let reply = grace.control(r#"{"cmd":"upgrade"}"#);
    assert_eq!(reply[0]["reply"], "upgraded", "{reply:?}");
    assert_eq!(before["grace_upgrades_total{result=\"succeeded\"}"], 0.0);
    // From now on the old process counts one successful upgrade, the new one
    // none: a scrape showing none comes from the new process. The old one
    // drains and exits; the address answers throughout.
    support::eventually(SOON, "the new process on the admin address", || {
        let res = get(admin_addr, "/metrics").unwrap();
        assert_eq!(res.status, 200);
        let m = support::parse_metrics(&res.body);
        (m["grace_upgrades_total{result=\"succeeded\"}"] == 0.0).then_some(())
    });
}

#[test]
fn a_silent_control_client_does_not_hold_up_the_exit() {
    let mut grace = Grace::start_controlled(&config("m", "", ""));
    let mut silent = UnixStream::connect(grace.control_socket()).unwrap();
    silent.set_read_timeout(Some(SOON)).unwrap();
    // Its connection is accepted before the stop (the accept loop is quick,
    // but make sure: a status on another connection is answered after it).
    grace.control(r#"{"cmd":"status"}"#);
    grace.signal(rustix::process::Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    // The process went away without waiting out the 5 s request timeout:
    // the client sees the connection end, not a timeout reply.
    let mut text = String::new();
    let _ = silent.read_to_string(&mut text);
    assert!(!text.contains("timeout"), "{text}");
    assert!(!grace.control_socket().exists());
}

#[test]
fn a_failed_upgrade_says_why_and_the_old_process_keeps_the_socket() {
    let grace = Grace::start_controlled(&config("m", "", ""));
    // The new process will read this and refuse it (exit 78).
    grace.write_config("message = 42\n");
    let (code, _, err) = run(
        &["upgrade", "--control-socket", &socket_arg(&grace)],
        grace.dir.path(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("upgrade failed; this process keeps serving")
            && err.contains("exited before it was ready"),
        "{err}"
    );
    let status = &grace.control(r#"{"cmd":"status"}"#)[0];
    assert_eq!(status["pid"], grace.pid());
    assert_eq!(status["phase"], "running");
    let m = support::parse_metrics(&get(grace.addr(), "/metrics").unwrap().body);
    assert_eq!(m["grace_upgrades_total{result=\"failed\"}"], 1.0);
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

/// A path of exactly `len` bytes for a socket in a new directory.
fn socket_path_of_len(dir: &std::path::Path, len: usize) -> String {
    let base = dir.to_str().unwrap().len() + 1;
    assert!(len > base + 1, "the temporary directory's path is too long");
    let path = format!("{}/{}", dir.display(), "s".repeat(len - base));
    assert_eq!(path.len(), len);
    path
}

#[test]
fn a_control_socket_path_that_fits_no_socket_address_is_refused_with_73() {
    // sun_path holds 108 bytes with the terminating NUL: 107 is the longest.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), config("m", "", "")).unwrap();
    let longest = socket_path_of_len(dir.path(), 107);
    let grace = Grace::start_program(
        std::path::Path::new(support::BIN),
        tempfile::tempdir().unwrap(),
        &config("m", "", ""),
        &["--control-socket", &longest],
        &[],
    );
    let (code, out, err) = run(&["status", "--control-socket", &longest], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("grace pid {}", grace.pid())), "{out}");
    drop(grace);

    let too_long = socket_path_of_len(dir.path(), 108);
    let mut child = Command::new(support::BIN)
        .args(["--config", "g.toml", "--control-socket", &too_long])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, SOON);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("grace started on a 108-byte path:\n{err}"));
    assert_eq!(status.code(), Some(73), "{err}");
    let expected = format!(
        "control socket {too_long}: the path is 108 bytes long; a unix socket address holds at most 107"
    );
    assert!(err.contains(&expected), "{err}");
    assert!(!std::path::Path::new(&too_long).exists());

    // `check` says so for a path in the configuration.
    std::fs::write(
        dir.path().join("long.toml"),
        format!("[server]\ncontrol_socket = \"{too_long}\"\n"),
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", "long.toml"], dir.path());
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("long.toml:2:18: `control_socket` is 108 bytes long; a unix socket address holds at most 107"),
        "{err}"
    );

    // And a client given such a path says why it cannot connect.
    let (code, _, err) = run(&["status", "--control-socket", &too_long], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains(&expected), "{err}");
}
