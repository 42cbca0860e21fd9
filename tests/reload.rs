//! Hot reload through SIGHUP, against the real binary.

mod support;

use rustix::process::Signal;
use support::http::get;
use support::{config, eventually, Grace, SOON};

#[test]
fn hup_with_a_changed_file_serves_the_new_message() {
    let grace = Grace::start(&config("Before hot reload", "", ""));
    assert_eq!(get(grace.addr(), "/").unwrap().body, "Before hot reload");

    grace.write_config(&config("After hot reload", "", ""));
    grace.signal(Signal::HUP);
    let line = grace.log().wait_for("reload accepted");
    assert!(line.contains("generation=2"), "{line}");
    // The swap happened before the log line: no polling needed.
    assert_eq!(get(grace.addr(), "/").unwrap().body, "After hot reload");
}

#[test]
fn hup_with_a_broken_file_keeps_the_old_config_and_says_where() {
    let grace = Grace::start(&config("still here", "", ""));
    grace.write_config("message = \"x\"\n[server]\nshutdown_timeout = 5\n");
    grace.signal(Signal::HUP);
    let line = grace.log().wait_for("reload rejected");
    let path = grace.config_path().display().to_string();
    assert!(
        line.contains(&format!("{path}:3:20: invalid type: integer `5`")),
        "{line}"
    );
    assert!(line.contains("generation 1 keeps serving"), "{line}");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "still here");

    // A good file after a bad one is applied as the next generation.
    grace.write_config(&config("fixed", "", ""));
    grace.signal(Signal::HUP);
    assert!(grace
        .log()
        .wait_for("reload accepted")
        .contains("generation=2"));
    assert_eq!(get(grace.addr(), "/").unwrap().body, "fixed");
}

#[test]
fn a_burst_of_1000_hups_is_merged_and_ends_on_the_latest_file() {
    let mut grace = Grace::start(&config("v0", "", ""));
    for i in 1..=1000 {
        if i % 100 == 0 {
            grace.write_config(&config(&format!("v{i}"), "", ""));
        }
        grace.signal(Signal::HUP);
    }
    eventually(SOON, "the last version to be served", || {
        let body = get(grace.addr(), "/").unwrap().body;
        (body == "v1000").then_some(())
    });
    assert!(grace.is_running());
    let reloads = grace.log().count("reload accepted");
    assert!(
        (1..100).contains(&reloads),
        "1000 SIGHUPs should be merged into far fewer reloads, got {reloads}"
    );

    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn a_route_keeps_status_headers_and_body_from_one_generation() {
    let route = |v: &str| {
        format!("[[routes]]\npath = \"/v\"\nstatus = 203\nbody = \"{v}\"\nheaders = {{ \"x-version\" = \"{v}\" }}\n")
    };
    let grace = Grace::start(&config("m", "", &route("one")));
    let res = get(grace.addr(), "/v").unwrap();
    assert_eq!(
        (res.status, res.header("x-version"), res.body.as_str()),
        (203, Some("one"), "one")
    );
    grace.write_config(&config("m", "", &route("two")));
    grace.signal(Signal::HUP);
    grace.log().wait_for("reload accepted");
    let res = get(grace.addr(), "/v").unwrap();
    assert_eq!(
        (res.header("x-version"), res.body.as_str()),
        (Some("two"), "two")
    );
}

#[test]
fn a_listen_change_is_reported_as_needing_a_restart() {
    let grace = Grace::start(&config("m", "", ""));
    grace.write_config("message = \"m2\"\n[server]\nlisten = [\"127.0.0.1:1\"]\n");
    grace.signal(Signal::HUP);
    grace
        .log()
        .wait_for("listen addresses changed: not applied until a restart");
    grace.log().wait_for("reload accepted");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m2");
}

#[test]
fn grace_reload_signals_the_process_in_the_pid_file() {
    let grace = Grace::start(&config("a", "", ""));
    grace.write_config(&config("b", "", ""));
    let pid_file = grace.pid_file();
    let (code, out, err) = support::run(
        &["reload", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("sent SIGHUP to grace (pid {})", grace.pid())),
        "{out}"
    );
    grace.log().wait_for("reload accepted");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "b");
}
