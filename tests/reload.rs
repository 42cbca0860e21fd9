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
    // The log reaches us through a queue and a pipe: count once the line of
    // the generation now served has arrived, not before.
    let metrics = support::parse_metrics(&get(grace.addr(), "/metrics").unwrap().body);
    let generation = metrics["grace_config_generation"];
    grace
        .log()
        .wait_for(&format!("reload accepted generation={generation} "));
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

fn free_port_addr() -> std::net::SocketAddr {
    // Bound and released: free unless another process takes it in between.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

fn listen_config(addrs: &[String]) -> String {
    let list = addrs
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("message = \"m\"\n[server]\nlisten = [{list}]\n")
}

#[test]
fn listen_changes_apply_on_reload_and_removed_listeners_drain() {
    let grace = Grace::start(&config("m", "", ""));
    let first = grace.addr();
    let mut kept_alive = support::http::Conn::open(first).unwrap();
    assert!(!kept_alive.get("/").unwrap().closes());

    let second = free_port_addr();
    grace.write_config(&listen_config(&["127.0.0.1:0".into(), second.to_string()]));
    grace.signal(Signal::HUP);
    grace.log().wait_for("reload accepted");
    assert_eq!(
        get(second, "/").unwrap().body,
        "m",
        "the added address serves"
    );
    assert_eq!(
        get(first, "/").unwrap().body,
        "m",
        "the unchanged one keeps serving"
    );

    grace.write_config(&listen_config(&[second.to_string()]));
    grace.signal(Signal::HUP);
    grace.log().wait_count("reload accepted", 2, SOON);
    // The verdict comes when the listener is told to stop; it closes a moment
    // later (a connect in between is taken and served, not lost).
    grace.log().wait_for("closed listener 127.0.0.1:0");
    assert!(
        matches!(std::net::TcpStream::connect(first), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "the removed address refuses"
    );
    // A connection accepted through the removed listener drains like in a
    // shutdown: answered, and told to close.
    let res = kept_alive.get("/").unwrap();
    assert_eq!(res.status, 200);
    assert!(res.closes(), "{res:?}");
    assert_eq!(get(second, "/").unwrap().body, "m");
}

#[test]
fn a_listen_address_that_cannot_be_bound_rejects_the_whole_reload() {
    let grace = Grace::start(&config("m", "", ""));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let free = free_port_addr();
    grace.write_config(&format!(
        "message = \"changed\"\n[server]\nlisten = [\"127.0.0.1:0\", \"{free}\", \"{taken_addr}\"]\n"
    ));
    grace.signal(Signal::HUP);
    let line = grace.log().wait_for("reload rejected");
    assert!(
        line.contains(&format!(
            "cannot apply: cannot listen on {taken_addr}: Address already in use"
        )),
        "{line}"
    );
    assert_eq!(
        get(grace.addr(), "/").unwrap().body,
        "m",
        "old config, old listener"
    );
    assert!(
        std::net::TcpStream::connect(free).is_err(),
        "nothing of the rejected reload was kept"
    );
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
