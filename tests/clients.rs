//! Hostile or broken clients: slow, silent, greedy, rude or speaking
//! nonsense. Each limit is tested at its edge; the server stays up and keeps
//! answering the others.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::h2::{self, H2};
use support::http::{get, Conn};
use support::{config, Grace, SOON};

const FORCED: i32 = 75;

fn limits(lines: &str) -> String {
    format!("[limits]\n{lines}\n")
}

fn slow_route(delay: &str) -> String {
    format!("[[routes]]\npath = \"/slow\"\ndelay = \"{delay}\"\nbody = \"slow done\"\n")
}

fn big_route(bytes: usize) -> String {
    format!(
        "[[routes]]\npath = \"/big\"\nbody = \"{}\"\n",
        "x".repeat(bytes)
    )
}

/// Everything the server sends until it closes (or `SOON` passes).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "reading: {e}; got so far {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Sends one byte a second until the server closes; returns how long that
/// took.
fn slowloris(addr: SocketAddr, prefix: &[u8]) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    s.write_all(prefix).unwrap();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(60) {
        if s.write_all(b"a").is_err() {
            return started.elapsed();
        }
        match s.read(&mut buf) {
            // Pacing: the read times out after a second.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // A response (408) or EOF or a reset: closed.
            _ => return started.elapsed(),
        }
    }
    panic!("a slowloris client held its connection for a minute");
}

#[test]
fn a_slowloris_client_cannot_hold_a_connection_past_the_header_timeout() {
    let grace = Grace::start(&config("m", "", &limits("header_read_timeout = \"3s\"")));
    // In the middle of the head...
    let held = slowloris(grace.addr(), b"GET / HTTP/1.1\r\nX-Slow: ");
    assert!(
        held >= Duration::from_millis(2500),
        "closed early: {held:?}"
    );
    assert!(held < Duration::from_secs(15), "held for {held:?}");
    // ...and before the first byte: a silent connection.
    let mut silent = Conn::open(grace.addr()).unwrap();
    silent.expect_eof(SOON).unwrap();
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn a_slowloris_client_cannot_hold_the_shutdown_past_its_deadline() {
    let mut grace = Grace::start(&config(
        "m",
        "shutdown_timeout = \"2s\"",
        &limits("header_read_timeout = \"60s\""),
    ));
    let addr = grace.addr();
    let client = std::thread::spawn(move || slowloris(addr, b"GET / HTTP/1.1\r\nX-Slow: "));
    // The scenario, not a synchronisation: the client is mid-head, sending
    // a byte a second, when the shutdown begins.
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    grace.signal(Signal::TERM);
    let status = grace.wait_exit(SOON);
    assert!(
        matches!(status.code(), Some(0) | Some(FORCED)),
        "{status:?}"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(12),
        "{:?}",
        signalled.elapsed()
    );
    client.join().unwrap();
}

#[test]
fn headers_over_the_limit_get_431_and_under_it_are_served() {
    let grace = Grace::start(&config("m", "", ""));
    let request = |header_bytes: usize| {
        let mut s = TcpStream::connect(grace.addr()).unwrap();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(header_bytes)
        );
        s.write_all(req.as_bytes()).unwrap();
        status_of(&read_all(&mut s))
    };
    // The default limit is 32 KiB for the whole head.
    assert_eq!(request(30 * 1024), 200);
    assert_eq!(request(33 * 1024), 431);
    assert_eq!(request(200 * 1024), 431);
    // Too many headers is too large a head as well.
    let mut s = TcpStream::connect(grace.addr()).unwrap();
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes())
        .unwrap();
    assert_eq!(status_of(&read_all(&mut s)), 431);
    assert_eq!(get(grace.addr(), "/").unwrap().status, 200);
}

#[test]
fn a_configured_header_limit_applies_to_http1_and_http2() {
    let grace = Grace::start(&config("m", "", &limits("max_header_size = 4096")));
    let mut s = TcpStream::connect(grace.addr()).unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(status_of(&read_all(&mut s)), 431);

    let mut conn = H2::open(grace.addr()).unwrap();
    assert_eq!(
        conn.server_setting(0x6),
        Some(4096),
        "SETTINGS_MAX_HEADER_LIST_SIZE"
    );
    // GET / with a 5000-byte header (HPACK literal, new name, length as a
    // 7-bit-prefix integer).
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 4];
    block.extend_from_slice(b"test");
    block.extend_from_slice(&[0x00, 5]);
    block.extend_from_slice(b"x-big");
    let mut len = 5000 - 127;
    block.push(0x7f);
    while len >= 128 {
        block.push((len % 128) as u8 | 0x80);
        len /= 128;
    }
    block.push(len as u8);
    block.extend_from_slice(&[b'b'; 5000]);
    conn.send(&h2::frame(
        h2::HEADERS,
        h2::END_STREAM | h2::END_HEADERS,
        1,
        &block,
    ))
    .unwrap();
    let headers = loop {
        let f = conn.next().expect("a response to the oversized request");
        if f.kind == h2::HEADERS && f.stream == 1 {
            break f;
        }
    };
    // `:status` (indexed name 8) with the Huffman-coded value "431".
    assert_eq!(
        headers.payload,
        [0x48, 0x83, 0x69, 0x90, 0xff],
        ":status 431"
    );
}

#[test]
fn at_the_connection_limit_the_excess_waits_and_the_others_are_served() {
    let grace = Grace::start(&config(
        "m",
        "",
        &limits("max_connections = 3\nheader_read_timeout = \"2s\""),
    ));
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", grace.pid()))
            .unwrap()
            .count()
    };
    let mut kept_alive = Conn::open(grace.addr()).unwrap();
    assert_eq!(kept_alive.get("/").unwrap().body, "m");
    let baseline = fds();
    // Eight silent connections: two get slots, the rest wait in the backlog.
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(grace.addr()).unwrap())
        .collect();
    grace.log().wait_for("connection limit reached");
    // The connection already accepted is served as before.
    for _ in 0..5 {
        assert_eq!(kept_alive.get("/").unwrap().body, "m");
    }
    assert!(fds() <= baseline + 2, "{} fds, baseline {baseline}", fds());
    // Silent ones time out and free their slots; the queue moves (three at a
    // time, every two seconds), and a new client is served in its turn.
    drop(kept_alive);
    let res = get(grace.addr(), "/").unwrap();
    assert_eq!(res.body, "m");
    drop(silent);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let grace = Grace::start(&config("m", "", &limits("idle_timeout = \"1s\"")));
    let mut idle = Conn::open(grace.addr()).unwrap();
    assert_eq!(idle.get("/").unwrap().body, "m");
    let since = Instant::now();
    idle.expect_eof(SOON).unwrap();
    assert!(
        since.elapsed() >= Duration::from_millis(800),
        "{:?}",
        since.elapsed()
    );

    // A connection in use is not idle.
    let mut busy = Conn::open(grace.addr()).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(busy.get("/").unwrap().body, "m");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_idle_http2_connection_gets_goaway_then_is_closed() {
    let grace = Grace::start(&config("m", "", &limits("idle_timeout = \"1s\"")));
    let mut conn = H2::open(grace.addr()).unwrap();
    let (status, _) = conn.request(1, "/").unwrap();
    assert_eq!(status, 0x88);
    let mut goaway = false;
    // This client never answers the GOAWAY's PING: it is dropped after one
    // more idle timeout.
    while let Some(f) = conn.next() {
        goaway |= f.kind == h2::GOAWAY;
    }
    assert!(goaway, "a GOAWAY before the close");
}

#[test]
fn pings_do_not_keep_an_idle_http2_connection_open() {
    let grace = Grace::start(&config("m", "", &limits("idle_timeout = \"1s\"")));
    let mut conn = H2::open(grace.addr()).unwrap();
    assert_eq!(conn.request(1, "/").unwrap().0, 0x88);
    let mut writer = conn.stream.try_clone().unwrap();
    let pinger = std::thread::spawn(move || {
        // A PING every 200 ms until the server closes: bytes, but no request.
        while writer
            .write_all(&h2::frame(h2::PING, 0, 0, &[7; 8]))
            .is_ok()
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut goaway = false;
    while let Some(f) = conn.next() {
        goaway |= f.kind == h2::GOAWAY;
    }
    assert!(goaway, "a GOAWAY before the close");
    pinger.join().unwrap();
}

#[test]
fn a_client_that_never_reads_cannot_hold_the_drain() {
    let mut grace = Grace::start(&config(
        "m",
        "shutdown_timeout = \"60s\"",
        &(limits("write_timeout = \"1s\"") + &big_route(500_000)),
    ));
    let mut s = TcpStream::connect(grace.addr()).unwrap();
    // Thirty pipelined requests for 500 KB each, never read: the writes
    // stall once the socket buffers are full.
    for _ in 0..30 {
        s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let signalled = Instant::now();
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "{:?}",
        signalled.elapsed()
    );
    drop(s);
}

#[test]
fn http2_concurrent_streams_are_limited() {
    let grace = Grace::start(&config(
        "m",
        "",
        &(limits("http2_max_concurrent_streams = 4") + &slow_route("2s")),
    ));
    let mut conn = H2::open(grace.addr()).unwrap();
    assert_eq!(
        conn.server_setting(0x3),
        Some(4),
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    // Our SETTINGS ACK went out with the server's; now six streams at once.
    for id in [1, 3, 5, 7, 9, 11] {
        conn.send(&h2::get(id, "/slow")).unwrap();
    }
    let mut done = Vec::new();
    let mut refused = Vec::new();
    while done.len() + refused.len() < 6 {
        let f = conn.next().expect("frames until every stream is settled");
        match f.kind {
            h2::RST_STREAM => refused.push((f.stream, f.error_code())),
            h2::DATA if f.flags & h2::END_STREAM != 0 => done.push(f.stream),
            _ => {}
        }
    }
    assert_eq!(done.len(), 4, "done {done:?}, refused {refused:?}");
    assert!(
        refused.iter().all(|(_, code)| *code == 0x7),
        "REFUSED_STREAM: {refused:?}"
    );
}

#[test]
fn a_rapid_reset_flood_is_cut_with_enhance_your_calm() {
    let grace = Grace::start(&config("m", "", &slow_route("10s")));
    let mut conn = H2::open(grace.addr()).unwrap();
    let mut burst = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        burst.extend_from_slice(&h2::get(id, "/slow"));
        burst.extend_from_slice(&h2::frame(h2::RST_STREAM, 0, id, &h2::CANCEL.to_be_bytes()));
    }
    // The server may close before it read it all.
    let _ = conn.send(&burst);
    let mut calm = None;
    while let Some(f) = conn.next() {
        if f.kind == h2::GOAWAY {
            calm = Some(f.error_code());
        }
    }
    assert_eq!(
        calm,
        Some(h2::ENHANCE_YOUR_CALM),
        "GOAWAY(ENHANCE_YOUR_CALM)"
    );
    // Everyone else is still served.
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
    let mut other = H2::open(grace.addr()).unwrap();
    assert_eq!(other.request(1, "/").unwrap().1, b"m");
}

#[test]
fn garbage_and_invalid_http_get_400_and_a_close() {
    let grace = Grace::start(&config("m", "", ""));
    let garbage: &[&[u8]] = &[
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
        b"\x00\x00\x00\x00\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        b"G\xffT / HTTP/1.1\r\n\r\n",
    ];
    for bytes in garbage {
        let mut s = TcpStream::connect(grace.addr()).unwrap();
        s.write_all(bytes).unwrap();
        let response = read_all(&mut s);
        assert_eq!(
            status_of(&response),
            400,
            "{:?} -> {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&response)
        );
    }
    // HTTP/2 preface, then nonsense frames: GOAWAY and a close.
    let mut conn = H2::open(grace.addr()).unwrap();
    conn.send(&[0xff; 64]).unwrap();
    let mut goaway = false;
    while let Some(f) = conn.next() {
        goaway |= f.kind == h2::GOAWAY;
    }
    assert!(goaway);
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn a_half_closed_client_gets_its_responses() {
    let grace = Grace::start(&config("m", "", &slow_route("500ms")));
    // The end of the client's stream arrives while the handler still works.
    let mut s = TcpStream::connect(grace.addr()).unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.shutdown(Half::Write).unwrap();
    let response = String::from_utf8(read_all(&mut s)).unwrap();
    assert!(response.ends_with("slow done"), "{response:?}");

    let mut s = TcpStream::connect(grace.addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Done sending, still reading (`nc -N`, `curl` uploading from stdin).
    s.shutdown(Half::Write).unwrap();
    let response = String::from_utf8(read_all(&mut s)).unwrap();
    assert_eq!(response.matches("HTTP/1.1 200").count(), 2, "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
}

#[test]
fn a_huge_request_body_is_not_buffered() {
    let grace = Grace::start(&config("m", "", ""));
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", grace.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = rss();
    let mut s = TcpStream::connect(grace.addr()).unwrap();
    s.set_write_timeout(Some(SOON)).unwrap();
    let len = 64 * 1024 * 1024u64;
    s.write_all(format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes())
        .unwrap();
    // The route does not read bodies: the server answers at once and reads
    // and discards the rest (so the connection can be reused), holding no
    // more than a buffer of it at a time.
    let chunk = vec![b'z'; 64 * 1024];
    let mut sent = 0u64;
    let mut peak_kb = 0;
    while sent < len {
        match s.write(&chunk) {
            Ok(n) => sent += n as u64,
            Err(_) => break,
        }
        if sent % (8 * 1024 * 1024) < chunk.len() as u64 {
            peak_kb = peak_kb.max(rss());
        }
    }
    let mut response = [0u8; 12];
    s.set_read_timeout(Some(SOON)).unwrap();
    s.read_exact(&mut response).unwrap();
    assert_eq!(&response, b"HTTP/1.1 200");
    let grew_kb = peak_kb.max(rss()).saturating_sub(before);
    assert!(
        grew_kb < 16 * 1024,
        "RSS grew by {grew_kb} KiB for a {len}-byte body"
    );
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn limits_change_on_reload_for_new_connections() {
    let grace = Grace::start(&config("m", "", ""));
    let head = |addr| {
        let mut s = TcpStream::connect(addr).unwrap();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(5000)
        );
        s.write_all(req.as_bytes()).unwrap();
        status_of(&read_all(&mut s))
    };
    assert_eq!(head(grace.addr()), 200);
    grace.write_config(&config("m", "", &limits("max_header_size = 4096")));
    grace.signal(Signal::HUP);
    grace.log().wait_for("limits changed");
    assert_eq!(head(grace.addr()), 431);
}

#[test]
fn http11_without_exactly_one_host_gets_400_and_a_close() {
    let grace = Grace::start(&config("m", "", ""));
    let answer = |request: &str| {
        let mut s = TcpStream::connect(grace.addr()).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        String::from_utf8(read_all(&mut s)).unwrap()
    };
    // RFC 9112 §3.2. A second request pipelined behind the first is never
    // served: the connection closes after the 400.
    for request in [
        "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET http://t/ HTTP/1.1\r\n\r\n",
    ] {
        let response = answer(request);
        assert_eq!(
            status_of(response.as_bytes()),
            400,
            "{request:?} -> {response:?}"
        );
        assert_eq!(response.matches("HTTP/1.1").count(), 1, "{response:?}");
        assert!(
            response.to_ascii_lowercase().contains("connection: close"),
            "{response:?}"
        );
    }
    // HTTP/1.0 has no Host requirement; absolute form names its host.
    assert_eq!(status_of(answer("GET / HTTP/1.0\r\n\r\n").as_bytes()), 200);
    let absolute = answer("GET http://t/ HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(absolute.as_bytes()), 200, "{absolute:?}");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
}

#[test]
fn a_request_line_longer_than_the_head_limit_gets_414() {
    let grace = Grace::start(&config("m", "", ""));
    let status = |uri_bytes: usize| {
        let mut s = TcpStream::connect(grace.addr()).unwrap();
        let req = format!(
            "GET /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "u".repeat(uri_bytes)
        );
        // The server may answer and close before it read it all.
        let _ = s.write_all(req.as_bytes());
        status_of(&read_all(&mut s))
    };
    assert_eq!(status(100 * 1024), 414);
    assert_eq!(status(33 * 1024), 414);
    // Under the limit a long URI is served (the route table has no match
    // for it: 404 is the service's answer, not a rejection).
    assert_eq!(status(20 * 1024), 404);
}
