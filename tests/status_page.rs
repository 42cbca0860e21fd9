//! The status page on the admin address: its HTML (readable without
//! script), its JSON twin, and in a real headless Chromium, that it follows
//! reloads live and lets a drain end.

#[path = "support/chromium.rs"]
mod chromium;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chromium::Browser;
use rustix::process::Signal;
use support::http::{get, Conn};
use support::{config, eventually, free_addr, run, Grace, SOON};

/// Long enough to be still in flight when a loaded machine's page shows it.
const SLOW: &str = "[[routes]]\npath = \"/slow\"\ndelay = \"8s\"\nbody = \"slow done\"\n";

/// grace with an admin address; returns it too.
fn start(message: &str, server_extra: &str, rest: &str) -> (Grace, SocketAddr) {
    let admin = free_addr();
    let extra = format!("admin_listen = \"{admin}\"\n{server_extra}");
    (Grace::start(&config(message, &extra, rest)), admin)
}

fn json(admin: SocketAddr) -> serde_json::Value {
    let res = get(admin, "/status.json").unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/json"));
    serde_json::from_str(&res.body).unwrap()
}

/// Breaks the config at line 3, column 20 and reloads; returns the error's
/// `file:line:col`.
fn rejected_reload(grace: &Grace) -> String {
    grace.write_config("message = \"x\"\n[server]\nshutdown_timeout = 5\n");
    grace.signal_live(Signal::HUP);
    format!("{}:3:20", grace.config_path().display())
}

#[test]
fn the_page_is_on_the_admin_address_only() {
    let (grace, admin) = start("m", "", "");
    assert_eq!(get(grace.addr(), "/status").unwrap().status, 404);
    assert_eq!(get(grace.addr(), "/status.json").unwrap().status, 404);
    assert_eq!(get(grace.addr(), "/status/events").unwrap().status, 404);
    assert_eq!(get(admin, "/status").unwrap().status, 200);
}

#[test]
fn without_script_the_page_is_a_snapshot_of_the_state() {
    let (grace, admin) = start("m", "", "");
    let at = rejected_reload(&grace);
    // The verdict is logged just before the page's history records it.
    let res = eventually(SOON, "the rejected reload on the page", || {
        let res = get(admin, "/status").unwrap();
        res.body.contains("✗ rejected").then_some(res)
    });
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    let page = res.body;
    for shown in [
        format!("<dd id=\"pid\">{}</dd>", grace.pid()),
        "<dd id=\"generation\">1</dd>".to_owned(),
        "<dd id=\"phase\">running</dd>".to_owned(),
        format!("<code>{}</code>", grace.config_path().display()),
        "<dd id=\"requests\">1</dd>".to_owned(),
        "<td>SIGHUP</td><td class=\"bad\">✗ rejected</td>".to_owned(),
        format!("<code>{at}: invalid type: integer `5`"),
        "<td>admin</td><td>".to_owned() + &admin.to_string(),
    ] {
        assert!(page.contains(&shown), "{shown} not in:\n{page}");
    }
    // Self-contained: nothing loaded from elsewhere, the config's contents
    // never shown (only its path).
    assert!(!page.contains("http://") && !page.contains("https://"));
    assert!(!page.contains("shutdown_timeout = 5"));
}

#[test]
fn the_json_twin_has_the_state_and_the_history() {
    let (grace, admin) = start("m", "", "");
    grace.write_config(&config("m2", &format!("admin_listen = \"{admin}\""), ""));
    grace.signal(Signal::HUP);
    grace.log().wait_for("reload accepted");
    let at = rejected_reload(&grace);
    grace.log().wait_for("reload rejected");
    let j = json(admin);
    assert_eq!(j["pid"], grace.pid());
    assert_eq!(j["generation"], 2);
    assert_eq!(j["phase"], "running");
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["config_path"], grace.config_path().display().to_string());
    assert_eq!(j["deadline_secs"], serde_json::Value::Null);
    let reloads = j["reloads"].as_array().unwrap();
    assert_eq!(reloads.len(), 2, "{j}");
    assert_eq!(reloads[0]["result"], "rejected");
    assert_eq!(reloads[0]["trigger"], "SIGHUP");
    assert_eq!(reloads[0]["generation"], 2, "the one that kept serving");
    assert!(
        reloads[0]["error"].as_str().unwrap().starts_with(&at),
        "{j}"
    );
    assert_eq!(reloads[1]["result"], "accepted");
    assert_eq!(j["upgrades"], serde_json::json!([]));
    assert_eq!(j["listeners"][1]["kind"], "admin");
    assert!(j["rates"].is_array());
}

#[test]
fn in_a_browser_the_page_follows_reloads_without_reloading() {
    let (grace, admin) = start("m", "", "");
    let mut browser = Browser::launch();
    browser.open(&format!("http://{admin}/status"));
    browser.wait_for("document.body.dataset.stream === 'live'", SOON);
    // Gone if the document were loaded again.
    browser.eval("window.sameDocument = true");
    assert_eq!(
        browser.eval("document.getElementById('generation').textContent"),
        "1"
    );

    grace.write_config(&config("m2", &format!("admin_listen = \"{admin}\""), ""));
    grace.signal(Signal::HUP);
    browser.wait_for(
        "document.getElementById('generation').textContent === '2'",
        SOON,
    );

    let at = rejected_reload(&grace);
    let error = browser.wait_for(
        "(document.querySelector('#reloads tr:nth-child(2) code') || {}).textContent",
        SOON,
    );
    assert!(error.as_str().unwrap().starts_with(&at), "{error}");
    assert_eq!(browser.eval("window.sameDocument"), true);
    assert_eq!(browser.errors(), Vec::<String>::new(), "console errors");
}

#[test]
fn in_a_browser_a_drain_shows_its_progress_and_the_open_page_does_not_hold_it() {
    let (mut grace, admin) = start("m", "shutdown_timeout = \"30s\"", SLOW);
    let mut browser = Browser::launch();
    browser.open(&format!("http://{admin}/status"));
    browser.wait_for("document.body.dataset.stream === 'live'", SOON);
    let mut slow = Conn::open(grace.addr()).unwrap();
    slow.send("/slow").unwrap();
    // The page's own stream is a request in flight too.
    browser.wait_for(
        "document.getElementById('requests').textContent === '2'",
        SOON,
    );

    let stopped = Instant::now();
    grace.signal(Signal::TERM);
    let drain = browser.wait_for(
        "document.body.dataset.stream === 'closed' && document.getElementById('drain').textContent",
        SOON,
    );
    let drain = drain.as_str().unwrap();
    assert!(drain.contains("requests left"), "{drain}");
    assert!(drain.contains("deadline in"), "{drain}");
    assert_eq!(
        browser.eval("document.getElementById('phase').textContent"),
        "draining"
    );

    let res = slow.recv().unwrap();
    assert_eq!((res.status, res.body.as_str()), (200, "slow done"));
    // Exit 0: drained, not forced at the 30 s deadline, with the page open.
    assert_eq!(
        grace.wait_exit(SOON).code(),
        Some(0),
        "{}",
        grace.log().text()
    );
    assert!(stopped.elapsed().as_secs() < 30);
    assert!(grace
        .log()
        .text()
        .contains("drain finished: all connections closed"));
    assert_eq!(browser.errors(), Vec::<String>::new(), "console errors");
}

/// A config for the screenshot: fixed ports (the page lists the configured
/// addresses) and a TLS listener with `tls.pem`/`tls.key`.
fn full_config(message: &str, main: SocketAddr, tls: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "message = \"{message}\"\n[server]\nlisten = [\"{main}\"]\nadmin_listen = \"{admin}\"\n\
         [server.tls]\nlisten = [\"{tls}\"]\ncert = \"tls.pem\"\nkey = \"tls.key\"\n"
    )
}

/// A certificate for `names` that expires in `days`.
fn write_certificate(dir: &std::path::Path, names: &[&str], days: i64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("tls.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

/// The README's screenshot: an upgrade, an accepted and a rejected reload,
/// a certificate close to expiry, some traffic. Set
/// `GRACE_SCREENSHOT=docs/status.png` to keep it.
#[test]
fn in_a_browser_after_an_upgrade_and_reloads_the_page_shows_them_all() {
    let (main, tls, admin) = (free_addr(), free_addr(), free_addr());
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), &["status.example.test", "www.example.test"], 10);
    let grace = Grace::start_program(
        std::path::Path::new(support::BIN),
        dir,
        &full_config("m", main, tls, admin),
        &[],
        &[],
    );
    let (code, out, err) = run(
        &["upgrade", "--pid-file", grace.pid_file().to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let old = grace.pid();
    let new = grace.live_pid();
    assert_ne!(old, new);
    eventually(SOON, "the new process on the admin address", || {
        get(admin, "/status.json")
            .ok()
            .filter(|r| r.body.contains(&format!("\"pid\":{new}")))
    });

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = get(main, "/");
                let _ = get(main, "/missing");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };

    let mut browser = Browser::launch();
    browser.open(&format!("http://{admin}/status"));
    browser.wait_for("document.body.dataset.stream === 'live'", SOON);
    let upgrade = browser.wait_for(
        "(document.querySelector('#upgrades tr:nth-child(2)') || {}).textContent",
        SOON,
    );
    let upgrade = upgrade.as_str().unwrap();
    assert!(
        upgrade.contains(&format!("{old}{new}")) && upgrade.contains("✓ ok"),
        "{upgrade}"
    );
    let cert = browser.eval("document.querySelector('#certificates tr:nth-child(2)').textContent");
    let cert = cert.as_str().unwrap();
    assert!(cert.contains("CN=status.example.test"), "{cert}");
    assert!(cert.contains("(renew soon)"), "{cert}");

    grace.write_config(&full_config("m2", main, tls, admin));
    grace.signal_live(Signal::HUP);
    browser.wait_for(
        "document.getElementById('generation').textContent === '2'",
        SOON,
    );
    let at = rejected_reload(&grace);
    let error = browser.wait_for(
        "(document.querySelector('#reloads tr:nth-child(2) code') || {}).textContent",
        SOON,
    );
    assert!(error.as_str().unwrap().starts_with(&at), "{error}");
    // A line needs three samples, 5 s apart, taken while the page is open.
    browser.wait_for(
        "[...document.querySelectorAll('#status svg polyline')]
            .some(l => l.getAttribute('points').trim().split(' ').length >= 3)",
        2 * SOON,
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert_eq!(browser.errors(), Vec::<String>::new(), "console errors");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status.png");
    browser.screenshot(&shot, 1000);
    if let Ok(keep) = std::env::var("GRACE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn each_listener_shows_its_own_open_connections() {
    let (busy, quiet, admin) = (free_addr(), free_addr(), free_addr());
    let grace = Grace::start(&format!(
        "message = \"m\"\n[server]\nlisten = [\"{busy}\", \"{quiet}\"]\nadmin_listen = \"{admin}\"\n"
    ));
    // Two keep-alive connections held open on one listener, each past its
    // first request, so both are surely accepted.
    let mut held: Vec<Conn> = (0..2).map(|_| Conn::open(busy).unwrap()).collect();
    for conn in &mut held {
        assert_eq!(conn.get("/").unwrap().status, 200);
    }
    let j = json(admin);
    let open = |addr: SocketAddr| {
        j["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["addr"] == addr.to_string() && l["kind"] == "http")
            .unwrap_or_else(|| panic!("{addr} not listed: {j}"))["connections"]
            .clone()
    };
    assert_eq!((open(busy), open(quiet)), (2.into(), 0.into()), "{j}");
    // The admin address counts too: at least the connection asking.
    let admin_open = j["listeners"][2]["connections"].as_u64();
    assert!(admin_open >= Some(1), "{j}");
    let page = get(admin, "/status").unwrap().body;
    assert!(
        page.contains(&format!("<td>http</td><td>{busy}</td><td>2</td>")),
        "{page}"
    );
    drop(held);
    // Closed by the client: the count follows once the server sees the EOF.
    eventually(SOON, "the held connections to be counted closed", || {
        let j = json(admin);
        let listed = j["listeners"].as_array().unwrap().clone();
        listed
            .iter()
            .find(|l| l["addr"] == busy.to_string())
            .filter(|l| l["connections"] == 0)
            .map(|_| ())
    });
    drop(grace);
}
