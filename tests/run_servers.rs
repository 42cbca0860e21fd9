//! `grace run` with servers that send no readiness notification, ready
//! after a delay: uvicorn (`--fd 3`, from PyPI) and a stdlib-only Go server
//! on descriptor 3, each replaced 5 times under wrk load.

mod support;

use support::app::{goserver, replace_times, summary, uvicorn, Run, Wrk};
use support::http::get;

/// `cuts_unread`: the server closes connections it accepted but has not
/// read a request from yet when it stops (uvicorn 0.54: `shutdown()` closes
/// every connection whose `cycle` is None), so even a client with a
/// connection per request sees some EOFs; grace cannot help that. Those are
/// reported; refused connections and timeouts never happen.
fn five_replacements(name: &str, ready: &str, command: &[String], cuts_unread: bool) {
    let run = Run::start(&["--ready", ready], command);
    assert_eq!(get(run.addr(), "/").unwrap().status, 200);
    let wrk = Wrk::start(run.addr(), 8, true);
    let times = replace_times(&run, 1, 5, false);
    let close = wrk.stop();
    eprintln!(
        "{name}, Connection: close, 5 replacements: {close:?}; reload to new generation serving: {}",
        summary(&times)
    );
    assert!(close.requests > 50, "{close:?}");
    assert_eq!(
        (close.connect, close.timeout, close.non_2xx),
        (0, 0, 0),
        "{close:?}"
    );
    if !cuts_unread {
        assert_eq!(close.failed(), 0, "{close:?}");
    }

    // Keep-alive: on SIGTERM the old generation closes its idle keep-alive
    // connections, racing requests the client may have sent on them;
    // counted and reported, not asserted.
    let wrk = Wrk::start(run.addr(), 8, false);
    let times = replace_times(&run, 6, 5, false);
    let keep_alive = wrk.stop();
    eprintln!(
        "{name}, keep-alive, 5 replacements: {keep_alive:?}, {:.1} failed per replacement; \
         reload to new generation serving: {}",
        keep_alive.failed() as f64 / 5.0,
        summary(&times)
    );
    assert!(keep_alive.requests > 50, "{keep_alive:?}");
    assert_eq!(keep_alive.connect, 0, "{keep_alive:?}");
}

#[test]
fn uvicorn_on_fd_3_is_replaced_under_load() {
    five_replacements("uvicorn", "delay:1s", &uvicorn(), true);
}

#[test]
fn a_go_server_on_fd_3_is_replaced_under_load() {
    five_replacements("go", "delay:300ms", &goserver(), false);
}
