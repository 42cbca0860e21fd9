//! The bad-configuration battery: every kind of broken file, three ways.
//!
//! * `grace check` exits 78 with a message naming the file (and, where the
//!   mistake has a place, `line:column` and the key);
//! * starting on it exits 78 with the same message;
//! * reloading onto it is rejected with the same message in the log, the old
//!   configuration keeps serving and the process lives on.
//!
//! The reloading server runs as an unprivileged user (uid 65534) so that
//! "permission denied" is real: the tests run as root, which reads anything.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::process::Signal;
use support::http::get;
use support::{wait_child, Grace, BIN, SOON};

const CONFIG: i32 = 78;

/// How the broken file is made.
enum Make {
    Text(&'static str),
    Bytes(Vec<u8>),
    /// Nothing at the path.
    Missing,
    /// Mode 000: unreadable for anyone but root.
    Unreadable,
    Directory,
    SymlinkLoop,
    /// A named pipe: opening it would block until someone writes.
    Fifo,
}

struct Case {
    name: &'static str,
    make: Make,
    /// `line:column`, when the mistake has a place in the file.
    at: Option<&'static str>,
    /// Every one must appear in the message.
    says: &'static [&'static str],
}

fn text(
    name: &'static str,
    body: &'static str,
    at: &'static str,
    says: &'static [&'static str],
) -> Case {
    Case {
        name,
        make: Make::Text(body),
        at: Some(at),
        says,
    }
}

fn cases() -> Vec<Case> {
    let mut oversized = b"message = \"big\"\n".to_vec();
    while oversized.len() <= 1024 * 1024 {
        oversized.extend_from_slice(b"# padding padding padding padding padding padding padding\n");
    }
    vec![
        // TOML syntax.
        text(
            "unterminated string",
            "message = \"oops\n",
            "1:16",
            &["invalid basic string"],
        ),
        text(
            "missing equals sign",
            "message \"hi\"\n",
            "1:9",
            &["expected `.`, `=`"],
        ),
        text(
            "duplicate key",
            "message = \"a\"\nmessage = \"b\"\n",
            "2:1",
            &["duplicate key `message`"],
        ),
        text(
            "duplicate table",
            "[server]\n[server]\n",
            "2:1",
            &["invalid table header", "duplicate key `server`"],
        ),
        text(
            "invalid escape",
            "message = \"a\\qb\"\n",
            "1:15",
            &["invalid escape sequence"],
        ),
        // Wrong types, with the key they belong to.
        text(
            "string expected, integer given",
            "message = 42\n",
            "1:11",
            &[
                "invalid type: integer `42`, expected a string",
                "(key `message`)",
            ],
        ),
        text(
            "duration as a number",
            "[server]\nshutdown_timeout = 5\n",
            "2:20",
            &[
                "invalid type: integer `5`",
                "(key `server.shutdown_timeout`)",
            ],
        ),
        text(
            "listen as a number",
            "[server]\nlisten = 8080\n",
            "2:10",
            &["invalid type: integer `8080`", "(key `server.listen`)"],
        ),
        text(
            "routes as a table",
            "[routes]\npath = \"/a\"\n",
            "1:1",
            &["invalid type: map, expected a sequence"],
        ),
        text(
            "status as a string",
            "[[routes]]\npath = \"/a\"\nstatus = \"ok\"\n",
            "3:10",
            &["invalid type: string \"ok\"", "(key `routes.status`)"],
        ),
        text(
            "route without a path",
            "[[routes]]\nbody = \"x\"\n",
            "1:1",
            &["missing field `path`"],
        ),
        // Unknown keys, with a suggestion for near misses.
        text(
            "unknown key, near miss",
            "[server]\nshutdown_timout = \"5s\"\n",
            "2:1",
            &[
                "unknown field `shutdown_timout`",
                "did you mean `shutdown_timeout`?",
            ],
        ),
        text(
            "unknown table, near miss",
            "[sever]\nlisten = \"127.0.0.1:1\"\n",
            "1:2",
            &["unknown field `sever`", "did you mean `server`?"],
        ),
        text(
            "unknown top-level key, near miss",
            "mesage = \"hi\"\n",
            "1:1",
            &["unknown field `mesage`", "did you mean `message`?"],
        ),
        text(
            "unknown key, no near miss",
            "[limits]\ncolour = \"blue\"\n",
            "2:1",
            &["unknown field `colour`, expected one of"],
        ),
        // Out of range.
        text(
            "duration zero where positive needed",
            "[server]\nshutdown_timeout = \"0s\"\n",
            "2:20",
            &["`shutdown_timeout` = \"0s\" is out of range"],
        ),
        text(
            "duration too long",
            "[server]\nidle_grace = \"2h\"\n",
            "2:14",
            &["`idle_grace` = \"2h\" is out of range"],
        ),
        text(
            "duration unparsable",
            "[server]\nshutdown_delay = \"soon\"\n",
            "2:18",
            &["invalid duration \"soon\" for `shutdown_delay`"],
        ),
        text(
            "negative duration",
            "[limits]\nidle_timeout = \"-1s\"\n",
            "2:16",
            &["invalid duration \"-1s\" for `idle_timeout`"],
        ),
        text(
            "status below 200",
            "[[routes]]\npath = \"/a\"\nstatus = 99\n",
            "3:10",
            &["invalid status 99: expected a number from 200 to 599"],
        ),
        text(
            "status above 599",
            "[[routes]]\npath = \"/a\"\nstatus = 600\n",
            "3:10",
            &["invalid status 600"],
        ),
        text(
            "header size limit too small",
            "[limits]\nmax_header_size = 10\n",
            "2:19",
            &["`max_header_size` = 10 is out of range"],
        ),
        text(
            "zero connections",
            "[limits]\nmax_connections = 0\n",
            "2:19",
            &["`max_connections` = 0 is out of range"],
        ),
        // Headers.
        text(
            "invalid header name",
            "[[routes]]\npath = \"/a\"\nheaders = { \"bad name\" = \"v\" }\n",
            "3:13",
            &["invalid header name \"bad name\""],
        ),
        text(
            "invalid header value",
            "[[routes]]\npath = \"/a\"\nheaders = { \"x-a\" = \"line\\nbreak\" }\n",
            "3:21",
            &["invalid value for header \"x-a\""],
        ),
        // Routes.
        text(
            "duplicate route paths",
            "[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/a\"\n",
            "4:8",
            &["duplicate route \"/a\""],
        ),
        text(
            "path without a leading slash",
            "[[routes]]\npath = \"a\"\n",
            "2:8",
            &["route path \"a\" must start with \"/\""],
        ),
        text(
            "path with a query",
            "[[routes]]\npath = \"/a?b\"\n",
            "2:8",
            &["is not a valid URL path"],
        ),
        text(
            "reserved path",
            "[[routes]]\npath = \"/readyz\"\n",
            "2:8",
            &["reserved"],
        ),
        text(
            "message and a route for /",
            "message = \"m\"\n[[routes]]\npath = \"/\"\n",
            "3:8",
            &["`message` already answers \"/\""],
        ),
        // Listen addresses.
        text(
            "listen without a port",
            "[server]\nlisten = [\"127.0.0.1\"]\n",
            "2:11",
            &["invalid listen address \"127.0.0.1\" (it has no port)"],
        ),
        text(
            "listen IPv6 without a port",
            "[server]\nlisten = \"::1\"\n",
            "2:10",
            &["(it has no port)"],
        ),
        text(
            "listen host name",
            "[server]\nlisten = \"localhost:80\"\n",
            "2:10",
            &["invalid listen address \"localhost:80\""],
        ),
        text(
            "listen port out of range",
            "[server]\nlisten = \"127.0.0.1:70000\"\n",
            "2:10",
            &["invalid listen address \"127.0.0.1:70000\""],
        ),
        text(
            "empty listen list",
            "[server]\nlisten = []\n",
            "2:10",
            &["`listen` is empty"],
        ),
        text(
            "duplicated listen address",
            "[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
            "2:26",
            &["listen address 127.0.0.1:1 is given twice"],
        ),
        // The file itself.
        Case {
            name: "empty file",
            make: Make::Text(""),
            at: None,
            says: &["the config file is empty"],
        },
        Case {
            name: "only comments",
            make: Make::Text("# message = \"x\"\n\n   \n"),
            at: None,
            says: &["the config file is empty"],
        },
        Case {
            name: "not UTF-8",
            make: Make::Bytes(b"message = \"caf\xe9\"\n".to_vec()),
            at: None,
            says: &["not valid UTF-8 (first bad byte at offset 14)"],
        },
        Case {
            name: "oversized file",
            make: Make::Bytes(oversized),
            at: None,
            says: &["more than the limit of 1048576 bytes"],
        },
        Case {
            name: "missing file",
            make: Make::Missing,
            at: None,
            says: &["cannot read the config file: No such file or directory"],
        },
        Case {
            name: "permission denied",
            make: Make::Unreadable,
            at: None,
            says: &["cannot read the config file: Permission denied"],
        },
        Case {
            name: "directory",
            make: Make::Directory,
            at: None,
            says: &["it is a directory, not a regular file"],
        },
        Case {
            name: "symlink loop",
            make: Make::SymlinkLoop,
            at: None,
            says: &["Too many levels of symbolic links"],
        },
        Case {
            name: "named pipe",
            make: Make::Fifo,
            at: None,
            says: &["it is a named pipe, not a regular file"],
        },
    ]
}

/// Puts the broken "file" of `case` at `path`, replacing whatever was there.
fn make(case: &Case, path: &Path) {
    clear(path);
    match &case.make {
        Make::Text(t) => write_atomically(path, t.as_bytes()),
        Make::Bytes(b) => write_atomically(path, b),
        Make::Missing => {}
        Make::Unreadable => {
            std::fs::write(path, "message = \"secret\"\n").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
        Make::Directory => std::fs::create_dir(path).unwrap(),
        Make::Fifo => {
            let made = Command::new("mkfifo").arg(path).status().unwrap();
            assert!(made.success());
        }
        Make::SymlinkLoop => {
            let other = path.with_extension("loop");
            let _ = std::fs::remove_file(&other);
            std::os::unix::fs::symlink(&other, path).unwrap();
            std::os::unix::fs::symlink(path, &other).unwrap();
        }
    }
}

fn clear(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A directory the unprivileged user may use.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// `grace ARGS` as uid/gid 65534 with no supplementary groups.
fn as_nobody(args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args);
    command
}

/// Runs `command` to its end (bounded); returns (exit code, stderr).
fn finish(mut command: Command) -> (Option<i32>, String) {
    let mut child = command
        .env_remove("GRACE_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The messages are small: the pipe cannot fill and hold the child.
    let status = wait_child(&mut child, SOON);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.and_then(|s| s.code()), err)
}

/// The message must name the file, the place and every expected piece.
fn assert_says(case: &Case, path: &Path, output: &str, how: &str) {
    let head = match case.at {
        Some(at) => format!("{}:{at}: ", path.display()),
        None => format!("{}: ", path.display()),
    };
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
fn the_battery_has_at_least_25_kinds() {
    assert!(cases().len() >= 25, "{}", cases().len());
}

#[test]
fn check_rejects_every_kind_with_78_and_says_where() {
    let dir = shared_dir();
    let path = dir.path().join("c.toml");
    let mut checked = 0;
    for case in cases() {
        make(&case, &path);
        // As the unprivileged user, so "permission denied" is denied; the
        // other cases read the same either way.
        let (code, err) = finish(as_nobody(&["check", "--config", path.to_str().unwrap()]));
        assert_eq!(code, Some(CONFIG), "check / {}: {err}", case.name);
        assert_says(&case, &path, &err, "check");
        if case.at.is_some() {
            assert!(
                err.contains('^'),
                "check / {}: a caret points at the spot:\n{err}",
                case.name
            );
        }
        checked += 1;
    }
    clear(&path);
    eprintln!("check: {checked} kinds rejected with 78");
}

#[test]
fn starting_on_every_kind_exits_78_and_says_where() {
    let dir = shared_dir();
    let path = dir.path().join("c.toml");
    for case in cases() {
        make(&case, &path);
        let (code, err) = finish(as_nobody(&["--config", path.to_str().unwrap()]));
        assert_eq!(code, Some(CONFIG), "start / {}: {err}", case.name);
        assert_says(&case, &path, &err, "start");
        assert!(
            err.contains("refusing to start: invalid configuration"),
            "start / {}: {err}",
            case.name
        );
    }
    clear(&path);
}

#[test]
fn reloading_onto_every_kind_keeps_the_old_config_and_the_process() {
    let dir = shared_dir();
    let good = "message = \"generation one\"\n[server]\nlisten = \"127.0.0.1:0\"\n";
    let mut grace = Grace::start_command(as_nobody(&[]), dir, good, &[]);
    let path: PathBuf = grace.config_path();
    let mut rejected = 0;
    for case in cases() {
        make(&case, &path);
        grace.signal(Signal::HUP);
        rejected += 1;
        let line = grace.log().wait_count("reload rejected", rejected, SOON);
        assert!(line.contains("generation 1 keeps serving"), "{line}");
        assert_says(&case, &path, &line, "reload");
        assert!(
            grace.is_running(),
            "reload / {}: the process died",
            case.name
        );
        assert_eq!(
            get(grace.addr(), "/").unwrap().body,
            "generation one",
            "reload / {}: the old config serves",
            case.name
        );
    }
    // The file deleted between reloads: the missing-file case above, after a
    // good file was served. And a good file after all that is taken.
    clear(&path);
    write_atomically(
        &path,
        b"message = \"generation two\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
    );
    grace.signal(Signal::HUP);
    assert!(grace
        .log()
        .wait_for("reload accepted")
        .contains("generation=2"));
    assert_eq!(get(grace.addr(), "/").unwrap().body, "generation two");
    assert_eq!(grace.log().count("reload accepted"), 1);
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn a_config_file_deleted_after_start_is_a_rejected_reload() {
    let mut grace = Grace::start(&support::config("kept", "", ""));
    std::fs::remove_file(grace.config_path()).unwrap();
    grace.signal(Signal::HUP);
    let line = grace.log().wait_for("reload rejected");
    assert!(
        line.contains(&format!(
            "{}: cannot read the config file: No such file or directory",
            grace.config_path().display()
        )),
        "{line}"
    );
    assert!(grace.is_running());
    assert_eq!(get(grace.addr(), "/").unwrap().body, "kept");
}
