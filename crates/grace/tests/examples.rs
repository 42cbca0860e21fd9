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
    /// Every line read so far.
    seen: Vec<String>,
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
            seen: Vec::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = running.wait_for("listening on ");
        // The library's path must be the correct one: sockets and
        // environment taken while the process has one thread.
        assert!(
            !running
                .seen
                .iter()
                .any(|l| l.contains("while other threads run")),
            "{name}: {:#?}",
            running.seen
        );
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
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
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
    get_path(addr, "/")
}

fn get_path(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
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
fn hyper_example_answers_readiness_from_the_library() {
    let dir = tempfile_dir();
    let file = dir.join("config");
    std::fs::write(&file, "hello\n").unwrap();
    let mut running = Running::start("hyper", &[file.to_str().unwrap(), "127.0.0.1:0"]);
    assert_eq!(get_path(running.addr, "/readyz"), "ready\n");
    assert_eq!(get_path(running.addr, "/healthz"), "ok\n");
    assert_eq!(get(running.addr), "hello");
    running.signal(Signal::TERM);
    assert_eq!(running.exit_code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
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

/// The `tls` example: HTTPS, and a certificate rotated by SIGHUP.
#[cfg(feature = "tls")]
mod tls {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::sync::Arc;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SerialNumber};
    use rustix::process::Signal;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::{tempfile_dir, Running, SOON};

    fn write_leaf(
        dir: &Path,
        ca: &rcgen::Certificate,
        ca_key: &KeyPair,
        serial: u64,
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, ca, ca_key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// Full handshake (no resumption) and one request: the certificate
    /// presented, and the body.
    fn fetch(roots: &rustls::RootCertStore, addr: SocketAddr) -> (CertificateDer<'static>, String) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(SOON)).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        // The server's close_notify ends the stream cleanly.
        stream.read_to_end(&mut response).unwrap();
        let cert = stream.conn.peer_certificates().unwrap()[0].clone();
        let text = String::from_utf8(response).unwrap();
        (
            cert,
            text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
        )
    }

    #[test]
    fn tls_example_serves_https_and_rotates_its_certificate_on_sighup() {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();

        let dir = tempfile_dir();
        let first = write_leaf(&dir, &ca, &ca_key, 1);
        let mut running = Running::start("tls", &[dir.to_str().unwrap(), "127.0.0.1:0"]);
        assert_eq!(
            fetch(&roots, running.addr),
            (first.clone(), "hello over tls".into())
        );

        // A key that is not the certificate's: rejected, the first serves on.
        let other = KeyPair::generate().unwrap();
        std::fs::write(dir.join("key.pem"), other.serialize_pem()).unwrap();
        running.signal(Signal::HUP);
        let line = running.wait_for("reload rejected");
        assert!(line.contains("does not match"), "{line}");
        assert_eq!(fetch(&roots, running.addr).0, first);

        let second = write_leaf(&dir, &ca, &ca_key, 2);
        running.signal(Signal::HUP);
        running.wait_for("reload accepted");
        assert_eq!(fetch(&roots, running.addr).0, second);

        running.signal(Signal::TERM);
        assert_eq!(running.exit_code(), Some(0));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// The `axum_admin` example: what a service gets from the library beyond
/// reload and drain.
#[cfg(all(feature = "tower", feature = "metrics"))]
mod axum_admin {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    use rustix::process::Signal;

    use super::{get, tempfile_dir, Running, SOON};

    /// One request on a keep-alive connection: status and body.
    fn request(conn: &mut BufReader<TcpStream>, method: &str, path: &str) -> (u16, String) {
        write!(
            conn.get_mut(),
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut status_line = String::new();
        conn.read_line(&mut status_line).unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{status_line:?}"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    fn connect(addr: std::net::SocketAddr) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(SOON)).unwrap();
        BufReader::new(stream)
    }

    #[test]
    fn axum_admin_example_gets_verdicts_a_controller_reload_readiness_and_metrics() {
        let dir = tempfile_dir();
        let file = dir.join("greeting");
        std::fs::write(&file, "hello\n").unwrap();
        let mut running = Running::start("axum_admin", &[file.to_str().unwrap(), "127.0.0.1:0"]);
        let mut conn = connect(running.addr);
        assert_eq!(request(&mut conn, "GET", "/"), (200, "hello".into()));
        assert_eq!(request(&mut conn, "GET", "/healthz"), (200, "ok\n".into()));
        assert_eq!(
            request(&mut conn, "GET", "/readyz"),
            (200, "ready\n".into())
        );

        // A reload the service asks for itself, through its admin route.
        std::fs::write(&file, "bonjour\n").unwrap();
        assert_eq!(
            request(&mut conn, "POST", "/admin/reload"),
            (200, "reloaded: generation 2\n".into())
        );
        assert_eq!(get(running.addr), "bonjour");
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(
            request(&mut conn, "POST", "/admin/reload"),
            (422, "rejected: the greeting is empty\n".into())
        );
        running.wait_for("reload verdict: rejected: the greeting is empty");
        // A signal's verdict reaches the service too.
        running.signal(Signal::HUP);
        running.wait_for("reload verdict: rejected: the greeting is empty");
        assert_eq!(
            request(&mut conn, "GET", "/admin/verdicts"),
            (
                200,
                "accepted: generation 2\nrejected: the greeting is empty\n\
                 rejected: the greeting is empty\n"
                    .into()
            )
        );
        assert_eq!(get(running.addr), "bonjour");

        let (status, metrics) = request(&mut conn, "GET", "/metrics");
        assert_eq!(status, 200);
        for line in [
            "grace_config_generation 2\n",
            "grace_config_reloads_total{result=\"accepted\"} 1\n",
            "grace_config_reloads_total{result=\"rejected\"} 2\n",
            "grace_shutdown_phase{phase=\"running\"} 1\n",
        ] {
            assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
        }
        assert!(
            metrics.contains("grace_http_requests_total{class=\"2xx\"}"),
            "{metrics}"
        );

        // Stopping: readiness fails at once while the example serves on for
        // its shutdown delay, then the background work ends with the drain.
        running.signal(Signal::TERM);
        running.wait_for("shutdown started");
        assert_eq!(
            request(&mut conn, "GET", "/readyz"),
            (503, "shutting down\n".into())
        );
        running.wait_for("background work stopped: draining");
        assert_eq!(running.exit_code(), Some(0));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
