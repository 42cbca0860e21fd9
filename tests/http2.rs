//! HTTP/2 cleartext (prior knowledge) on the same port, and its two-step
//! GOAWAY at shutdown, read frame by frame off the wire.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use rustix::process::Signal;
use support::{config, Grace, SOON};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn write_frame(s: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut buf = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    buf.extend_from_slice(&stream.to_be_bytes());
    buf.extend_from_slice(payload);
    s.write_all(&buf).unwrap();
}

/// The next frame, or `None` on a clean EOF.
fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("reading a frame: {e}"),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).unwrap();
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

fn next_of(s: &mut TcpStream, kind: u8) -> Frame {
    loop {
        let f = read_frame(s).unwrap_or_else(|| panic!("EOF while waiting for frame type {kind}"));
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            write_frame(s, SETTINGS, ACK, 0, &[]);
        }
        if f.kind == kind {
            return f;
        }
    }
}

/// GET / on stream `id`: :method GET, :scheme http, :path / (static table
/// entries 2, 6, 4) and :authority "test" (literal, indexed name 1).
fn get_root(s: &mut TcpStream, id: u32) {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 4];
    block.extend_from_slice(b"test");
    write_frame(s, HEADERS, END_STREAM | END_HEADERS, id, &block);
}

#[test]
fn h2c_request_then_two_step_goaway_at_shutdown() {
    let mut grace = Grace::start(&config("hello over h2", "", ""));
    let mut s = TcpStream::connect(grace.addr()).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    s.write_all(PREFACE).unwrap();
    write_frame(&mut s, SETTINGS, 0, 0, &[]);

    get_root(&mut s, 1);
    let headers = next_of(&mut s, HEADERS);
    assert_eq!(headers.stream, 1);
    assert_eq!(headers.payload[0], 0x88, ":status 200 (static index 8)");
    let mut body = Vec::new();
    loop {
        let data = next_of(&mut s, DATA);
        body.extend_from_slice(&data.payload);
        if data.flags & END_STREAM != 0 {
            break;
        }
    }
    assert_eq!(body, b"hello over h2");

    grace.signal(Signal::TERM);
    // Step 1: GOAWAY with the largest stream id, and a PING to time the round trip.
    let first = next_of(&mut s, GOAWAY);
    let last_id = u32::from_be_bytes(first.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
    let code = u32::from_be_bytes(first.payload[4..8].try_into().unwrap());
    assert_eq!(
        (last_id, code),
        (0x7fff_ffff, 0),
        "first GOAWAY: max stream id, NO_ERROR"
    );
    let ping = next_of(&mut s, PING);
    assert_eq!(ping.flags & ACK, 0);
    write_frame(&mut s, PING, ACK, 0, &ping.payload);
    // Step 2: the real last stream id, then the connection closes.
    let second = next_of(&mut s, GOAWAY);
    let last_id = u32::from_be_bytes(second.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
    assert_eq!(last_id, 1, "second GOAWAY names the last stream served");
    while read_frame(&mut s).is_some() {}
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

mod stalls {
    //! Flow control: a client that lets the server send nothing cannot hold
    //! a connection or the drain; one that reads slowly still gets its data.

    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use rustix::process::Signal;

    use crate::support::h2::{self, Frame, PREFACE};
    use crate::support::{config, Grace, SOON};

    const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
    const WINDOW_UPDATE: u8 = 0x8;

    fn limits(lines: &str) -> String {
        format!("[limits]\n{lines}\n")
    }

    /// Connects with every stream's send window at zero.
    fn zero_window(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(PREFACE).unwrap();
        let mut setting = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
        setting.extend_from_slice(&0u32.to_be_bytes());
        s.write_all(&h2::frame(h2::SETTINGS, 0, 0, &setting))
            .unwrap();
        s
    }

    enum Next {
        Frame(Frame),
        Closed,
        Silent,
    }

    /// The next frame, answering SETTINGS and PINGs as a live client does.
    fn next(s: &mut TcpStream) -> Next {
        let mut head = [0u8; 9];
        if let Err(e) = s.read_exact(&mut head) {
            return match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Next::Silent,
                _ => Next::Closed,
            };
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        if s.read_exact(&mut payload).is_err() {
            return Next::Closed;
        }
        let f = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        };
        if f.flags & h2::ACK == 0 {
            if f.kind == h2::SETTINGS {
                let _ = s.write_all(&h2::frame(h2::SETTINGS, h2::ACK, 0, &[]));
            }
            if f.kind == h2::PING {
                let _ = s.write_all(&h2::frame(h2::PING, h2::ACK, 0, &f.payload));
            }
        }
        Next::Frame(f)
    }

    /// Opens 100 streams the server can answer only with headers, waits for
    /// the first response's headers, and returns when that was.
    fn open_stalled_streams(s: &mut TcpStream) -> Instant {
        let mut burst = Vec::new();
        for i in 0..100u32 {
            burst.extend_from_slice(&h2::get(2 * i + 1, "/"));
        }
        s.write_all(&burst).unwrap();
        loop {
            match next(s) {
                Next::Frame(f) if f.kind == h2::HEADERS => return Instant::now(),
                Next::Frame(_) => {}
                Next::Closed => panic!("closed before any response headers"),
                Next::Silent => panic!("no response headers in {SOON:?}"),
            }
        }
    }

    /// Reads (answering PINGs, never opening a window) until the server
    /// closes; returns how long after `since` that was.
    fn held_until_closed(s: &mut TcpStream, since: Instant) -> Duration {
        loop {
            match next(s) {
                Next::Frame(f) => assert_ne!(f.kind, h2::DATA, "DATA with a zero window"),
                Next::Closed => return since.elapsed(),
                Next::Silent => panic!(
                    "a zero-window client held its connection for {:?}",
                    since.elapsed()
                ),
            }
        }
    }

    #[test]
    fn a_zero_window_client_is_closed_after_the_write_timeout() {
        let grace = Grace::start(&config(
            "m",
            "",
            &limits("write_timeout = \"1s\"\nidle_timeout = \"2s\""),
        ));
        let mut s = zero_window(grace.addr());
        let since = open_stalled_streams(&mut s);
        let held = held_until_closed(&mut s, since);
        println!("closed {held:?} after the first response headers");
        assert!(held < Duration::from_secs(8), "held for {held:?}");
        // Everyone else is still served.
        let mut other = h2::H2::open(grace.addr()).unwrap();
        assert_eq!(other.request(1, "/").unwrap().1, b"m");
    }

    #[test]
    fn a_zero_window_client_cannot_hold_the_drain() {
        let mut grace = Grace::start(&config(
            "m",
            "shutdown_timeout = \"60s\"",
            &limits("write_timeout = \"1s\"\nidle_timeout = \"2s\""),
        ));
        let mut s = zero_window(grace.addr());
        open_stalled_streams(&mut s);
        let client = std::thread::spawn(move || held_until_closed(&mut s, Instant::now()));
        let signalled = Instant::now();
        grace.signal(Signal::TERM);
        assert_eq!(grace.wait_exit(SOON).code(), Some(0));
        println!("exited {:?} after SIGTERM", signalled.elapsed());
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "{:?}",
            signalled.elapsed()
        );
        client.join().unwrap();
    }

    #[test]
    fn a_slow_handler_and_a_slow_reader_are_not_cut() {
        let body = "x".repeat(6000);
        let grace = Grace::start(&config(
            "m",
            "",
            &(limits("write_timeout = \"1s\"\nidle_timeout = \"5s\"")
                + "[[routes]]\npath = \"/slow\"\ndelay = \"2500ms\"\nbody = \"slow done\"\n"
                + &format!("[[routes]]\npath = \"/big\"\nbody = \"{body}\"\n")),
        ));
        // A handler slower than the write timeout has nothing to send yet.
        let mut conn = h2::H2::open(grace.addr()).unwrap();
        assert_eq!(conn.request(1, "/slow").unwrap().1, b"slow done");

        // A reader opening its window 1000 bytes at a time, every 400 ms:
        // slow, but progressing within every write timeout.
        let mut s = zero_window(grace.addr());
        s.write_all(&h2::get(1, "/big")).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let opener = std::thread::spawn({
            let mut s = s.try_clone().unwrap();
            let done = done.clone();
            move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let update = h2::frame(WINDOW_UPDATE, 0, 1, &1000u32.to_be_bytes());
                    if s.write_all(&update).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(400));
                }
            }
        });
        let mut got = 0;
        while got < body.len() {
            match next(&mut s) {
                Next::Frame(f) if f.kind == h2::DATA && f.stream == 1 => got += f.payload.len(),
                Next::Frame(_) => {}
                Next::Closed => panic!("closed a progressing reader after {got} bytes"),
                Next::Silent => panic!("no DATA in {SOON:?} after {got} bytes"),
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        opener.join().unwrap();
        assert_eq!(got, body.len());
    }
}
