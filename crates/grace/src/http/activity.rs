//! Whether a connection is idle: how many requests are in flight on it, and
//! when the last one began or ended. On HTTP/2, bytes do not count: a client
//! that trickles pings is not using the connection for anything the server
//! serves. On HTTP/1, bytes read do count: they are the next request's head
//! on its way (hyper would close a keep-alive connection mid-head if asked
//! to), and the header read timeout bounds a head trickled a byte at a time.
//!
//! On HTTP/2 it also tells a client that stalls the server's writes: HTTP/1
//! writes block on such a client and the write timeout cuts them, but HTTP/2
//! flow control keeps the data in the server, the socket stays writable, and
//! only the connection knows that responses wait and nothing goes out.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::drain::Shutdown;
use crate::metrics::requests::Timing;
use crate::metrics::RequestStats;

/// One connection's requests, counted by its service.
///
/// It is also what a request of the connection reaches the server's shared
/// state through: each request clones this connection's `Arc`, never one
/// every connection shares, so serving a request writes to no cache line
/// another connection writes to (the in-flight count and the tallies are
/// sharded per thread). A request costs two atomic additions here and no
/// clock read: the timers sample the counts instead (see [`Ticks`]).
pub(crate) struct Activity {
    shutdown: Shutdown,
    // Set when the connection's listener is removed by a reload: its
    // connections drain as in a shutdown.
    listener_stopped: Arc<AtomicBool>,
    stats: Option<Arc<RequestStats>>,
    // Requests in flight (low half) and requests ended (high half,
    // wrapping): one addition when a request begins, one when it ends, and
    // one load tells a timer both whether the connection is busy and
    // whether anything ended since it last looked.
    requests: AtomicU64,
    // HTTP/2: responses that have data to send and are not waiting on their
    // own body, so only the client (its flow-control window) holds them.
    sending: AtomicUsize,
    // HTTP/2: set by each write that moved bytes to the socket, cleared by
    // the stall check.
    wrote: AtomicBool,
    // HTTP/1: set by each read that brought bytes, cleared by the idle
    // check: bytes of a next head on their way.
    read: AtomicBool,
    // HTTP/1: whether the last request came with a body, which may still be
    // arriving when the connection closes.
    had_body: AtomicBool,
}

/// Adds one ended request and removes one in flight, in one addition.
const ONE_ENDED: u64 = (1 << 32) - 1;

fn in_flight(requests: u64) -> u32 {
    requests as u32
}

fn ended(requests: u64) -> u32 {
    (requests >> 32) as u32
}

/// How often a timer of `timeout` looks at the counts: a quarter of it, so
/// a verdict comes at most a quarter late, never early.
fn tick(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(10))
}

/// Sleeps a tick at a time and counts how long the counts have shown a
/// connection waiting: the timers' clock, read once per tick rather than
/// twice per request.
struct Ticks {
    tick: Duration,
    timeout: Duration,
    // The counts at the last look.
    seen: u64,
    // When the waiting began: at the latest the look that saw the last
    // change, so the count is never early.
    since: Instant,
}

impl Ticks {
    fn new(activity: &Activity, timeout: Duration) -> Self {
        Ticks {
            tick: tick(timeout),
            timeout,
            seen: activity.requests.load(Ordering::Relaxed),
            since: Instant::now(),
        }
    }

    /// Waits a tick; then, if `busy` says the wait was interrupted by what
    /// happened since the last look, starts it over. True once it has lasted
    /// the timeout.
    async fn waited(&mut self, activity: &Activity, busy: impl Fn(u64, u64) -> bool) -> bool {
        tokio::time::sleep(self.tick).await;
        let now = activity.requests.load(Ordering::Relaxed);
        if busy(self.seen, now) {
            self.seen = now;
            self.since = Instant::now();
            return false;
        }
        self.since.elapsed() >= self.timeout
    }
}

impl Activity {
    pub(crate) fn new(
        shutdown: Shutdown,
        listener_stopped: Arc<AtomicBool>,
        stats: Option<Arc<RequestStats>>,
    ) -> Arc<Self> {
        Arc::new(Activity {
            shutdown,
            listener_stopped,
            stats,
            requests: AtomicU64::new(0),
            sending: AtomicUsize::new(0),
            wrote: AtomicBool::new(false),
            read: AtomicBool::new(false),
            had_body: AtomicBool::new(false),
        })
    }

    /// Counts a request on this connection until the guard is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> InFlight {
        // Relaxed, as below: the timers sample it, nothing is published
        // through it.
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.shutdown.request_began();
        InFlight {
            activity: self.clone(),
            sending: Sending::No,
            timing: self.stats.is_some().then(Timing::start),
        }
    }

    /// HTTP/1: notes whether the request beginning now has a body.
    pub(crate) fn set_body(&self, has_body: bool) {
        // Relaxed: read by the connection's own task once it is done.
        self.had_body.store(has_body, Ordering::Relaxed);
    }

    /// HTTP/1: whether the last request had a body.
    pub(crate) fn had_body(&self) -> bool {
        self.had_body.load(Ordering::Relaxed)
    }

    /// HTTP/2: bytes went out to the client: progress for
    /// [`Activity::stalled_for`].
    pub(crate) fn wrote(&self) {
        // Relaxed: read by the stall check on the connection's task.
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// HTTP/2: true while a request in flight has no response to send yet
    /// (its handler is at work, or its body has no data ready): more
    /// responses are coming. See [`Coalesce`](super::http2_io::Http2Io).
    pub(crate) fn answers_pending(&self) -> bool {
        // Relaxed: a stale count only decides whether one write waits a
        // turn.
        in_flight(self.requests.load(Ordering::Relaxed)) as usize
            > self.sending.load(Ordering::Relaxed)
    }

    /// True once the connection should ask HTTP/1 clients to go
    /// (`Connection: close`): the shutdown's drain started, or its listener
    /// was removed. Two relaxed loads of lines nothing writes while serving.
    pub(crate) fn draining(&self) -> bool {
        self.shutdown.drain_started() || self.listener_stopped.load(Ordering::Relaxed)
    }

    /// Resolves once the connection has had no request in flight for
    /// `timeout`, counted from the call or from the last request's end. On
    /// HTTP/1, bytes read (a head on its way) count as activity too. Looks
    /// every quarter `timeout`: the verdict comes up to a quarter late,
    /// never early.
    ///
    /// # Cancel safety
    /// Cancel safe; a new call starts counting afresh.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        let mut ticks = Ticks::new(self, timeout);
        let busy = |seen: u64, now: u64| {
            // Relaxed: the connection's own task reads and writes it.
            let read = self.read.swap(false, Ordering::Relaxed);
            now != seen || in_flight(now) > 0 || read
        };
        while !ticks.waited(self, busy).await {}
    }

    /// HTTP/1: resolves once the client has taken `timeout` to send a
    /// request head, counted from the call (a connection's start) or from
    /// the end of the previous response; up to a quarter `timeout` late,
    /// never early.
    ///
    /// This is the header read timeout, kept per connection: hyper's own
    /// arms, and allocates, a timer for every request.
    ///
    /// # Cancel safety
    /// Cancel safe; a new call starts counting afresh.
    pub(crate) async fn head_late(&self, timeout: Duration) {
        let mut ticks = Ticks::new(self, timeout);
        let busy = |seen: u64, now: u64| in_flight(now) > 0 || ended(now) != ended(seen);
        while !ticks.waited(self, busy).await {}
    }

    /// Resolves once responses have waited on the client for `timeout`
    /// with not one byte written to it (checked every quarter `timeout`, so
    /// up to half a `timeout` late, never early).
    /// Any byte written counts as progress, so a slow reader that opens
    /// its window a little at a time stays, and so does a connection
    /// with nothing to send (idle, or handlers still working).
    ///
    /// # Cancel safety
    /// Cancel safe; a new call starts counting afresh.
    pub(crate) async fn stalled_for(&self, timeout: Duration) {
        let tick = (timeout / 4).max(Duration::from_millis(10));
        let mut since: Option<Instant> = None;
        loop {
            tokio::time::sleep(tick).await;
            // Relaxed: both sides run on the connection's task; a stale
            // value only moves the verdict by one tick.
            let wrote = self.wrote.swap(false, Ordering::Relaxed);
            if wrote || self.sending.load(Ordering::Relaxed) == 0 {
                since = None;
                continue;
            }
            // Counted from the first tick that saw the stall: never early,
            // up to one tick late.
            if since.get_or_insert_with(Instant::now).elapsed() >= timeout {
                return;
            }
        }
    }
}

/// Whether an HTTP/2 response counts in [`Activity::stalled_for`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// HTTP/1, or no response head yet: the handler is working.
    No,
    /// Its data waits for the client.
    Yes,
    /// Its body has no data ready: the application is working.
    Parked,
}

/// Keeps a request counted on its connection; see [`Activity::begin_request`].
pub(crate) struct InFlight {
    activity: Arc<Activity>,
    sending: Sending,
    // Set when the connection's requests are tallied.
    timing: Option<Timing>,
}

impl InFlight {
    /// See [`Activity::draining`].
    pub(crate) fn draining(&self) -> bool {
        self.activity.draining()
    }

    /// The response head is ready with `status`: the request is tallied
    /// under it when it ends.
    pub(crate) fn set_status(&mut self, status: StatusCode) {
        if let Some(timing) = self.timing.as_mut() {
            timing.set_status(status);
        }
    }

    /// HTTP/2: the response head is ready, its body is to be sent.
    pub(crate) fn begin_sending(&mut self) {
        if self.sending == Sending::No {
            self.sending = Sending::Yes;
            self.activity.sending.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The body had no data ready (`true`) or produced a frame (`false`):
    /// while it has none, the client is not the one holding the response.
    pub(crate) fn body_waiting(&mut self, waiting: bool) {
        match (self.sending, waiting) {
            (Sending::Yes, true) => {
                self.sending = Sending::Parked;
                self.activity.sending.fetch_sub(1, Ordering::Relaxed);
            }
            (Sending::Parked, false) => {
                self.sending = Sending::Yes;
                self.activity.sending.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .requests
            .fetch_add(ONE_ENDED, Ordering::Relaxed);
        if self.sending == Sending::Yes {
            self.activity.sending.fetch_sub(1, Ordering::Relaxed);
        }
        self.activity.shutdown.request_ended();
        if let (Some(timing), Some(stats)) = (self.timing.take(), &self.activity.stats) {
            timing.finish(stats);
        }
    }
}

/// An IO whose reads count as activity (HTTP/1: a head on its way).
pub(crate) struct ReadActivity<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> ReadActivity<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        ReadActivity { inner, activity }
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadActivity<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Relaxed: the idle check runs on this connection's task.
            self.activity.read.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadActivity<T> {
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

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight() {
        let activity = Activity::new(Shutdown::new(), Arc::default(), None);
        let request = activity.begin_request();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(Duration::from_secs(1)).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!idle.is_finished(), "a request in flight is not idle");
        drop(request);
        let done = Instant::now();
        idle.await.unwrap();
        assert!(done.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_of_a_next_head_keep_a_connection_from_idling() {
        let timeout = Duration::from_secs(1);
        let activity = Activity::new(Shutdown::new(), Arc::default(), None);
        drop(activity.begin_request());
        tokio::time::sleep(timeout / 2).await;
        activity.read.store(true, Ordering::Relaxed);
        let started = Instant::now();
        activity.idle_for(timeout).await;
        let took = started.elapsed();
        assert!(took >= timeout && took <= timeout * 2, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_timeout_counts_from_the_start_or_the_last_response() {
        let timeout = Duration::from_secs(3);
        let activity = Activity::new(Shutdown::new(), Arc::default(), None);
        let started = Instant::now();
        activity.head_late(timeout).await;
        let took = started.elapsed();
        assert!(
            took >= timeout && took <= timeout * 5 / 4,
            "a first head counts from the start: {took:?}"
        );

        let request = activity.begin_request();
        let late = tokio::spawn({
            let activity = activity.clone();
            async move { activity.head_late(timeout).await }
        });
        tokio::time::sleep(timeout * 5).await;
        assert!(!late.is_finished(), "a request in flight awaits no head");
        drop(request);
        let ended = Instant::now();
        late.await.unwrap();
        let took = ended.elapsed();
        assert!(took >= timeout && took <= timeout * 5 / 4, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_a_response_waiting_with_nothing_written() {
        let timeout = Duration::from_secs(1);
        let activity = Activity::new(Shutdown::new(), Arc::default(), None);
        let not_within = |d: u64| {
            let activity = activity.clone();
            async move {
                let stalled = activity.stalled_for(timeout);
                tokio::time::timeout(Duration::from_secs(d), stalled)
                    .await
                    .is_err()
            }
        };
        assert!(not_within(10).await, "idle is not a stall");
        let mut request = activity.begin_request();
        assert!(not_within(10).await, "a handler at work is not a stall");
        request.begin_sending();
        request.body_waiting(true);
        assert!(not_within(10).await, "a body at work is not a stall");
        request.body_waiting(false);
        let writer = tokio::spawn({
            let activity = activity.clone();
            async move {
                for _ in 0..10 {
                    activity.wrote.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        assert!(not_within(4).await, "a slow reader makes progress");
        writer.await.unwrap();
        let started = Instant::now();
        activity.stalled_for(timeout).await;
        let took = started.elapsed();
        assert!(took >= timeout && took <= timeout * 3 / 2, "{took:?}");
        drop(request);
        assert_eq!(activity.sending.load(Ordering::Relaxed), 0);
    }
}
