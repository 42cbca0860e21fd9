//! An HTTP/2 connection's IO: what it writes counts as progress for the
//! stall check ([`Activity::stalled_for`]), and the responses that become
//! ready together go out in one write.
//!
//! hyper runs each HTTP/2 stream as a task of its own, and every stream task
//! that queues a response wakes the connection's task, which writes what is
//! queued and flushes. A client that sends four requests at once so gets
//! four writes, and with `TCP_NODELAY` four TCP segments, each costing the
//! kernel a send on this side and a receive on the client's: measured with
//! h2load (`-c16 -m4`), 1.6 segments per request against 1.1 for the same
//! server without `TCP_NODELAY`, whose kernel merges them (Nagle), and twice
//! the system time.
//!
//! Nagle's merging waits for the client's ACK, which a client with nothing to
//! send may delay by 40 ms: that is why servers set `TCP_NODELAY`, and grace
//! does. Instead, while other requests of the connection are still being
//! answered, [`Http2Io`] holds a write back for one turn of the scheduler:
//! the task wakes itself and yields, so the stream tasks already queued run
//! first and queue their responses behind this one, and the next poll writes
//! them all at once, as nginx writes a connection's HTTP/2 frames once per
//! turn of its event loop. A write with no other answer pending, the usual
//! case of one request at a time, goes out at once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// An HTTP/2 connection's IO; see the module doc.
pub(crate) struct Http2Io<T> {
    inner: T,
    activity: Arc<Activity>,
    // A write was held back since the last flush: the next one goes out, so
    // no write waits more than one turn.
    held: bool,
}

impl<T> Http2Io<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Http2Io {
            inner,
            activity,
            held: false,
        }
    }

    /// True when this write should wait a turn: the task is woken at once,
    /// so it yields rather than sleeps.
    fn hold(&mut self, cx: &mut Context<'_>) -> bool {
        if self.held || !self.activity.answers_pending() {
            return false;
        }
        self.held = true;
        cx.waker().wake_by_ref();
        true
    }

    fn on_write(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        poll
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Http2Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Http2Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.hold(cx) {
            return Poll::Pending;
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.hold(cx) {
            return Poll::Pending;
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 flushes once what it queued is written: the next batch may wait
        // its turn again.
        self.held = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::drain::Shutdown;

    /// Counts the wake-ups it is asked for.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll_write(io: &mut Http2Io<Vec<u8>>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Pin::new(io).poll_write(cx, b"frame")
    }

    #[test]
    fn a_write_waits_one_turn_while_other_answers_are_pending() {
        let activity = Activity::new(Shutdown::new(), Arc::default(), None);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Http2Io::new(Vec::new(), activity.clone());

        assert!(
            matches!(poll_write(&mut io, &mut cx), Poll::Ready(Ok(5))),
            "nothing else pending: written at once"
        );
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);

        let mut other = activity.begin_request();
        assert!(poll_write(&mut io, &mut cx).is_pending(), "held a turn");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "and the task woken");
        assert!(
            matches!(poll_write(&mut io, &mut cx), Poll::Ready(Ok(5))),
            "never held twice in a row"
        );
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(
            poll_write(&mut io, &mut cx).is_pending(),
            "after a flush, the next batch may wait again"
        );
        assert!(matches!(poll_write(&mut io, &mut cx), Poll::Ready(Ok(5))));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());

        other.begin_sending();
        assert!(
            matches!(poll_write(&mut io, &mut cx), Poll::Ready(Ok(5))),
            "a response already sending is not one to wait for"
        );
        drop(other);
        assert_eq!(io.inner, b"frame".repeat(4));
    }

    #[tokio::test]
    async fn everything_written_arrives() {
        let activity = Activity::new(Shutdown::new(), Arc::default(), None);
        let _pending = activity.begin_request();
        let mut io = Http2Io::new(Vec::new(), activity);
        io.write_all(b"HEADERS").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"DATA").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner, b"HEADERSDATA");
    }
}
