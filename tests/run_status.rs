//! What `grace run` tells about its app: `grace status --json`'s `app`
//! object, and the metrics on the admin address.

mod support;

use rustix::process::{kill_process_group, Pid, Signal};
use support::app::{goserver, gunicorn, until_served_by, Run};
use support::http::get;
use support::{parse_metrics, SOON};

#[test]
fn status_and_metrics_count_generations_restarts_and_failed_starts() {
    let run = Run::start(
        &["--ready", "notify", "--admin-listen", "127.0.0.1:0"],
        &gunicorn(1),
    );
    let admin: std::net::SocketAddr = run
        .log()
        .wait_for("name=\"admin\"")
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let (code, out, _) = run.reload();
    assert_eq!(code, 0, "{out}");
    let second = run.app_pid(2);
    // The replaced one has ended: the crash below is the last exit.
    run.log().wait_for("app generation stopped generation=1 ");
    kill_process_group(Pid::from_raw(second as i32).unwrap(), Signal::KILL).unwrap();
    let third = run.app_pid(3);
    until_served_by(run.addr(), third);

    let (code, out, err) = run.client(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let app = &status["app"];
    assert_eq!(app["pid"], third, "{status}");
    assert_eq!(app["generation"], 3, "{status}");
    assert_eq!(app["restarts"], 2, "{status}");
    assert_eq!(
        (app["replaced"].as_u64(), app["crash_restarts"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    assert_eq!(app["failed_starts"], 0, "{status}");
    assert_eq!(
        app["last_exit"], "generation 2: signal: 9 (SIGKILL)",
        "{status}"
    );

    let metrics = parse_metrics(&get(admin, "/metrics").unwrap().body);
    assert_eq!(metrics["grace_app_generation"], 3.0);
    assert_eq!(metrics["grace_app_restarts_total{reason=\"replace\"}"], 1.0);
    assert_eq!(metrics["grace_app_restarts_total{reason=\"crash\"}"], 1.0);
    assert_eq!(metrics["grace_app_failed_starts_total"], 0.0);
    assert_eq!(get(admin, "/readyz").unwrap().status, 200);

    let mut run = run;
    run.signal(Signal::TERM);
    assert_eq!(run.wait_exit(SOON), Some(0));
}

/// The admin address `grace run` logs.
fn admin_addr(run: &Run) -> std::net::SocketAddr {
    run.log()
        .wait_for("name=\"admin\"")
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_status_page_shows_the_app_generation_and_its_restarts() {
    let run = Run::start(
        &["--ready", "delay:300ms", "--admin-listen", "127.0.0.1:0"],
        &goserver(),
    );
    let admin = admin_addr(&run);
    let first = run.app_pid(1);
    let json = || -> serde_json::Value {
        let res = get(admin, "/status.json").unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        serde_json::from_str(&res.body).unwrap()
    };
    let j = json();
    let app = &j["apps"][0];
    assert_eq!(
        (
            &app["generation"],
            &app["pid"],
            &app["restarts"],
            &app["state"]
        ),
        (&1.into(), &first.into(), &0.into(), &"serving".into()),
        "{j}"
    );
    assert!(app["started_at"].as_f64().unwrap() > 0.0, "{j}");

    let (code, out, _) = run.reload();
    assert_eq!(code, 0, "{out}");
    let second = run.app_pid(2);
    let j = json();
    let app = &j["apps"][0];
    assert_eq!(
        (&app["generation"], &app["pid"], &app["restarts"]),
        (&2.into(), &second.into(), &1.into()),
        "{j}"
    );
    assert_eq!(j["reloads"][0]["result"], "accepted", "{j}");

    let page = get(admin, "/status").unwrap().body;
    for shown in ["<h2>Application</h2>", &format!("<td>{second}</td>")] {
        assert!(page.contains(shown), "{shown} not in:\n{page}");
    }
    // The admin routes are still there around the page.
    assert_eq!(get(admin, "/readyz").unwrap().status, 200);
}

#[test]
fn under_systemd_grace_is_ready_once_the_first_generation_is() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify).unwrap();
    systemd.set_read_timeout(Some(SOON)).unwrap();
    let mut grace = std::process::Command::new(support::BIN);
    grace
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--ready",
            "notify",
            "--control-socket",
        ])
        .arg(dir.path().join("control.sock"))
        .arg("--")
        .args(gunicorn(1))
        .env("NOTIFY_SOCKET", &notify);
    let run = Run::spawn(grace, dir);
    let mut buf = [0u8; 4096];
    let n = systemd.recv(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    // grace's own, not gunicorn's ("Gunicorn arbiter booted" goes to the
    // generation's socket), and only once that generation was ready.
    assert!(first.contains("READY=1"), "{first}");
    assert!(first.contains("STATUS=serving generation 1"), "{first}");
    assert!(run
        .log()
        .text()
        .contains("app generation ready generation=1 "));
}
