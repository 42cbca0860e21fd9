//! Configurations that parse but could never be served as written: route
//! headers that are the server's to set (framing, connection management),
//! bodies on statuses that cannot carry one, route paths no request can
//! match, header values outside what HTTP allows, and listen addresses that
//! collide with each other at bind time.
//!
//! Each is refused three ways, like every other config error (see
//! `config_errors.rs`): `grace check` and starting exit 78 naming
//! `file:line:column`, and a reload onto it is rejected with the same place
//! while the old configuration keeps serving.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::process::Signal;
use support::http::get;
use support::{config, run, wait_child, Grace, BIN, SOON};

const CONFIG: i32 = 78;

struct Case {
    name: &'static str,
    text: String,
    /// `line:column` of the mistake.
    at: String,
    /// Every one must appear in the message.
    says: &'static [&'static str],
}

/// A route on `127.0.0.1:0` (lines 1-2), the route's table from line 3.
fn route(name: &'static str, route: &str, at: &'static str, says: &'static [&'static str]) -> Case {
    Case {
        name,
        text: format!("[server]\nlisten = \"127.0.0.1:0\"\n[[routes]]\n{route}"),
        at: at.to_owned(),
        says,
    }
}

/// A port that nothing listens on, so the cases that name one bind nothing
/// that could collide with another test.
fn port() -> u16 {
    support::free_addr().port()
}

/// Where the second entry of `listen = ["FIRST", "..."]` on line 2 starts.
fn second_entry(first: &str) -> String {
    format!(
        "2:{}",
        "listen = [".len() + format!("{first:?}, ").len() + 1
    )
}

fn cases() -> Vec<Case> {
    let framing = |name, header: &str, at| {
        route(
            name,
            &format!("path = \"/a\"\nbody = \"hello\"\nheaders = {{ \"{header}\" = \"0\" }}\n"),
            at,
            &["is the server's to set"],
        )
    };
    let p = port();
    let q = port();
    let r = port();
    vec![
        // Framing and connection management: hop-by-hop and length fields.
        framing("content-length", "content-length", "6:13"),
        framing("transfer-encoding", "Transfer-Encoding", "6:13"),
        framing("connection", "connection", "6:13"),
        framing("keep-alive", "keep-alive", "6:13"),
        framing("upgrade", "upgrade", "6:13"),
        framing("te", "te", "6:13"),
        framing("trailer", "trailer", "6:13"),
        framing("proxy-connection", "proxy-connection", "6:13"),
        framing("http2-settings", "http2-settings", "6:13"),
        route(
            "a pseudo-header",
            "path = \"/a\"\nheaders = { \":status\" = \"200\" }\n",
            "5:13",
            &["\":status\"", "pseudo-header"],
        ),
        // Statuses that cannot have a body, or cannot be final.
        route(
            "204 with a body",
            "path = \"/a\"\nstatus = 204\nbody = \"hello\"\n",
            "6:8",
            &["a 204 response cannot have a body"],
        ),
        route(
            "205 with a body",
            "path = \"/a\"\nstatus = 205\nbody = \"x\"\n",
            "6:8",
            &["a 205 response cannot have a body"],
        ),
        route(
            "304 with a body",
            "path = \"/a\"\nbody = \"x\"\nstatus = 304\n",
            "5:8",
            &["a 304 response cannot have a body"],
        ),
        route(
            "101 as a final status",
            "path = \"/a\"\nstatus = 101\n",
            "5:10",
            &["invalid status 101", "1xx"],
        ),
        // Paths no request can match.
        route(
            "path with a fragment",
            "path = \"/a#b\"\n",
            "4:8",
            &["is not a valid URL path", "\"#\""],
        ),
        route(
            "path with a space",
            "path = \"/a b\"\n",
            "4:8",
            &["is not a valid URL path", "space"],
        ),
        route(
            "path with a tab",
            "path = \"/a\\tb\"\n",
            "4:8",
            &["is not a valid URL path", "control character"],
        ),
        route(
            "path with a newline",
            "path = \"/a\\nb\"\n",
            "4:8",
            &["is not a valid URL path", "control character"],
        ),
        route(
            "path with raw non-ASCII",
            "path = \"/café\"\n",
            "4:8",
            &["is not a valid URL path", "percent-encode", "/caf%C3%A9"],
        ),
        // Header values: visible ASCII, spaces and tabs inside.
        route(
            "header value with non-ASCII",
            "path = \"/a\"\nheaders = { \"x-a\" = \"café\" }\n",
            "5:21",
            &["invalid value for header \"x-a\"", "visible ASCII"],
        ),
        route(
            "header value with a leading space",
            "path = \"/a\"\nheaders = { \"x-a\" = \" v\" }\n",
            "5:21",
            &["invalid value for header \"x-a\"", "at either end"],
        ),
        // Listen addresses that cannot all be bound.
        Case {
            name: "0.0.0.0 and [::] on one port",
            text: format!("[server]\nlisten = [\"0.0.0.0:{p}\", \"[::]:{p}\"]\n"),
            at: second_entry(&format!("0.0.0.0:{p}")),
            says: &["[::]:", "also takes IPv4", "0.0.0.0:"],
        },
        Case {
            name: "a v4 address and 0.0.0.0 on one port",
            text: format!("[server]\nlisten = [\"127.0.0.1:{q}\", \"0.0.0.0:{q}\"]\n"),
            at: second_entry(&format!("127.0.0.1:{q}")),
            says: &["0.0.0.0:", "overlaps 127.0.0.1:"],
        },
        Case {
            name: "admin_listen inside a listen wildcard",
            text: format!(
                "[server]\nlisten = [\"0.0.0.0:{r}\"]\nadmin_listen = \"127.0.0.1:{r}\"\n"
            ),
            at: "3:16".to_owned(),
            says: &["admin_listen 127.0.0.1:", "overlaps 0.0.0.0:"],
        },
    ]
}

/// `grace ARGS` run to its end, bounded: (exit code, stderr). A server that
/// starts although it should not is stopped at the bound.
fn finish(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("GRACE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, SOON);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.and_then(|s| s.code()), err)
}

fn assert_says(case: &Case, path: &Path, output: &str, how: &str) {
    let head = format!("{}:{}: ", path.display(), case.at);
    assert!(
        output.contains(&head),
        "{how} / {}: expected {head:?} in:\n{output}",
        case.name
    );
    for piece in case.says {
        assert!(
            output.contains(piece),
            "{how} / {}: expected {piece:?} in:\n{output}",
            case.name
        );
    }
}

#[test]
fn check_and_start_refuse_each_with_78_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for case in cases() {
        std::fs::write(&path, &case.text).unwrap();
        let (code, _, err) = run(&["check", "--config", path.to_str().unwrap()], dir.path());
        assert_eq!(code, CONFIG, "check / {}: {err}", case.name);
        assert_says(&case, &path, &err, "check");
        assert!(err.contains('^'), "check / {}: no caret:\n{err}", case.name);

        let (code, err) = finish(&["--config", path.to_str().unwrap()]);
        assert_eq!(code, Some(CONFIG), "start / {}: {err}", case.name);
        assert_says(&case, &path, &err, "start");
    }
}

#[test]
fn reloading_onto_each_is_rejected_and_the_old_config_serves() {
    let grace = Grace::start(&config("generation one", "", ""));
    let path = grace.config_path();
    for (rejected, case) in cases().into_iter().enumerate() {
        grace.write_config(&case.text);
        grace.signal(Signal::HUP);
        let line = grace
            .log()
            .wait_count("reload rejected", rejected + 1, SOON);
        assert_says(&case, &path, &line, "reload");
        assert_eq!(
            get(grace.addr(), "/").unwrap().body,
            "generation one",
            "reload / {}",
            case.name
        );
    }
    assert_eq!(grace.log().count("reload accepted"), 0);
}

#[test]
fn what_stays_allowed_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    let p = port();
    let allowed = [
        // No body on a no-content status; framing left to the server.
        "[[routes]]\npath = \"/gone\"\nstatus = 204\n".to_owned(),
        "[[routes]]\npath = \"/same\"\nstatus = 304\nheaders = { etag = \"\\\"v1\\\"\" }\n"
            .to_owned(),
        // Percent-encoded, sub-delimiters and an empty header value.
        "[[routes]]\npath = \"/caf%C3%A9/a;b=c,d@e:f~g!$&'()*+\"\n\
         headers = { \"x-a\" = \"\", \"x-b\" = \"a\\tb c\" }\n"
            .to_owned(),
        // A specific v6 address beside 0.0.0.0: different sockets.
        format!("[server]\nlisten = [\"0.0.0.0:{p}\", \"[::1]:{p}\"]\n"),
        // Port 0 never collides.
        "[server]\nlisten = [\"0.0.0.0:0\", \"[::]:0\"]\n".to_owned(),
    ];
    for text in allowed {
        std::fs::write(&path, &text).unwrap();
        let (code, out, err) = run(&["check", "--config", "ok.toml"], dir.path());
        assert_eq!(code, 0, "{text}\n{out}{err}");
    }
}

#[test]
fn the_refused_pair_is_what_the_kernel_refuses_to_bind() {
    // The rule mirrors the kernel: with the default dual-stack `[::]`
    // (`net.ipv6.bindv6only = 0`), 0.0.0.0:P and [::]:P cannot both listen.
    let v6only =
        std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "1");
    if v6only {
        eprintln!("bindv6only = 1 here: [::] does not take IPv4, nothing to compare");
        return;
    }
    let v4 = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let p = v4.local_addr().unwrap().port();
    let v6: SocketAddr = format!("[::]:{p}").parse().unwrap();
    match std::net::TcpListener::bind(v6) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        Err(e) => eprintln!("no IPv6 here ({e}): nothing to compare"),
        Ok(_) => panic!("[::]:{p} bound beside 0.0.0.0:{p}: the rule would be wrong here"),
    }
}
