//! Graceful shutdown through SIGTERM/SIGINT/SIGQUIT, against the real binary.

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::http::{get, Conn};
use support::{config, Grace, SOON};

const FORCED: i32 = 75;

fn slow_route(delay: &str) -> String {
    format!("[[routes]]\npath = \"/slow\"\ndelay = \"{delay}\"\nbody = \"slow done\"\n")
}

fn refused(addr: std::net::SocketAddr) -> bool {
    matches!(
        std::net::TcpStream::connect_timeout(&addr, SOON),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[test]
fn twenty_slow_requests_in_flight_all_complete_then_exit_0() {
    let mut grace = Grace::start(&config("m", "", &slow_route("2s")));
    let addr = grace.addr();
    // Every request is written before the signal. Whether or not the server
    // has read it yet, it must be answered.
    let mut conns: Vec<Conn> = (0..20)
        .map(|_| {
            let mut c = Conn::open(addr).unwrap();
            c.send("/slow").unwrap();
            c
        })
        .collect();

    grace.signal(Signal::TERM);
    grace.log().wait_for("drain started");
    assert!(
        refused(addr),
        "a new connection after the drain began must be refused"
    );

    let clients: Vec<_> = conns
        .drain(..)
        .map(|mut c| std::thread::spawn(move || c.recv()))
        .collect();
    let mut ok = 0;
    for client in clients {
        let res = client.join().unwrap().expect("in-flight request failed");
        assert_eq!((res.status, res.body.as_str()), (200, "slow done"));
        assert!(
            res.closes(),
            "responses during the drain carry Connection: close"
        );
        ok += 1;
    }
    assert_eq!(ok, 20);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    let line = grace.log().wait_for("drain finished");
    assert!(line.contains("all connections closed"), "{line}");
    assert!(
        !grace.pid_file().exists(),
        "the pid file is removed at exit"
    );
}

#[test]
fn readiness_fails_during_the_delay_while_serving_goes_on() {
    let mut grace = Grace::start(&config("m", "shutdown_delay = \"1s\"", ""));
    assert_eq!(get(grace.addr(), "/readyz").unwrap().status, 200);
    grace.signal(Signal::TERM);
    grace.log().wait_for("shutdown started");
    // The delay is for load balancers: new connections are still served.
    let ready = get(grace.addr(), "/readyz").unwrap();
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "shutting down\n")
    );
    assert_eq!(get(grace.addr(), "/").unwrap().status, 200);
    assert_eq!(get(grace.addr(), "/healthz").unwrap().status, 200);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn a_keep_alive_request_sent_during_the_drain_is_answered_with_connection_close() {
    let mut grace = Grace::start(&config("m", "idle_grace = \"10s\"", ""));
    let mut conn = Conn::open(grace.addr()).unwrap();
    assert!(!conn.get("/").unwrap().closes());

    grace.signal(Signal::TERM);
    grace.log().wait_for("drain started");
    // The race nginx loses: the client's next request on an idle keep-alive
    // connection. It is answered, and told to go.
    let res = conn.get("/").unwrap();
    assert_eq!(res.status, 200);
    assert!(res.closes(), "{res:?}");
    conn.expect_eof(SOON).unwrap();
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_grace_and_does_not_hold_the_exit() {
    let mut grace = Grace::start(&config("m", "idle_grace = \"300ms\"", ""));
    let mut conn = Conn::open(grace.addr()).unwrap();
    assert_eq!(conn.get("/").unwrap().status, 200);

    let signalled = Instant::now();
    grace.signal(Signal::TERM);
    grace.log().wait_for("drain started");
    conn.expect_eof(SOON).unwrap();
    let eof_after = signalled.elapsed();
    drop(conn);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    // shutdown_timeout is 30 s: exiting well before it shows the idle
    // connection did not hold the drain. (A bound, not a benchmark.)
    assert!(
        eof_after >= Duration::from_millis(300),
        "closed before the grace: {eof_after:?}"
    );
    assert!(
        eof_after < Duration::from_secs(10),
        "held for {eof_after:?}"
    );
}

#[test]
fn a_connection_whose_request_arrives_after_the_signal_is_still_served() {
    let mut grace = Grace::start(&config("m", "idle_grace = \"3s\"", ""));
    // Connected (accepted by the kernel) before the signal, silent until after.
    let mut conn = Conn::open(grace.addr()).unwrap();
    grace.signal(Signal::TERM);
    grace.log().wait_for("drain started");
    // The scenario, not a synchronisation: this client is slow, and its bytes
    // arrive a while after the drain began (within the grace).
    std::thread::sleep(Duration::from_millis(300));
    let res = conn.get("/").unwrap();
    assert_eq!((res.status, res.body.as_str()), (200, "m"));
    assert!(res.closes());
    conn.expect_eof(SOON).unwrap();
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn past_the_deadline_the_rest_is_cut_with_the_forced_status() {
    let mut grace = Grace::start(&config(
        "m",
        "shutdown_timeout = \"1s\"",
        &slow_route("60s"),
    ));
    let mut conn = Conn::open(grace.addr()).unwrap();
    conn.send("/slow").unwrap();
    let signalled = Instant::now();
    grace.signal(Signal::TERM);
    let status = grace.wait_exit(SOON);
    assert_eq!(status.code(), Some(FORCED));
    assert!(signalled.elapsed() < Duration::from_secs(15));
    let line = grace.log().wait_for("forcing shutdown");
    assert!(line.contains("shutdown deadline passed"), "{line}");
    assert!(line.contains("requests_cut=1"), "{line}");
    assert!(conn.recv().is_err(), "the cut request gets no response");
}

#[test]
fn a_second_signal_forces_at_once() {
    let mut grace = Grace::start(&config("m", "", &slow_route("60s")));
    let mut conn = Conn::open(grace.addr()).unwrap();
    conn.send("/slow").unwrap();
    grace.signal(Signal::INT);
    grace.log().wait_for("drain started");
    grace.signal(Signal::INT);
    assert_eq!(grace.wait_exit(SOON).code(), Some(FORCED));
    let line = grace.log().wait_for("forcing shutdown");
    assert!(line.contains("shutdown forced on request"), "{line}");
}

#[test]
fn sigquit_shuts_down_gracefully_and_sighup_during_shutdown_is_ignored() {
    let mut grace = Grace::start(&config("m", "", &slow_route("1s")));
    let mut conn = Conn::open(grace.addr()).unwrap();
    conn.send("/slow").unwrap();
    grace.signal(Signal::QUIT);
    grace.log().wait_for("drain started");
    grace.signal(Signal::HUP);
    grace.log().wait_for("reload ignored: shutting down");
    assert_eq!(conn.recv().unwrap().body, "slow done");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert_eq!(grace.log().count("reload accepted"), 0);
}

#[test]
fn grace_stop_shuts_down_the_process_in_the_pid_file() {
    let mut grace = Grace::start(&config("m", "", ""));
    let pid_file = grace.pid_file();
    let (code, out, err) = support::run(
        &["stop", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}
