//! One event, one line: text a config file (or anything else outside the
//! server) puts into a log field cannot start a line of its own.

mod support;

use rustix::process::Signal;
use support::http::get;
use support::{config, Grace};

#[test]
fn a_newline_in_a_config_value_cannot_forge_a_log_line() {
    let grace = Grace::start(&config("kept", "", ""));
    // A reload onto a listen address with a line break, a carriage return
    // and an escape sequence in it: rejected, and the message quotes it.
    grace.write_config(
        "[server]\nlisten = \"127.0.0.1:0\\n2026-01-01T00:00:00Z  INFO FORGED reload accepted \
         generation=99\\r\\u001b[2K\"\n",
    );
    grace.signal(Signal::HUP);
    let rejected = grace.log().wait_for("reload rejected");
    // A later event: everything the rejected reload wrote was read before it.
    grace.write_config(&config("next", "", ""));
    grace.signal(Signal::HUP);
    grace.log().wait_for("reload accepted generation=2");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "next");

    let log = grace.log().text();
    for line in log.lines().filter(|l| l.contains("FORGED")) {
        assert!(
            line.contains("reload rejected"),
            "a line of its own from the config file:\n{log}"
        );
    }
    assert!(
        !rejected.contains(|c: char| c.is_control()),
        "control characters reach the log: {rejected:?}"
    );
    assert!(rejected.contains("127.0.0.1:0\\n2026-01-01"), "{rejected}");
    assert_eq!(grace.log().count("INFO reload accepted"), 1, "{log}");
}
