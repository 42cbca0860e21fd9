//! The control protocol's framing: one request line in, bounded in size and
//! in the time it may take; reply lines out, each bounded in time; and a
//! close that does not reset an error line away before the client reads it.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{ErrorKind, Line, Reply, Request};

/// Longest request line accepted, newline included. The longest request,
/// `{"cmd":"stop","wait":true}`, is 26 bytes: room for whitespace and
/// clients that pretty-print, not for a client that streams.
const MAX_REQUEST_LINE: usize = 4096;
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one reply line may take to be written: a client that stops
/// reading is dropped, not waited for.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, and how many bytes, [`Conn::linger`] reads and discards.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 1 << 20;

/// Why a request line was not a request: answered with this kind and message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) kind: ErrorKind,
    pub(super) message: String,
}

impl Refusal {
    fn bad_request(message: String) -> Refusal {
        Refusal {
            kind: ErrorKind::BadRequest,
            message,
        }
    }
}

/// One control connection, seen as lines.
pub(super) struct Conn {
    stream: UnixStream,
}

impl Conn {
    pub(super) fn new(stream: UnixStream) -> Conn {
        Conn { stream }
    }

    pub(super) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Reads one request line. `Ok(None)`: the client hung up without one.
    ///
    /// # Errors
    /// A line too long, too slow, not UTF-8 or not a request.
    pub(super) async fn read_request(&mut self) -> Result<Option<Request>, Refusal> {
        let mut line = Vec::with_capacity(128);
        // One byte past the limit tells "too long" from "exactly the limit".
        let mut reader = BufReader::new((&mut self.stream).take(MAX_REQUEST_LINE as u64 + 1));
        let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
        match read {
            Err(_) => {
                return Err(Refusal {
                    kind: ErrorKind::Timeout,
                    message: format!("no request line within {}s", REQUEST_TIMEOUT.as_secs()),
                })
            }
            Ok(Err(e)) => return Err(Refusal::bad_request(format!("cannot read: {e}"))),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
        if line.len() > MAX_REQUEST_LINE {
            return Err(Refusal::bad_request(format!(
                "request line longer than {MAX_REQUEST_LINE} bytes"
            )));
        }
        // A last line without its newline is accepted: `printf` clients.
        let text = std::str::from_utf8(&line)
            .map_err(|_| Refusal::bad_request("request is not UTF-8".to_owned()))?;
        serde_json::from_str(text.trim()).map(Some).map_err(|e| {
            Refusal::bad_request(format!(
                "invalid request ({e}); expected one JSON object per line, such as \
                 {{\"cmd\":\"status\"}}; commands: status, reload, upgrade, stop"
            ))
        })
    }

    /// Writes one reply line.
    ///
    /// # Errors
    /// When the client is gone or did not take the line in time: stop
    /// talking to it.
    pub(super) async fn send(&mut self, reply: Reply) -> Result<(), ()> {
        let mut text = serde_json::to_string(&Line::from(reply)).map_err(|_| ())?;
        text.push('\n');
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(text.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Answers with an error line and closes.
    pub(super) async fn refuse(mut self, kind: ErrorKind, message: String) {
        let _ = self.send(Reply::Error { kind, message }).await;
        self.linger().await;
    }

    /// Closes while the client may still be sending: closing with unread
    /// bytes would reset the connection and could destroy the error line
    /// before the client reads it. So: end our side, then read and discard
    /// for a moment (bounded in time and bytes).
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let mut sink = (&mut self.stream).take(LINGER_BYTES);
        let _ = tokio::time::timeout(
            LINGER_TIME,
            tokio::io::copy(&mut sink, &mut tokio::io::sink()),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `read_request` makes of `sent`, the client keeping its end open
    /// unless `hang_up`.
    async fn read(sent: &[u8], hang_up: bool) -> Result<Option<Request>, Refusal> {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(sent).await.unwrap();
        if hang_up {
            theirs.shutdown().await.unwrap();
        }
        let result = Conn::new(ours).read_request().await;
        drop(theirs);
        result
    }

    fn bad_request(result: Result<Option<Request>, Refusal>) -> String {
        match result {
            Err(Refusal {
                kind: ErrorKind::BadRequest,
                message,
            }) => message,
            other => panic!("expected bad_request, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_line_is_one_request() {
        let request = read(b"{\"cmd\":\"stop\",\"wait\":true}\n", false).await;
        assert_eq!(request, Ok(Some(Request::Stop { wait: true })));
        // `printf '{"cmd":"status"}' | nc -U`: no newline, then end of file.
        let request = read(b" {\"cmd\":\"status\"} ", true).await;
        assert_eq!(request, Ok(Some(Request::Status {})));
        assert_eq!(read(b"", true).await, Ok(None));
    }

    #[tokio::test]
    async fn an_oversized_line_is_refused_without_reading_it_all() {
        let mut sent = vec![b' '; MAX_REQUEST_LINE * 2];
        sent.extend_from_slice(b"{\"cmd\":\"status\"}\n");
        let message = bad_request(read(&sent, false).await);
        assert_eq!(message, "request line longer than 4096 bytes");
        // Exactly the limit, newline included, is a request.
        let mut sent = vec![b' '; MAX_REQUEST_LINE - 17];
        sent.extend_from_slice(b"{\"cmd\":\"status\"}\n");
        assert_eq!(sent.len(), MAX_REQUEST_LINE);
        assert_eq!(read(&sent, false).await, Ok(Some(Request::Status {})));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_says_nothing_times_out() {
        let started = tokio::time::Instant::now();
        let refusal = read(b"{\"cmd\":", false).await.unwrap_err();
        assert_eq!(refusal.kind, ErrorKind::Timeout);
        assert_eq!(refusal.message, "no request line within 5s");
        assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn bad_json_says_what_a_request_looks_like() {
        let message = bad_request(read(b"{\"cmd\":\n", false).await);
        assert!(
            message.starts_with("invalid request (EOF while parsing"),
            "{message}"
        );
        assert!(message.contains("{\"cmd\":\"status\"}"), "{message}");
        let message = bad_request(read(b"\xff\xfe\n", false).await);
        assert_eq!(message, "request is not UTF-8");
    }

    #[tokio::test]
    async fn an_unknown_command_or_option_is_refused() {
        let message = bad_request(read(b"{\"cmd\":\"explode\"}\n", false).await);
        assert!(message.contains("unknown variant `explode`"), "{message}");
        let message = bad_request(read(b"{\"cmd\":\"stop\",\"wiat\":true}\n", false).await);
        assert!(message.contains("unknown field `wiat`"), "{message}");
    }

    #[tokio::test]
    async fn a_refusal_reaches_a_client_still_sending() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (read_half, mut write_half) = theirs.into_split();
        // Unread bytes at close would reset the connection: linger eats them.
        write_half.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        drop(write_half);
        Conn::new(ours)
            .refuse(ErrorKind::Busy, "try again".into())
            .await;
        let mut reply = String::new();
        BufReader::new(read_half)
            .read_line(&mut reply)
            .await
            .unwrap();
        assert_eq!(
            reply,
            "{\"ok\":false,\"reply\":\"error\",\"kind\":\"busy\",\"message\":\"try again\"}\n"
        );
    }
}
