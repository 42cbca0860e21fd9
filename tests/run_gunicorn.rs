//! `grace run` with gunicorn (from PyPI, installed by tests/setup/apps.sh):
//! 2 sync workers, ready on its own READY=1, replaced under wrk load.

mod support;

use support::app::{gunicorn, replace_times, summary, Run, Wrk};
use support::http::get;

#[test]
fn gunicorn_is_replaced_under_load_without_a_failed_request() {
    let run = Run::start(&["--ready", "notify"], &gunicorn(2));
    assert_eq!(get(run.addr(), "/").unwrap().status, 200);

    // A new connection for every request: a request must never find the
    // port closed or be cut, however the replacements fall.
    let wrk = Wrk::start(run.addr(), 8, true);
    let times = replace_times(&run, 1, 10, false);
    let close = wrk.stop();
    eprintln!(
        "gunicorn, Connection: close, 10 replacements by `grace reload`: {close:?}; \
         reload to new generation serving: {}",
        summary(&times)
    );
    assert!(close.requests > 100, "{close:?}");
    assert_eq!(close.failed(), 0, "{close:?}");

    // Keep-alive clients: gunicorn's sync workers answer every request with
    // `Connection: close`, so each request has a connection of its own here
    // too; what fails is counted and reported, per replacement.
    let wrk = Wrk::start(run.addr(), 8, false);
    let times = replace_times(&run, 11, 10, true);
    let keep_alive = wrk.stop();
    eprintln!(
        "gunicorn, keep-alive, 10 replacements by SIGHUP: {keep_alive:?}, {:.1} failed per \
         replacement; SIGHUP to new generation serving: {}",
        keep_alive.failed() as f64 / 10.0,
        summary(&times)
    );
    assert!(keep_alive.requests > 100, "{keep_alive:?}");
}
