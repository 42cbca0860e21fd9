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
