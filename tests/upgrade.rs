//! Zero-downtime upgrade: the same listening sockets pass to a new process,
//! under load, and a failed upgrade leaves the old process serving.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rustix::process::Signal;
use support::http::{get, Conn};
use support::load::Load;
use support::{config, eventually, parse_metrics, run, Grace, SOON};

fn upgrade(grace: &Grace) -> (i32, String, String) {
    let pid_file = grace.pid_file();
    run(
        &["upgrade", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    )
}

/// File descriptors of `pid`, by kind, leaving out client connections (they
/// come and go with the load): sockets count only when they are unix sockets
/// or listening TCP sockets, so a leaked listener duplicate or pipe shows.
fn fd_census(pid: u32) -> Vec<String> {
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    // Read after the descriptors: a socket that is gone by now was a
    // connection, and leaves no row, so it is not counted.
    let mut kept = BTreeSet::new();
    for (table, inode_col) in [("unix", 6), ("tcp", 9), ("tcp6", 9)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // In the TCP tables column 3 is the state: 0A is listening.
            let wanted = table == "unix" || cols.get(3) == Some(&"0A");
            if let (true, Some(inode)) = (wanted, cols.get(inode_col)) {
                kept.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let mut census: Vec<String> = fds
        .into_iter()
        .filter(|target| !target.starts_with("socket:") || kept.contains(target))
        // Kinds, not identities: inode numbers differ per process.
        .map(|target| target.split('[').next().unwrap_or_default().to_owned())
        .collect();
    census.sort();
    census
}

/// A private copy of the binary, so a test can replace the file at its path.
fn private_binary(dir: &Path) -> PathBuf {
    let path = dir.join("grace-bin");
    std::fs::copy(support::BIN, &path).unwrap();
    path
}

/// Replaces the file at `path` the way an installer does: write, then rename.
fn install(path: &Path, content: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn ten_upgrades_under_load_lose_no_request() {
    let mut grace = Grace::start(&config("m", "", ""));
    let addr = grace.addr();
    let first = grace.pid();
    let load = Load::start(addr, 3, 3, "m");
    eventually(SOON, "the load to get going", || {
        (load.ok() > 100).then_some(())
    });

    let mut census_after_first = None;
    let mut pids = vec![first];
    for i in 1..=10 {
        let (code, out, err) = upgrade(&grace);
        assert_eq!(code, 0, "upgrade {i}: {out}{err}");
        let live = grace.live_pid();
        assert!(
            out.contains(&format!("upgraded: pid {live} serves")),
            "{out}"
        );
        assert!(!pids.contains(&live), "upgrade {i} did not change the pid");
        pids.push(live);
        if i == 1 {
            census_after_first = Some(fd_census(live));
        }
        // Each old process drains and exits 0 (all share our stderr).
        grace.log().wait_count("exiting code=0", i, SOON);
    }
    let report = load.finish();
    assert_eq!(
        report.failed(),
        0,
        "failures across 10 upgrades: {:?} ({} ok)",
        report.failures,
        report.ok
    );
    assert!(
        report.ok > 1000,
        "too little load to prove anything: {}",
        report.ok
    );
    let mut ready_ms: Vec<f64> = grace
        .log()
        .text()
        .lines()
        .filter(|l| l.contains("the new process is ready"))
        .filter_map(|l| {
            l.split("elapsed_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    ready_ms.sort_by(f64::total_cmp);
    eprintln!(
        "10 upgrades under load (3 connection-per-request + 3 keep-alive clients, no retries): \
         {} requests ok, 0 failed; trigger-to-ready median {:.1} ms (min {:.1}, max {:.1})",
        report.ok,
        ready_ms[ready_ms.len() / 2],
        ready_ms[0],
        ready_ms[ready_ms.len() - 1]
    );
    assert_eq!(
        grace.wait_exit(SOON).code(),
        Some(0),
        "the first process exits 0"
    );

    let live = grace.live_pid();
    assert_eq!(
        live,
        *pids.last().unwrap(),
        "the pid file names the live process"
    );
    assert_eq!(get(addr, "/").unwrap().body, "m");
    assert_eq!(
        fd_census(live),
        census_after_first.unwrap(),
        "descriptors leaked across upgrades"
    );
    grace.signal_live(Signal::TERM);
    grace.log().wait_count("exiting code=0", 11, SOON);
}

#[test]
fn a_slow_request_on_the_old_process_completes_while_the_new_one_serves() {
    let grace = Grace::start(&config(
        "old",
        "",
        "[[routes]]\npath = \"/slow\"\ndelay = \"3s\"\nbody = \"slow done\"\n",
    ));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    // The new process reads the config anew: its answers tell it apart.
    grace.write_config(&config(
        "new",
        "",
        "[[routes]]\npath = \"/slow\"\ndelay = \"3s\"\nbody = \"slow done\"\n",
    ));
    let (code, out, err) = upgrade(&grace);
    assert_eq!(code, 0, "{out}{err}");
    // Until the old process closes its listener, both accept on the shared
    // socket (a connection either takes is served); after, only the new one.
    grace.log().wait_for("drain started");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "new");
    assert_eq!(
        grace.log().count("exiting code=0"),
        0,
        "the old one is still draining"
    );
    let res = slow.recv().unwrap();
    assert_eq!((res.status, res.body.as_str()), (200, "slow done"));
    grace.log().wait_for("exiting code=0");
}

#[test]
fn a_new_binary_that_exits_leaves_the_old_one_serving_and_the_next_upgrade_works() {
    let dir = tempfile::tempdir().unwrap();
    let program = private_binary(dir.path());
    let grace = Grace::start_program(&program, dir, &config("m", "", ""), &[], &[]);
    let load = Load::start(grace.addr(), 2, 2, "m");
    eventually(SOON, "the load to get going", || {
        (load.ok() > 50).then_some(())
    });

    let good = std::fs::read(&program).unwrap();
    install(&program, b"#!/bin/sh\nexit 1\n", 0o755);
    let (code, _, err) = upgrade(&grace);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("exited before it was ready: exit status: 1"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {} keeps serving", grace.pid())),
        "{err}"
    );
    assert_eq!(grace.live_pid(), grace.pid());

    // Put the real binary back: the next upgrade can go at once.
    install(&program, &good, 0o755);
    let (code, out, err) = upgrade(&grace);
    assert_eq!(code, 0, "{out}{err}");
    let report = load.finish();
    assert_eq!(report.failed(), 0, "{:?}", report.failures);
}

fn generation(addr: std::net::SocketAddr) -> f64 {
    let res = get(addr, "/metrics").unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    parse_metrics(&res.body)["grace_config_generation"]
}

#[test]
fn generations_keep_counting_up_across_an_upgrade() {
    // A variable left in the shell is not a grace parent's word: ignored.
    let grace = Grace::start_env(&config("m", "", ""), &[("GRACE_GENERATION", "500")]);
    let addr = grace.addr();
    assert_eq!(generation(addr), 1.0);
    grace.signal(Signal::HUP);
    grace.log().wait_for("reload accepted");
    assert_eq!(generation(addr), 2.0);

    let (code, out, err) = upgrade(&grace);
    assert_eq!(code, 0, "{out}{err}");
    let new = grace.live_pid();
    // Once the old process closed its listener, only the new one answers.
    grace.log().wait_for("drain started");
    assert_eq!(generation(addr), 3.0, "the new process continues from 2");
    let ready = grace.log().wait_for(&format!("INFO ready pid={new}"));
    assert!(ready.contains("generation=3"), "{ready}");

    grace.signal_live(Signal::HUP);
    grace.log().wait_for("reload accepted generation=4");
    assert_eq!(generation(addr), 4.0);
    grace.signal_live(Signal::TERM);
    grace.log().wait_count("exiting code=0", 2, SOON);
}

#[test]
fn an_invalid_config_fails_the_upgrade_with_78() {
    let mut grace = Grace::start(&config("m", "", ""));
    grace.write_config("message = \n");
    let (code, _, err) = upgrade(&grace);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exit status: 78"), "{err}");
    assert!(grace.is_running());
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn a_new_process_that_never_gets_ready_is_stopped_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let program = private_binary(dir.path());
    let grace = Grace::start_program(
        &program,
        dir,
        &config("m", "upgrade_timeout = \"1s\"", ""),
        &[],
        &[],
    );
    install(&program, b"#!/bin/sh\nexec sleep 60\n", 0o755);
    // A second trigger while the first is under way is refused.
    grace.signal(Signal::USR2);
    grace.log().wait_for("waiting for it to be ready");
    grace.signal(Signal::USR2);
    grace.log().wait_for("an upgrade is already in progress");
    let line = grace
        .log()
        .wait_for("was not ready within 1.0s; stopped it");
    assert!(line.contains("keeps serving"), "{line}");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn an_upgrade_during_shutdown_is_refused() {
    let grace = Grace::start(&config("m", "shutdown_delay = \"2s\"", ""));
    grace.signal(Signal::TERM);
    grace.log().wait_for("shutdown started");
    let (code, _, err) = upgrade(&grace);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the server is shutting down"), "{err}");
}

/// Runs grace the way systemd would: `LISTEN_FDS` with a listening socket at
/// descriptor 3, through a tiny exec harness (python3's os.dup2 + execve).
fn activate(sock_kind: &str, extra_env: &str) -> (std::process::Child, tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    std::fs::write(
        dir.path().join("grace.toml"),
        format!("message = \"activated\"\n[server]\nlisten = [\"127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let script = format!(
        r#"
import os, socket, sys
kind = "{sock_kind}"
if kind == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", {port})); s.listen(64); fd = s.fileno()
elif kind == "file":
    fd = os.open(sys.argv[1], os.O_RDONLY)
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
{extra_env}
os.execv(sys.argv[2], [sys.argv[2], "--config", sys.argv[1]])
"#
    );
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("grace.toml"))
        .arg(support::BIN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the activation harness");
    (child, dir, port)
}

#[test]
fn socket_activation_serves_on_the_inherited_socket_without_binding() {
    let (mut child, _dir, port) = activate("tcp", "");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let res = eventually(SOON, "the activated server to answer", || {
        get(addr, "/").ok()
    });
    assert_eq!(res.body, "activated");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    let status = support::wait_child(&mut child, SOON).unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("using inherited socket"), "{log}");
}

#[test]
fn socket_activation_rejects_what_is_not_a_listening_socket() {
    for (kind, env, expected) in [
        ("file", "", "inherited descriptor 3: not a socket"),
        (
            "tcp",
            "os.environ['LISTEN_FDS'] = 'two'",
            "LISTEN_FDS=\"two\": not a number",
        ),
        (
            "tcp",
            "os.environ['LISTEN_FDNAMES'] = 'a:b'",
            "does not name as many descriptors",
        ),
    ] {
        let (mut child, _dir, _) = activate(kind, env);
        let status = support::wait_child(&mut child, SOON).expect("grace exits");
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
        assert_eq!(status.code(), Some(71), "{kind}/{env}: {log}");
        assert!(log.contains(expected), "{kind}/{env}: {log}");
    }
}

#[test]
fn systemd_socket_activate_hands_grace_its_socket() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs systemd-socket-activate (package systemd)"
        );
        eprintln!("skipped: systemd-socket-activate is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    std::fs::write(
        dir.path().join("grace.toml"),
        format!("message = \"from systemd\"\n[server]\nlisten = [\"{addr}\"]\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(addr.to_string())
        .arg(support::BIN)
        .arg("--config")
        .arg(dir.path().join("grace.toml"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // systemd-socket-activate listens first and starts grace on the first
    // connection: this request travels through the activation itself.
    let res = eventually(SOON, "grace to answer through activation", || {
        get(addr, "/").ok()
    });
    assert_eq!(res.body, "from systemd");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    let status = support::wait_child(&mut child, SOON).unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("using inherited socket"), "{log}");
}

/// Whether `pid` is a live `sleep` (a zombie is gone: it holds no
/// descriptors any more, and waits only for its parent to reap it).
fn sleep_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().next());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    state != Some("Z") && cmdline.starts_with(b"sleep\0")
}

/// Live processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the name: state, ppid, pgrp.
            let fields: Vec<&str> = stat
                .rsplit_once(") ")
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

/// The pids a script wrote with `echo $$ $! > "$0.pids"`: its own, and the
/// grandchild of grace it forked.
fn attempt_pids(program: &Path) -> Vec<u32> {
    let path = program.with_extension("pids");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the new program wrote no {}: {e}", path.display()));
    text.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// An upgrade to `script` fails with `expected`; then nothing of the attempt
/// may be left: not its process, not the grandchild it forked with our
/// listening socket. Proven by the socket: after a stop, the port refuses
/// connections, and a new server binds it.
fn a_failed_attempt_leaves_nothing(script: &[u8], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let program = private_binary(dir.path());
    let addr = support::free_addr();
    let config =
        format!("message = \"m\"\n[server]\nlisten = [\"{addr}\"]\nupgrade_timeout = \"2s\"\n");
    let mut grace = Grace::start_program(&program, dir, &config, &[], &[]);
    install(&program, script, 0o755);
    let (code, _, err) = upgrade(&grace);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(expected), "{err}");

    let pids = attempt_pids(&program);
    assert_eq!(pids.len(), 2, "{pids:?}");
    for pid in &pids {
        assert!(
            !sleep_alive(*pid),
            "pid {pid} of the failed attempt outlived the verdict ({pids:?})"
        );
    }
    let left = group_members(pids[0]);
    assert!(
        left.is_empty(),
        "the attempt's process group lives on: {left:?}"
    );
    assert_eq!(
        get(addr, "/").unwrap().body,
        "m",
        "the old process serves on"
    );

    // From another thread: we are grace's parent and must reap it, or the
    // client would wait on a zombie.
    let pid_file = grace.pid_file();
    let cwd = grace.dir.path().to_owned();
    let stop = std::thread::spawn(move || {
        run(
            &["stop", "--wait", "--pid-file", pid_file.to_str().unwrap()],
            &cwd,
        )
    });
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    let (code, out, err) = stop.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let refused = std::net::TcpStream::connect(addr).map(|_| ()).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "after the stop, {addr} must refuse: {refused}"
    );
    let again = Grace::start(&config);
    assert_eq!(again.addr(), addr);
    assert_eq!(get(addr, "/").unwrap().body, "m");
}

#[test]
fn a_new_program_that_never_gets_ready_is_stopped_with_its_children() {
    a_failed_attempt_leaves_nothing(
        b"#!/bin/sh\nsleep 600 &\necho $$ $! > \"$0.pids\"\nexec sleep 1000\n",
        "was not ready within 2.0s; stopped it",
    );
}

#[test]
fn a_new_program_that_exits_is_stopped_with_its_children() {
    a_failed_attempt_leaves_nothing(
        b"#!/bin/sh\nsleep 600 &\necho $$ $! > \"$0.pids\"\nexit 1\n",
        "exited before it was ready: exit status: 1",
    );
}

#[test]
fn a_shutdown_during_an_upgrade_logs_the_verdict_before_the_exit_line() {
    let dir = tempfile::tempdir().unwrap();
    let program = private_binary(dir.path());
    let mut grace = Grace::start_program(
        &program,
        dir,
        &config("m", "upgrade_timeout = \"60s\"", ""),
        &[],
        &[],
    );
    // It ignores SIGTERM, so stopping it takes the whole grace period: the
    // verdict comes well after the drain (nothing in flight) is over.
    install(
        &program,
        b"#!/bin/sh\ntrap '' TERM\necho $$ > \"$0.pids\"\nexec sleep 600\n",
        0o755,
    );
    grace.signal(Signal::USR2);
    // Past the trap: a SIGTERM before it would stop the script at once.
    eventually(SOON, "the new program to start", || {
        program.with_extension("pids").exists().then_some(())
    });
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    grace.log().wait_for("exiting code=0");
    let text = grace.log().text();
    let lines: Vec<&str> = text.lines().collect();
    let verdict = lines
        .iter()
        .position(|l| l.contains("upgrade not done"))
        .unwrap_or_else(|| panic!("no verdict for the upgrade in the log:\n{text}"));
    assert!(
        lines[verdict].contains("the server is shutting down"),
        "{}",
        lines[verdict]
    );
    assert!(
        lines.last().unwrap().contains("exiting code=0"),
        "the exit line is not the last:\n{text}"
    );
    let pid = attempt_pids(&program)[0];
    assert!(!sleep_alive(pid), "the new process (pid {pid}) outlived us");
}
