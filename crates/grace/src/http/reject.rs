//! Requests grace answers itself, before the service sees them: malformed
//! (`400`), a request line too long (`414`), a head too large (`431`), and
//! HTTP/1.1 without exactly one `Host` (`400`). Each is counted in the
//! request stats and logged, at most once a second: any client can send them
//! at will.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::log_limit::LogLimit;
use crate::metrics::RequestStats;

/// hyper's bound on a URI, past which it answers `414` to a head that is
/// otherwise within the limit (`MAX_URI_LEN` in hyper's `proto/h1/role.rs`).
const HYPER_MAX_URI_LEN: usize = u16::MAX as usize - 1;

/// One server's rejections. Cheap to share: one per server.
pub(crate) struct Rejections {
    stats: Option<Arc<RequestStats>>,
    log: LogLimit,
}

impl Rejections {
    pub(crate) fn new(stats: Option<Arc<RequestStats>>) -> Arc<Self> {
        Arc::new(Rejections {
            stats,
            log: LogLimit::default(),
        })
    }

    /// Counts a request answered with `status`, and logs it at `info`
    /// unless another was less than a second ago (then at `debug`, where
    /// every one shows).
    pub(crate) fn record(&self, peer: SocketAddr, status: StatusCode, why: impl Display) {
        if let Some(stats) = &self.stats {
            stats.reject(status);
        }
        match self.log.admit() {
            Some(suppressed) => tracing::info!(
                %peer,
                status = status.as_u16(),
                suppressed,
                "rejected a request with {status}: {why}"
            ),
            None => tracing::debug!(
                %peer,
                status = status.as_u16(),
                "rejected a request with {status}: {why}"
            ),
        }
    }
}

/// The status hyper answered with when an HTTP/1 connection ended with `e`,
/// if it answered: hyper writes `400`, `414` or `431` itself for a head it
/// cannot parse. `head` is what hyper had buffered of that head.
pub(crate) fn hyper_answer(e: &hyper::Error, head: &[u8]) -> Option<StatusCode> {
    // An HTTP/2 preface on an HTTP/1 connection is the only parse error
    // hyper does not answer.
    if !e.is_parse() || e.is_parse_version_h2() {
        return None;
    }
    if !e.is_parse_too_large() {
        return Some(StatusCode::BAD_REQUEST);
    }
    Some(too_large(head))
}

/// hyper's "too large" covers both a head over the limit (431) and, in a
/// head within it, a URI over hyper's own bound (414).
fn too_large(head: &[u8]) -> StatusCode {
    let line = match head.iter().position(|b| *b == b'\n') {
        Some(end) => &head[..end],
        None => return StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    };
    match line.split(|b| *b == b' ').nth(1) {
        Some(uri) if uri.len() > HYPER_MAX_URI_LEN => StatusCode::URI_TOO_LONG,
        _ => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    }
}

/// Answers `414 URI Too Long` on a connection hyper never saw, and asks the
/// client to close.
pub(crate) async fn answer_uri_too_long<IO>(io: &mut IO, write_timeout: Duration)
where
    IO: AsyncWrite + Unpin,
{
    let response = format!(
        "HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\nconnection: close\r\ndate: {}\r\n\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    );
    let write = async {
        io.write_all(response.as_bytes()).await?;
        io.flush().await
    };
    // A client that does not read the answer gets the close anyway.
    let _ = tokio::time::timeout(write_timeout, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_past_hypers_bound_in_a_complete_line_was_answered_414() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
        let short = "GET / HTTP/1.1\r\nX-Big: bbbbbbbb";
        let no_line = "GET /aaaaaaaaaaaaaaaaaaa";
        assert_eq!(too_large(long.as_bytes()), StatusCode::URI_TOO_LONG);
        assert_eq!(
            too_large(short.as_bytes()),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            too_large(no_line.as_bytes()),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
