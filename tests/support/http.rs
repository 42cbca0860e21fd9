//! A small blocking HTTP/1.1 client that shows what a real client sees:
//! each response's headers, and whether the connection was closed (EOF) or
//! reset under it. No retries, ever.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::SOON;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, SOON)?;
        stream.set_read_timeout(Some(SOON))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// Writes a GET request without waiting for the answer.
    pub fn send(&mut self, path: &str) -> io::Result<()> {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: grace-tests\r\n\r\n"
        )?;
        self.reader.get_mut().flush()
    }

    /// Reads one response.
    pub fn recv(&mut self) -> io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {line:?}"),
                )
            })?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad header {l:?}"))
            })?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut res = Response {
            status,
            headers,
            body: String::new(),
        };
        let len: usize = res
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        res.body = String::from_utf8(body).unwrap();
        Ok(res)
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(path)?;
        self.recv()
    }

    /// Waits for the server to close: `Ok(())` on a clean EOF, an error on a
    /// reset, on unexpected bytes, or when nothing happens within `timeout`.
    pub fn expect_eof(&mut self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 64];
        match self.reader.read(&mut buf)? {
            0 => Ok(()),
            n => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected EOF, got {:?}", String::from_utf8_lossy(&buf[..n])),
            )),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }
}

/// One request on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    Conn::open(addr)?.get(path)
}
