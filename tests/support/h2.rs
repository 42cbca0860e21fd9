//! A minimal HTTP/2 (prior knowledge) client that writes frames by hand, so
//! tests can also misbehave on purpose: reset streams, open too many, stop
//! reading.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::SOON;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
/// GOAWAY / RST_STREAM error codes.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
pub const CANCEL: u32 = 0x8;

pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// GOAWAY or RST_STREAM: the error code.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut buf = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    buf.extend_from_slice(&stream.to_be_bytes());
    buf.extend_from_slice(payload);
    buf
}

/// HEADERS for `GET path` on stream `id` (HPACK: static :method GET,
/// :scheme http, literal :path, literal :authority "test").
pub fn get(id: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 4]);
    block.extend_from_slice(b"test");
    frame(HEADERS, END_STREAM | END_HEADERS, id, &block)
}

pub struct H2 {
    pub stream: TcpStream,
}

impl H2 {
    /// Connects and sends the preface and empty SETTINGS.
    pub fn open(addr: SocketAddr) -> io::Result<H2> {
        let mut stream = TcpStream::connect_timeout(&addr, SOON)?;
        stream.set_read_timeout(Some(SOON))?;
        stream.set_nodelay(true)?;
        stream.write_all(PREFACE)?;
        stream.write_all(&frame(SETTINGS, 0, 0, &[]))?;
        Ok(H2 { stream })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame; `None` on EOF or reset. SETTINGS are acknowledged.
    pub fn next(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.stream.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).ok()?;
        let f = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        };
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            let _ = self.stream.write_all(&frame(SETTINGS, ACK, 0, &[]));
        }
        Some(f)
    }

    /// The server's SETTINGS value for `id`, from its first SETTINGS frame.
    pub fn server_setting(&mut self, id: u16) -> Option<u32> {
        loop {
            let f = self.next()?;
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                return f.payload.chunks(6).find_map(|c| {
                    (u16::from_be_bytes([c[0], c[1]]) == id)
                        .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
                });
            }
        }
    }

    /// GET `path` on stream `id` and read the response: (status byte of the
    /// HPACK block's first entry, body).
    pub fn request(&mut self, id: u32, path: &str) -> Option<(u8, Vec<u8>)> {
        self.send(&get(id, path)).ok()?;
        let mut status = 0;
        let mut body = Vec::new();
        loop {
            let f = self.next()?;
            if f.stream != id {
                continue;
            }
            match f.kind {
                HEADERS => {
                    status = f.payload[0];
                    if f.flags & END_STREAM != 0 {
                        return Some((status, body));
                    }
                }
                DATA => {
                    body.extend_from_slice(&f.payload);
                    if f.flags & END_STREAM != 0 {
                        return Some((status, body));
                    }
                }
                RST_STREAM => return None,
                _ => {}
            }
        }
    }
}
