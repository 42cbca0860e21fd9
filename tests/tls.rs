//! TLS listeners against the real binary: HTTP/1.1 and h2 over TLS,
//! certificate rotation on reload, bad certificates rejected, SNI, drain and
//! upgrade. Certificates are made here, with a test CA.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SerialNumber};
use rustix::process::Signal;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::h2;
use support::{eventually, run, Grace, SOON};

/// The exit code for a bad configuration (EX_CONFIG).
const CONFIG: i32 = 78;

/// A test certificate authority that signs leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and key, as PEM, with its DER to compare against what
/// a handshake presents.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "grace test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `names`, with serial `serial`, valid from
    /// `from` to `until` (years; `None` keeps rcgen's wide default).
    fn leaf_dated(&self, names: &[&str], serial: u64, years: Option<(i32, i32)>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        if let Some((from, until)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(until, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        self.leaf_dated(names, serial, None)
    }

    /// A client that trusts this CA only, offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Leaf {
    /// Writes the pair as `name.pem` and `name.key` in `dir`, each
    /// atomically (temporary file, then rename), as certbot's symlinks and
    /// Kubernetes' secret volumes do.
    fn write(&self, dir: &Path, name: &str) {
        write_atomic(&dir.join(format!("{name}.pem")), &self.cert_pem);
        write_atomic(&dir.join(format!("{name}.key")), &self.key_pem);
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes a full handshake, asking for `name`. Session
/// resumption is off: a resumed session shows the certificate of the
/// session it resumes, not the one the server would present now.
fn connect(config: &Arc<ClientConfig>, addr: SocketAddr, name: &str) -> std::io::Result<Tls> {
    let mut config = ClientConfig::clone(config);
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(SOON))?;
    tcp.set_write_timeout(Some(SOON))?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = ClientConnection::new(config.clone(), server_name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The leaf certificate the server presented.
fn presented(stream: &Tls) -> CertificateDer<'static> {
    stream.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One HTTP/1.1 request on a keep-alive connection: (status, body).
fn get(stream: &mut Tls, path: &str) -> (u16, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    stream.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn next_frame(stream: &mut Tls) -> h2::Frame {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).unwrap();
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    h2::Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
        payload,
    }
}

/// A TLS server's config: plain `127.0.0.1:0` (for /metrics), TLS on
/// `127.0.0.2:0`, `tls.pem`/`tls.key` beside the config file.
fn tls_config(extra_tls: &str, rest: &str) -> String {
    format!(
        "message = \"hello\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [server.tls]\nlisten = [\"127.0.0.2:0\"]\ncert = \"tls.pem\"\nkey = \"tls.key\"\n\
         {extra_tls}\n{rest}\n"
    )
}

/// Starts grace with `config` after writing `leaf` as `tls.pem`/`tls.key`.
fn start(leaf: &Leaf, config: &str) -> (Grace, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    leaf.write(dir.path(), "tls");
    let socket = dir.path().join("control.sock");
    let grace = Grace::start_program(
        Path::new(support::BIN),
        dir,
        config,
        &["--control-socket", socket.to_str().unwrap()],
        &[],
    );
    let addr = tls_addr(&grace);
    (grace, addr)
}

fn tls_addr(grace: &Grace) -> SocketAddr {
    *grace
        .addrs()
        .iter()
        .find(|a| a.ip() == std::net::Ipv4Addr::new(127, 0, 0, 2))
        .expect("a TLS listener on 127.0.0.2")
}

fn reload(grace: &Grace, verdict: &str, count: usize) -> String {
    grace.signal(Signal::HUP);
    grace.log().wait_count(verdict, count, SOON)
}

#[test]
fn serves_http1_and_h2_over_tls() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"], 1);
    let (grace, addr) = start(&leaf, &tls_config("", ""));
    let log = grace.log().text();
    assert!(log.contains("scheme=\"https\""), "{log}");

    // HTTP/1.1, keep-alive: two requests on one connection.
    let mut h1 = connect(&ca.client(&[b"http/1.1"]), addr, "localhost").unwrap();
    assert_eq!(presented(&h1), leaf.der);
    assert_eq!(h1.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get(&mut h1, "/"), (200, "hello".to_owned()));
    assert_eq!(get(&mut h1, "/"), (200, "hello".to_owned()));

    // h2 through ALPN, then frames.
    let mut h2c = connect(&ca.client(&[b"h2", b"http/1.1"]), addr, "localhost").unwrap();
    assert_eq!(h2c.conn.alpn_protocol(), Some(&b"h2"[..]));
    h2c.write_all(h2::PREFACE).unwrap();
    h2c.write_all(&h2::frame(h2::SETTINGS, 0, 0, &[])).unwrap();
    h2c.write_all(&h2::get(1, "/")).unwrap();
    h2c.flush().unwrap();
    let mut body = Vec::new();
    let mut status = None;
    loop {
        let frame = next_frame(&mut h2c);
        match frame.kind {
            h2::SETTINGS if frame.flags & h2::ACK == 0 => {
                h2c.write_all(&h2::frame(h2::SETTINGS, h2::ACK, 0, &[]))
                    .unwrap();
            }
            // HPACK static index 8 is `:status: 200`.
            h2::HEADERS if frame.stream == 1 => status = Some(frame.payload[0]),
            h2::DATA if frame.stream == 1 => {
                body.extend_from_slice(&frame.payload);
                if frame.flags & h2::END_STREAM != 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(status, Some(0x88), "HEADERS with :status 200");
    assert_eq!(body, b"hello");
}

#[test]
fn a_reload_rotates_the_certificate_and_open_connections_keep_working() {
    let ca = Ca::new();
    let old = ca.leaf(&["localhost"], 1001);
    let (grace, addr) = start(&old, &tls_config("", ""));
    let client = ca.client(&[b"http/1.1"]);
    let mut open = connect(&client, addr, "localhost").unwrap();
    assert_eq!(get(&mut open, "/"), (200, "hello".to_owned()));

    let new = ca.leaf(&["localhost"], 2002);
    new.write(grace.dir.path(), "tls");
    // Through the control socket: the verdict comes back on it.
    let reply = grace.control(r#"{"cmd":"reload"}"#);
    assert_eq!(reply[0]["reply"], "reloaded", "{reply:?}");

    let fresh = connect(&client, addr, "localhost").unwrap();
    assert_eq!(
        presented(&fresh),
        new.der,
        "a new handshake gets the new one"
    );
    assert_eq!(presented(&open), old.der);
    assert_eq!(
        get(&mut open, "/"),
        (200, "hello".to_owned()),
        "the connection made before the rotation keeps working"
    );
    let metrics = support::http::get(grace.addr(), "/metrics").unwrap().body;
    let expiry = metrics
        .lines()
        .find(|l| l.starts_with("grace_tls_certificate_expiry_timestamp_seconds{"))
        .unwrap_or_else(|| panic!("no certificate metric:\n{metrics}"));
    // 2002 = 0x07d2.
    assert!(expiry.contains("serial=\"07:d2\""), "{expiry}");
    assert!(expiry.contains("subject=\"CN=localhost\""), "{expiry}");
    let status = grace.control(r#"{"cmd":"status"}"#);
    let certs = &status[0]["certificates"];
    assert_eq!(certs[0]["serial"], "07:d2", "{status:?}");
    assert_eq!(certs[0]["name"], "default", "{status:?}");
}

#[test]
fn bad_certificates_are_rejected_and_the_old_one_keeps_serving() {
    let ca = Ca::new();
    let good = ca.leaf(&["localhost"], 7);
    let (grace, addr) = start(&good, &tls_config("", ""));
    let dir = grace.dir.path().to_owned();
    let client = ca.client(&[b"http/1.1"]);
    let other = ca.leaf(&["localhost"], 8);
    let expired = ca.leaf_dated(&["localhost"], 9, Some((2000, 2001)));
    let future = ca.leaf_dated(&["localhost"], 10, Some((2090, 2091)));

    type Break = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "missing key file",
            Box::new(|d: &Path| std::fs::remove_file(d.join("tls.key")).unwrap()),
            "tls.key",
        ),
        (
            "key of another certificate",
            Box::new(move |d: &Path| write_atomic(&d.join("tls.key"), &other.key_pem)),
            "does not match",
        ),
        (
            "expired",
            Box::new(move |d: &Path| expired.write(d, "tls")),
            "expired at 2001-01-01T00:00:00Z",
        ),
        (
            "not yet valid",
            Box::new(move |d: &Path| future.write(d, "tls")),
            "not valid before 2090-01-01T00:00:00Z",
        ),
        (
            "garbage PEM",
            Box::new(|d: &Path| {
                write_atomic(
                    &d.join("tls.pem"),
                    "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
                )
            }),
            "tls.pem is not valid PEM",
        ),
        (
            "no certificate in the file",
            Box::new(|d: &Path| write_atomic(&d.join("tls.pem"), "just text\n")),
            "holds no certificate",
        ),
    ];
    for (i, (case, break_it, expect)) in cases.iter().enumerate() {
        good.write(&dir, "tls");
        break_it(&dir);
        let line = reload(&grace, "reload rejected", i + 1);
        assert!(line.contains(expect), "{case}: {line}");
        let fresh = connect(&client, addr, "localhost").unwrap();
        assert_eq!(presented(&fresh), good.der, "{case}: the old one serves");
        // `grace check` says the same, with the config's exit code.
        let config = grace.config_path();
        let (code, out, err) = run(&["check", "--config", config.to_str().unwrap()], &dir);
        assert_eq!(code, CONFIG, "{case}: {out}{err}");
        assert!(err.contains(expect), "{case}: {err}");
    }
    assert_eq!(grace.log().count("reload accepted"), 0);
}

#[test]
fn a_bad_certificate_at_start_exits_78_naming_the_file() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    ca.leaf_dated(&["localhost"], 3, Some((2000, 2001)))
        .write(dir.path(), "tls");
    std::fs::write(dir.path().join("grace.toml"), tls_config("", "")).unwrap();
    let config = dir.path().join("grace.toml");
    let (code, out, err) = run(&["serve", "--config", config.to_str().unwrap()], dir.path());
    assert_eq!(code, CONFIG, "{out}{err}");
    assert!(err.contains("tls.pem expired at 2001-01-01"), "{err}");

    // Allowed by configuration: it serves, with a loud warning.
    let expired = ca.leaf_dated(&["localhost"], 4, Some((2000, 2001)));
    let (mut grace, addr) = start(&expired, &tls_config("allow_expired = true", ""));
    grace.log().wait_for("SERVING AN INVALID CERTIFICATE");
    let stream = connect(&ca.client(&[]), addr, "localhost");
    assert!(stream.is_err(), "a verifying client refuses it");
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn sni_picks_the_certificate_for_the_name_asked() {
    let ca = Ca::new();
    let default = ca.leaf(&["localhost"], 1);
    let api = ca.leaf(&["api.test"], 2);
    let wild = ca.leaf(&["*.wild.test"], 3);
    let sni = "[[server.tls.sni]]\nnames = [\"api.test\"]\ncert = \"api.pem\"\nkey = \"api.key\"\n\
               [[server.tls.sni]]\nnames = [\"*.wild.test\"]\ncert = \"wild.pem\"\nkey = \"wild.key\"\n";
    let dir = tempfile::tempdir().unwrap();
    default.write(dir.path(), "tls");
    api.write(dir.path(), "api");
    wild.write(dir.path(), "wild");
    let grace = Grace::start_program(Path::new(support::BIN), dir, &tls_config(sni, ""), &[], &[]);
    let addr = tls_addr(&grace);
    let client = ca.client(&[b"http/1.1"]);
    for (name, want) in [
        ("localhost", &default),
        ("api.test", &api),
        ("API.TEST", &api),
        ("a.wild.test", &wild),
    ] {
        let mut stream = connect(&client, addr, name).unwrap();
        assert_eq!(presented(&stream), want.der, "{name}");
        assert_eq!(get(&mut stream, "/").0, 200, "{name}");
    }
    // Not covered by any: the default (which the client then refuses).
    let err = connect(&client, addr, "b.a.wild.test").unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn a_drain_over_tls_completes_the_request_in_flight_and_exits_0() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"], 1);
    let slow = "[[routes]]\npath = \"/slow\"\ndelay = \"1s\"\nbody = \"slow done\"\n";
    let (mut grace, addr) = start(&leaf, &tls_config("", slow));
    let client = ca.client(&[b"http/1.1"]);
    let mut stream = connect(&client, addr, "localhost").unwrap();
    let pending = std::thread::spawn(move || get(&mut stream, "/slow"));
    // In flight once the metrics count it.
    support::eventually(SOON, "the slow request to be in flight", || {
        let text = support::http::get(grace.addr(), "/metrics").ok()?.body;
        text.lines()
            .any(|l| l.starts_with("grace_requests_in_flight") && l.ends_with(" 1"))
            .then_some(())
    });
    grace.signal(Signal::TERM);
    grace.log().wait_for("drain started");
    assert_eq!(pending.join().unwrap(), (200, "slow done".to_owned()));
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn an_upgrade_serves_tls_on_the_inherited_socket() {
    let ca = Ca::new();
    let old = ca.leaf(&["localhost"], 1);
    let (grace, addr) = start(&old, &tls_config("", ""));
    let client = ca.client(&[b"http/1.1"]);
    let mut open = connect(&client, addr, "localhost").unwrap();
    assert_eq!(get(&mut open, "/"), (200, "hello".to_owned()));

    // The new process reads the files anew.
    let new = ca.leaf(&["localhost"], 2);
    new.write(grace.dir.path(), "tls");
    let pid_file = grace.pid_file();
    let (code, out, err) = run(
        &["upgrade", "--pid-file", pid_file.to_str().unwrap()],
        grace.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    // The verdict comes once the new process serves; the old one may still
    // take a connection from the shared socket until its accept loop has
    // stopped (and serves it in full), so wait for the new certificate.
    let mut fresh = eventually(SOON, "a fresh connection to reach the new process", || {
        let fresh = connect(&client, addr, "localhost").unwrap();
        (presented(&fresh) == new.der).then_some(fresh)
    });
    assert_eq!(get(&mut fresh, "/"), (200, "hello".to_owned()));
    grace
        .log()
        .wait_for("using inherited socket name=\"127.0.0.2:0\"");
    grace.log().wait_for("exiting code=0");
}

#[test]
fn a_silent_handshake_is_closed_at_the_timeout_and_does_not_hold_the_drain() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"], 1);
    let (mut grace, addr) = start(&leaf, &tls_config("handshake_timeout = \"300ms\"", ""));
    // Connects and never sends a ClientHello.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(SOON)).unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "closed by the server: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(250) && waited < SOON / 2,
        "closed at the timeout, after {waited:?}"
    );

    // One more silent client, then a drain: it ends at the handshake
    // timeout, well before the drain's deadline.
    let _silent = TcpStream::connect(addr).unwrap();
    let _ = connect(&ca.client(&[]), addr, "localhost").unwrap();
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    let line = grace.log().wait_for("drain finished");
    assert!(line.contains("all connections closed"), "{line}");
}

#[test]
fn a_drain_sends_h2_clients_the_two_step_goaway_over_tls() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"], 1);
    let (mut grace, addr) = start(&leaf, &tls_config("", ""));
    let mut h2c = connect(&ca.client(&[b"h2"]), addr, "localhost").unwrap();
    h2c.write_all(h2::PREFACE).unwrap();
    h2c.write_all(&h2::frame(h2::SETTINGS, 0, 0, &[])).unwrap();
    h2c.write_all(&h2::get(1, "/")).unwrap();
    h2c.flush().unwrap();
    // The answer to stream 1 first: the connection is up and served.
    loop {
        let frame = next_frame(&mut h2c);
        if frame.kind == h2::SETTINGS && frame.flags & h2::ACK == 0 {
            h2c.write_all(&h2::frame(h2::SETTINGS, h2::ACK, 0, &[]))
                .unwrap();
        }
        if frame.kind == h2::DATA && frame.flags & h2::END_STREAM != 0 {
            break;
        }
    }
    grace.signal(Signal::TERM);
    let last_stream = |f: &h2::Frame| u32::from_be_bytes(f.payload[..4].try_into().unwrap());
    let mut goaways = Vec::new();
    while goaways.len() < 2 {
        let frame = next_frame(&mut h2c);
        match frame.kind {
            h2::GOAWAY => goaways.push(last_stream(&frame) & 0x7fff_ffff),
            h2::PING if frame.flags & h2::ACK == 0 => {
                h2c.write_all(&h2::frame(h2::PING, h2::ACK, 0, &frame.payload))
                    .unwrap();
                h2c.flush().unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(
        goaways,
        vec![0x7fff_ffff, 1],
        "first the maximum, then the real last stream"
    );
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

#[test]
fn a_reload_adds_tls_addresses_and_refuses_to_move_one_from_plain() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"], 1);
    let (grace, _) = start(&leaf, &tls_config("", ""));
    // The plain address moves to TLS: its socket would have to be rebound.
    grace.write_config(
        "message = \"hello\"\n[server]\nlisten = []\n[server.tls]\n\
         listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\ncert = \"tls.pem\"\nkey = \"tls.key\"\n",
    );
    let line = reload(&grace, "reload rejected", 1);
    assert!(line.contains("needs an upgrade"), "{line}");

    // A new TLS address starts serving with the certificates.
    grace.write_config(&tls_config("", "").replace(
        "listen = [\"127.0.0.2:0\"]",
        "listen = [\"127.0.0.2:0\", \"127.0.0.3:0\"]",
    ));
    reload(&grace, "reload accepted", 1);
    let line = grace.log().wait_for("listening on 127.0.0.3:");
    let added: SocketAddr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = connect(&ca.client(&[]), added, "localhost").unwrap();
    assert_eq!(presented(&stream), leaf.der);
    assert_eq!(get(&mut stream, "/"), (200, "hello".to_owned()));
}

#[test]
fn a_certificate_close_to_expiry_is_warned_about_at_load() {
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.serial_number = Some(SerialNumber::from(77u64));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(80);
    params.not_after = now + time::Duration::days(7);
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let leaf = Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    };
    let (grace, addr) = start(&leaf, &tls_config("", ""));
    let line = grace.log().wait_for("certificate expires soon");
    assert!(
        line.contains("days_left=6") || line.contains("days_left=7"),
        "{line}"
    );
    // It still serves: close to expiry is not expired.
    let stream = connect(&ca.client(&[]), addr, "localhost").unwrap();
    assert_eq!(presented(&stream), leaf.der);
    let metrics = support::http::get(grace.addr(), "/metrics").unwrap().body;
    let left: f64 = metrics
        .lines()
        .find(|l| l.starts_with("grace_tls_certificate_expires_in_seconds{"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(left > 6.0 * 86_400.0 && left <= 7.0 * 86_400.0, "{left}");
}
