//! Signals and the process: storms, signals at awkward moments, clients that
//! vanish mid-write, and stdout/stderr that are closed or full.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::http::{get, Conn};
use support::{config, free_addr, wait_child, wait_serving, Grace, BIN, SOON};

const FORCED: i32 = 75;

fn slow_route(delay: &str) -> String {
    format!("[[routes]]\npath = \"/slow\"\ndelay = \"{delay}\"\nbody = \"slow done\"\n")
}

fn big_route(bytes: usize) -> String {
    format!(
        "[[routes]]\npath = \"/big\"\nbody = \"{}\"\n",
        "x".repeat(bytes)
    )
}

#[test]
fn a_burst_of_1000_hups_then_sigterm_exits_0_after_serving_the_latest_config() {
    let mut grace = Grace::start(&config("v0", "", &slow_route("1s")));
    for i in 1..=1000 {
        if i % 250 == 0 {
            grace.write_config(&config(&format!("v{i}"), "", &slow_route("1s")));
        }
        grace.signal(Signal::HUP);
    }
    support::eventually(SOON, "the latest config to serve", || {
        (get(grace.addr(), "/").unwrap().body == "v1000").then_some(())
    });
    // A request in flight when the SIGTERM comes is finished, on the latest
    // configuration.
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    grace.signal(Signal::TERM);
    assert_eq!(slow.recv().unwrap().body, "slow done");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert!(grace.log().count("reload accepted") < 100);
}

#[test]
fn sigterm_straight_after_a_burst_of_1000_hups_exits_0() {
    let mut grace = Grace::start(&config("v0", "", ""));
    grace.write_config(&config("v1", "", ""));
    for _ in 0..1000 {
        grace.signal(Signal::HUP);
    }
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    grace.log().wait_for("exiting code=0");
}

#[test]
fn sigterm_during_a_reload_finishes_the_drain_and_exits_0() {
    // A large file (many routes) makes each load take a while, so the
    // SIGTERM lands while one runs.
    let routes: String = (0..8000)
        .map(|i| format!("[[routes]]\npath = \"/r{i}\"\nbody = \"{i}\"\n"))
        .collect();
    let mut grace = Grace::start(&config("v0", "", &(slow_route("1s") + &routes)));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    grace.write_config(&config("v1", "", &(slow_route("1s") + &routes)));
    grace.signal(Signal::HUP);
    grace.signal(Signal::TERM);
    assert_eq!(slow.recv().unwrap().body, "slow done");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    let log = grace.log().text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sigusr2_during_the_drain_is_refused_and_the_drain_completes() {
    let mut grace = Grace::start(&config("m", "", &slow_route("2s")));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    grace.signal(Signal::TERM);
    grace.log().wait_for("drain started");
    grace.signal(Signal::USR2);
    grace.log().wait_for("the server is shutting down");
    assert_eq!(slow.recv().unwrap().body, "slow done");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert_eq!(grace.log().count("upgrade: the new process is ready"), 0);
}

#[test]
fn sigint_twice_in_quick_succession_cuts_the_rest_at_once_or_at_the_deadline() {
    let mut grace = Grace::start(&config(
        "m",
        "shutdown_timeout = \"5s\"",
        &slow_route("60s"),
    ));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    // Whether or not the server has read it yet, an accepted connection's
    // first request is served during the drain: it is in flight either way.
    let sent = Instant::now();
    grace.signal(Signal::INT);
    grace.signal(Signal::INT);
    // Two deliveries of one signal that arrive before the first is handled
    // are one signal to the kernel: then the deadline cuts. Either way the
    // process exits by itself, with the forced status, well before the slow
    // request would have finished.
    assert_eq!(grace.wait_exit(SOON).code(), Some(FORCED));
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "{:?}",
        sent.elapsed()
    );
    grace.log().wait_for("signal received: SIGINT");
    assert!(slow.recv().is_err());
}

#[test]
fn sigint_twice_with_nothing_in_flight_exits_by_itself() {
    let mut grace = Grace::start(&config("m", "", ""));
    grace.signal(Signal::INT);
    grace.signal(Signal::INT);
    let status = grace.wait_exit(SOON);
    assert!(
        matches!(status.code(), Some(0) | Some(FORCED)),
        "{status:?}"
    );
    assert!(!grace.pid_file().exists());
}

#[test]
fn clients_gone_mid_write_never_kill_the_process() {
    let grace = Grace::start(&config("alive", "", &big_route(600_000)));
    for _ in 0..100 {
        let mut s = TcpStream::connect(grace.addr()).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 16];
        s.read_exact(&mut first).unwrap();
        // Closing with unread data sends a reset: the server's next write
        // fails with EPIPE/ECONNRESET (SIGPIPE, were it not ignored).
        drop(s);
    }
    assert_eq!(get(grace.addr(), "/").unwrap().body, "alive");
    // And over HTTP/2.
    for _ in 0..20 {
        let mut h2 = support::h2::H2::open(grace.addr()).unwrap();
        h2.send(&support::h2::get(1, "/big")).unwrap();
        let _ = h2.next();
        drop(h2);
    }
    assert_eq!(get(grace.addr(), "/").unwrap().body, "alive");
    assert_eq!(grace.log().count("panicked"), 0);
}

/// Starts grace with a fixed address and custom stdio; returns the child.
fn spawn_with(
    addr: std::net::SocketAddr,
    dir: &tempfile::TempDir,
    log_level: &str,
    wrap: impl FnOnce(&mut Command),
) -> std::process::Child {
    let path = dir.path().join("grace.toml");
    std::fs::write(
        &path,
        format!("message = \"m\"\n[server]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", log_level)
        .stdin(Stdio::null());
    wrap(&mut command);
    command.spawn().unwrap()
}

/// Connections that send garbage: each is a debug log line.
fn log_noise(addr: std::net::SocketAddr, n: usize) {
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn a_full_stderr_does_not_stop_serving_and_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    // stderr is a pipe nobody reads until the end: it fills after 64 KiB.
    let mut child = spawn_with(addr, &dir, "trace", |c| {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
    });
    wait_serving(addr);
    log_noise(addr, 300);
    // HTTP/2 at trace level logs dozens of lines per request.
    for _ in 0..300 {
        let mut h2 = support::h2::H2::open(addr).unwrap();
        let (status, body) = h2.request(1, "/").expect("h2 request");
        assert_eq!((status, body.as_slice()), (0x88, b"m".as_slice()));
    }
    for _ in 0..50 {
        assert_eq!(get(addr, "/").unwrap().body, "m");
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_child(&mut child, SOON).expect("grace exits");
    assert_eq!(status.code(), Some(0));
    let text = reader.join().unwrap();
    assert!(
        text.contains("log lines dropped"),
        "expected a report of dropped lines; got {} bytes",
        text.len()
    );
}

#[test]
fn closed_stdout_and_stderr_do_not_stop_serving_or_leak_logs_into_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let path = dir.path().join("grace.toml");
    std::fs::write(
        &path,
        format!("message = \"m\"\n[server]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    // The shell closes descriptors 1 and 2, then execs grace.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" --config \"$1\" >&- 2>&-")
        .arg(BIN)
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_serving(addr);
    for fd in [1, 2] {
        let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", child.id())).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
    }
    log_noise(addr, 200);
    let mut conn = Conn::open(addr).unwrap();
    for _ in 0..200 {
        // A log line in a response would break its parse.
        assert_eq!(conn.get("/").unwrap().body, "m");
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    drop(conn);
    let status = wait_child(&mut child, SOON).expect("grace exits");
    assert_eq!(status.code(), Some(0));
}

/// Waits for a log line with `needle`, failing at once if grace died.
fn wait_alive_for(grace: &mut Grace, needle: &str, cause: &str) {
    support::eventually(SOON, needle, || {
        if !grace.is_running() {
            let status = grace.wait_exit(SOON);
            panic!(
                "{cause} killed grace ({status}); log:\n{}",
                grace.log().text()
            );
        }
        (grace.log().count(needle) > 0).then_some(())
    });
}

#[test]
fn signals_without_a_use_are_ignored_and_logged_while_a_request_completes() {
    let mut grace = Grace::start(&config("m", "", &slow_route("2s")));
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    for (signal, name) in [
        (Signal::USR1, "SIGUSR1"),
        (Signal::ALARM, "SIGALRM"),
        (Signal::VTALARM, "SIGVTALRM"),
        (Signal::PROF, "SIGPROF"),
        (Signal::IO, "SIGIO"),
        (Signal::XFSZ, "SIGXFSZ"),
        (Signal::STKFLT, "SIGSTKFLT"),
    ] {
        grace.signal(signal);
        wait_alive_for(&mut grace, &format!("signal ignored: {name}"), name);
    }
    assert_eq!(slow.recv().unwrap().body, "slow done");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
    assert_eq!(grace.log().count("shutdown started"), 0);
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn sigpwr_and_sigxcpu_stop_gracefully_and_the_request_in_flight_completes() {
    for (signal, name) in [(Signal::POWER, "SIGPWR"), (Signal::XCPU, "SIGXCPU")] {
        let mut grace = Grace::start(&config("m", "", &slow_route("1s")));
        let mut slow = Conn::open(grace.addr()).unwrap();
        slow.send("/slow").unwrap();
        grace.signal(signal);
        wait_alive_for(&mut grace, "shutdown started", name);
        assert_eq!(slow.recv().unwrap().body, "slow done", "{name}");
        assert_eq!(grace.wait_exit(SOON).code(), Some(0), "{name}");
        assert!(grace
            .log()
            .text()
            .contains(&format!("signal received: {name}")));
        assert!(!grace.pid_file().exists(), "{name}: the pid file is left");
    }
}
