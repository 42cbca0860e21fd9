//! SIGTERM: the app is stopped gracefully, requests in flight complete, and
//! grace exits 0.

mod support;

use std::io::Write;
use std::net::TcpStream;

use rustix::process::Signal;
use support::app::{goserver, gunicorn, Run};
use support::SOON;

fn slow_request_survives_sigterm(mut run: Run, started: &str) {
    let mut slow = TcpStream::connect(run.addr()).unwrap();
    slow.set_read_timeout(Some(SOON)).unwrap();
    slow.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    run.log().wait_for(started);
    run.signal(Signal::TERM);
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut slow, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("hello from"), "{answer:?}");
    assert_eq!(run.wait_exit(SOON), Some(0), "{}", run.log().text());
    assert!(run.log().text().contains("app generation stopped"));
}

#[test]
fn gunicorn_finishes_slow_requests_and_grace_exits_0() {
    let run = Run::start(&["--ready", "notify"], &gunicorn(2));
    slow_request_survives_sigterm(run, "slow request started");
}

#[test]
fn the_go_server_finishes_slow_requests_and_grace_exits_0() {
    let run = Run::start(&["--ready", "delay:300ms"], &goserver());
    slow_request_survives_sigterm(run, "slow request started");
}
