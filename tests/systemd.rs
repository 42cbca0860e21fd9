//! The systemd notification protocol, checked on a real unix datagram socket
//! bound by the test, as systemd would bind it.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use rustix::process::Signal;
use support::{config, run, Grace, SOON};

/// A stand-in for systemd's notification socket.
struct Manager {
    socket: UnixDatagram,
    _dir: Option<tempfile::TempDir>,
    env: String,
}

impl Manager {
    fn path() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(SOON)).unwrap();
        Manager {
            socket,
            env: path.display().to_string(),
            _dir: Some(dir),
        }
    }

    fn abstract_socket() -> Manager {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("grace-test-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_read_timeout(Some(SOON)).unwrap();
        Manager {
            socket,
            env: format!("@{name}"),
            _dir: None,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// The next message that is not a renewal of the stop timeout.
    fn next_event(&self) -> String {
        loop {
            let m = self.next();
            if !m.starts_with("EXTEND_TIMEOUT_USEC=") {
                return m;
            }
        }
    }

    fn nothing_pending(&self) -> bool {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let pending = self.socket.recv(&mut buf).is_ok();
        self.socket.set_nonblocking(false).unwrap();
        !pending
    }
}

fn monotonic_usec() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000
}

fn assert_reloading(message: &str, before: u128, after: u128) {
    let usec: u128 = message
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not a RELOADING message: {message:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC at the reload ({before}..={after})"
    );
}

#[test]
fn start_reloads_and_shutdown_follow_type_notify_reload() {
    let manager = Manager::path();
    let mut grace = Grace::start_env(
        &config("one", "", ""),
        &[("NOTIFY_SOCKET", manager.env.as_str())],
    );
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving generation 1\n");

    // Accepted reload: one datagram when it starts, READY=1 when it ends.
    grace.write_config(&config("two", "", ""));
    let before = monotonic_usec();
    grace.signal(Signal::HUP);
    let reloading = manager.next();
    assert_reloading(&reloading, before, monotonic_usec());
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving generation 2\n");

    // Rejected reload: READY=1 all the same, with a STATUS saying why.
    grace.write_config("message = 3\n");
    let before = monotonic_usec();
    grace.signal(Signal::HUP);
    assert_reloading(&manager.next(), before, monotonic_usec());
    let status = manager.next();
    assert!(
        status.starts_with("READY=1\nSTATUS=reload rejected, serving generation 2: ")
            && status.contains("grace.toml:1:11: invalid type: integer `3`, expected a string"),
        "{status:?}"
    );

    grace.signal(Signal::TERM);
    let stopping = manager.next();
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS=shutting down: "),
        "{stopping:?}"
    );
    let extend = manager.next();
    let usec: u64 = extend
        .strip_prefix("EXTEND_TIMEOUT_USEC=")
        .and_then(|r| r.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("{extend:?}"));
    // shutdown_timeout (30 s) plus slack: systemd must not cut our drain.
    assert!(usec > 30_000_000, "{usec}");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn an_abstract_notify_socket_works_too() {
    let manager = Manager::abstract_socket();
    let mut grace = Grace::start_env(
        &config("m", "", ""),
        &[("NOTIFY_SOCKET", manager.env.as_str())],
    );
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving generation 1\n");
    grace.signal(Signal::TERM);
    assert!(manager.next().starts_with("STOPPING=1\n"));
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn an_upgrade_hands_mainpid_to_the_new_process_and_the_old_one_stays_quiet() {
    let manager = Manager::path();
    let grace = Grace::start_env(
        &config("m", "", ""),
        &[("NOTIFY_SOCKET", manager.env.as_str())],
    );
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving generation 1\n");
    let pid_file = grace.pid_file();
    let (code, out, err) = run(
        &["upgrade", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let new = grace.live_pid();
    assert_eq!(
        manager.next(),
        // Its generation continues from the old process's.
        format!("MAINPID={new}\nREADY=1\nSTATUS=serving generation 2\n")
    );
    // The old process drains without telling systemd the service stops.
    grace.log().wait_for("exiting code=0");
    assert!(
        manager.nothing_pending(),
        "the old process must not send STOPPING=1"
    );

    // The new one is the service now: its reloads and shutdown are reported.
    grace.signal_live(Signal::HUP);
    assert!(manager.next_event().starts_with("RELOADING=1\n"));
    assert_eq!(
        manager.next_event(),
        "READY=1\nSTATUS=serving generation 3\n"
    );
    grace.signal_live(Signal::TERM);
    assert!(manager.next_event().starts_with("STOPPING=1\n"));
    grace.log().wait_count("exiting code=0", 2, SOON);
}

#[test]
fn the_watchdog_is_fed_at_half_its_interval() {
    let manager = Manager::path();
    let grace = Grace::start_env(
        &config("m", "", ""),
        &[
            ("NOTIFY_SOCKET", manager.env.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving generation 1\n");
    let start = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(manager.next(), "WATCHDOG=1\n");
    }
    // Three pings at 100 ms: well under a second unless the server stalls.
    // A bound that only fails when pings stop, not a benchmark.
    assert!(start.elapsed() < Duration::from_secs(15));
    grace.log().wait_for("systemd watchdog enabled");
}
