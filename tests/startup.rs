//! Start-up order: what must happen before anything else in the process.

mod support;

use rustix::process::Signal;
use support::{config, Grace, SOON};

#[test]
fn inherited_sockets_are_taken_before_any_thread_starts() {
    let mut grace = Grace::start(&config("hello", "", ""));
    let log = grace.log().text();
    assert!(!log.contains("while other threads run"), "{log}");
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}
