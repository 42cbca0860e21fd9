//! What one client may cost the server: time, memory and connections.
//!
//! Every limit has a safe default, so a server built with [`serve`] and no
//! configuration already survives slow, silent, greedy and hostile clients.
//!
//! [`serve`]: super::serve

use std::time::Duration;

/// Per-server limits on clients. Set them with [`Serve::limits`] before the
/// server starts, or with [`Running::set_limits`] while it runs (new
/// connections use the new values; open ones keep theirs).
///
/// [`Serve::limits`]: super::Serve::limits
/// [`Running::set_limits`]: super::Running::set_limits
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::Limits;
///
/// // Non-exhaustive: start from the defaults and change what you need.
/// let mut limits = Limits::default();
/// limits.max_connections = 1_000;
/// limits.idle_timeout = Duration::from_secs(15);
/// assert_eq!(limits.max_header_size, 32 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// How long a client may take to send a request's head, counted from the
    /// first byte it sends on a new connection, or from the end of the
    /// previous response on a keep-alive one. A client sending one byte a
    /// second cannot hold a connection longer than this, plus at most a
    /// quarter of it: the deadline is checked every quarter timeout, so that
    /// a request costs no clock read. Default: 30 s.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight before
    /// it is closed (HTTP/1: between requests; HTTP/2: GOAWAY, then dropped
    /// if the client stays on). Bytes that serve no request (pings, a head
    /// trickled a byte at a time) do not keep it open. Applies to HTTP/2 too,
    /// which has no header timeout between streams. Checked every quarter
    /// timeout, so the close comes up to a quarter late. Default: 60 s.
    pub idle_timeout: Duration,
    /// How long a write may stay blocked because the client does not read.
    /// Past it the connection is dropped, so a client that never reads its
    /// response cannot hold memory, a connection slot or the drain. On
    /// HTTP/2, where flow control keeps unsent data in the server instead of
    /// blocking a write, the same holds for responses waiting on a client
    /// that opens no window: nothing written for this long while they wait
    /// drops the connection. Any byte written is progress, so slow readers
    /// stay. Default: 30 s.
    pub write_timeout: Duration,
    /// The largest request head (request line and headers), in bytes, for
    /// HTTP/1, and the largest header list for HTTP/2. Larger requests get
    /// `431 Request Header Fields Too Large`, or `414 URI Too Long` when the
    /// request line alone is larger (on a connection's first request).
    /// Default: 32 KiB.
    pub max_header_size: usize,
    /// How many connections may be open at once, over all listeners. At the
    /// limit the server stops accepting: further clients wait in the kernel's
    /// backlog until a connection closes (logged at most once a second).
    /// Default: 10 000.
    pub max_connections: usize,
    /// HTTP/2: how many streams a client may have open at once on one
    /// connection (`SETTINGS_MAX_CONCURRENT_STREAMS`). Default: 100.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: how many streams the client may reset before the server
    /// accepted them; past it the connection is closed with
    /// `GOAWAY(ENHANCE_YOUR_CALM)`. This is the mitigation for the "rapid
    /// reset" attack (CVE-2023-44487). Default: 20.
    pub http2_max_pending_reset_streams: usize,
    /// HTTP/2: how many streams the server may have to reset because of the
    /// client's protocol errors over a connection's life before it closes the
    /// connection. Default: 1024.
    pub http2_max_local_error_reset_streams: usize,
    /// TLS listeners: how long a client may take to complete the handshake,
    /// counted from accept. A half-open handshake cannot hold a connection
    /// slot, or a drain, longer than this. Default: 10 s.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_header_size: 32 * 1024,
            max_connections: 10_000,
            http2_max_concurrent_streams: 100,
            http2_max_pending_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The smallest head hyper accepts a limit for; smaller values are raised
    /// to it. A request line and a few headers always fit.
    pub const MIN_HEADER_SIZE: usize = 1024;

    pub(crate) fn header_size(&self) -> usize {
        self.max_header_size.max(Self::MIN_HEADER_SIZE)
    }
}
