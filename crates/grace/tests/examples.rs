//! Each example, started for real: it serves, reloads on SIGHUP (or hands
//! its socket over on SIGUSR2), and drains on SIGTERM to exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

const SOON: Duration = Duration::from_secs(20);

/// The example binaries sit next to this test's directory in the target dir
/// (`cargo test` builds examples before running tests).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(example(name))
            .args(args)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("example {name} (built by cargo test): {e}"));
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = running.wait_for("listening on ");
        running.addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        running
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + SOON;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?}");
    }

    fn signal(&self, signal: Signal) {
        kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), signal).unwrap();
    }

    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + SOON;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the example did not exit");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Starts `name` on a file holding `first`, reloads it to `second`, stops it.
fn reload_and_stop(name: &str, first: &str, second: &str, expect: (&str, &str)) {
    let dir = tempfile_dir();
    let file = dir.join("config");
    std::fs::write(&file, first).unwrap();
    let mut running = Running::start(name, &[file.to_str().unwrap(), "127.0.0.1:0"]);
    assert_eq!(get(running.addr), expect.0);
    std::fs::write(&file, second).unwrap();
    running.signal(Signal::HUP);
    running.wait_for("reload accepted");
    assert_eq!(get(running.addr), expect.1);
    running.signal(Signal::TERM);
    assert_eq!(running.exit_code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "grace-example-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn axum_example_reloads_and_drains() {
    reload_and_stop("axum", "hello\n", "bonjour\n", ("hello", "bonjour"));
}

#[test]
fn hyper_example_reloads_and_drains() {
    reload_and_stop("hyper", "hello\n", "hallo\n", ("hello", "hallo"));
}

#[test]
fn custom_config_example_validates_its_own_type() {
    let dir = tempfile_dir();
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        "greeting = \"hi\"\nmax_len = 5\nshutdown_timeout_secs = 5\n",
    )
    .unwrap();
    let mut running = Running::start("custom_config", &[file.to_str().unwrap(), "127.0.0.1:0"]);
    assert_eq!(get(running.addr), "hi");
    std::fs::write(
        &file,
        "greeting = \"far too long\"\nmax_len = 5\nshutdown_timeout_secs = 5\n",
    )
    .unwrap();
    running.signal(Signal::HUP);
    let line = running.wait_for("reload rejected");
    assert!(
        line.contains("greeting is 12 bytes, more than max_len = 5"),
        "{line}"
    );
    assert_eq!(get(running.addr), "hi");
    running.signal(Signal::TERM);
    assert_eq!(running.exit_code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn echo_example_hands_its_socket_over_and_drains() {
    let mut running = Running::start("echo", &["127.0.0.1:0"]);
    let echo = |addr| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(SOON)).unwrap();
        stream.write_all(b"ping\n").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    };
    assert_eq!(echo(running.addr), "ping\n");
    running.signal(Signal::USR2);
    let ready = running.wait_for("the new process is ready");
    let new_pid: i32 = ready
        .split("new_pid=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{ready}"));
    // The old process drains and exits 0; the new one has the same socket.
    assert_eq!(running.exit_code(), Some(0));
    assert_eq!(echo(running.addr), "ping\n");

    // The new process is ours too (a descendant): stop it, by its pid.
    let new = Pid::from_raw(new_pid).unwrap();
    kill_process(new, Signal::TERM).unwrap();
    let deadline = Instant::now() + SOON;
    while std::path::Path::new(&format!("/proc/{new_pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        TcpStream::connect(running.addr).is_err(),
        "nothing listens after the drain"
    );
}
