//! Choosing HTTP/1 or HTTP/2 (prior knowledge) from the first bytes, and
//! handing those bytes back to the protocol.
//!
//! grace reads the first bytes itself instead of letting hyper-util's `auto`
//! builder do it: that builder drops a connection still reading its preface
//! when a graceful shutdown is asked for, and such a connection is not idle —
//! its request is on the way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// Reads until the protocol is known. `Ok(None)`: the peer closed before
/// sending anything.
///
/// Cancel safe: bytes read so far stay in `buf`.
pub(crate) async fn detect<IO>(io: &mut IO, buf: &mut BytesMut) -> io::Result<Option<Protocol>>
where
    IO: AsyncRead + Unpin,
{
    loop {
        if io.read_buf(buf).await? == 0 {
            return Ok(None);
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(Protocol::Http1));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(Protocol::Http2));
        }
    }
}

/// HTTP/1: reads on until the first request line is complete, so that a
/// line longer than the whole head may be (`limit`) is told from a head
/// with too many or too large headers. `Ok(false)`: it is longer, and
/// starts as a request line does (a method, then a space), so the request
/// target is what is too long. Anything else is hyper's to answer.
///
/// hyper decides this too late for grace: past its head limit it answers
/// `431` whatever filled the head. grace sees only the start of a
/// connection, so a request line too long on a later request of a
/// keep-alive connection still gets hyper's `431`.
///
/// Cancel safe: bytes read so far stay in `buf`.
pub(crate) async fn request_line_fits<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    limit: usize,
) -> io::Result<bool>
where
    IO: AsyncRead + Unpin,
{
    let mut scanned = 0;
    loop {
        if let Some(end) = buf[scanned..].iter().position(|b| *b == b'\n') {
            // One read may bring a line longer than the limit whole.
            return Ok(scanned + end < limit || !starts_like_a_request(buf));
        }
        scanned = buf.len();
        if buf.len() >= limit {
            return Ok(!starts_like_a_request(buf));
        }
        // Whole reads even for a long line, not the 64 bytes `read_buf`
        // would take when the buffer is full.
        buf.reserve(4096.min(limit - buf.len()).max(64));
        if io.read_buf(buf).await? == 0 {
            return Ok(true);
        }
    }
}

/// A method (a short run of token characters) and a space.
fn starts_like_a_request(buf: &[u8]) -> bool {
    match buf.iter().take(32).position(|b| *b == b' ') {
        Some(n) => n > 0 && buf[..n].iter().all(u8::is_ascii_graphic),
        None => false,
    }
}

/// An IO that first yields bytes already read from it.
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Rewind { prefix, inner }
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn detect_bytes(chunks: &[&[u8]]) -> (Option<Protocol>, BytesMut) {
        let (mut client, mut server) = tokio::io::duplex(64);
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let mut buf = BytesMut::new();
        let p = detect(&mut server, &mut buf).await.unwrap();
        (p, buf)
    }

    #[tokio::test]
    async fn one_byte_decides_http1() {
        assert_eq!(detect_bytes(&[b"G"]).await.0, Some(Protocol::Http1));
    }

    #[tokio::test]
    async fn the_h2_preface_may_arrive_in_pieces() {
        let (p, buf) = detect_bytes(&[&H2_PREFACE[..3], &H2_PREFACE[3..]]).await;
        assert_eq!(p, Some(Protocol::Http2));
        assert_eq!(&buf[..], H2_PREFACE);
    }

    #[tokio::test]
    async fn eof_before_a_byte_is_no_protocol() {
        assert_eq!(detect_bytes(&[]).await.0, None);
    }

    /// `read` is what detection already read; `rest` comes from the peer.
    async fn fits(read: &[u8], rest: &[u8], limit: usize) -> bool {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(rest).await.unwrap();
        drop(client);
        let mut buf = BytesMut::from(read);
        request_line_fits(&mut server, &mut buf, limit)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_request_line_longer_than_the_head_limit_does_not_fit() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n", "a".repeat(5000));
        let long = long.as_bytes();
        assert!(!fits(b"G", &long[1..], 4096).await);
        // Already read whole, end of line included.
        assert!(!fits(long, b"", 4096).await);
        assert!(fits(b"G", b"ET /abc HTTP/1.1\r\nHost: t\r\n", 4096).await);
        // Too large, but not a request line: hyper answers it.
        assert!(fits(b"\0", &[0u8; 5000], 4096).await);
        // The peer went away mid-line: hyper sees the end too.
        assert!(fits(b"G", b"ET /abc", 4096).await);
    }

    #[tokio::test]
    async fn rewind_replays_the_prefix_then_reads_on() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut io = Rewind::new(Bytes::from_static(b"hello"), server);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
