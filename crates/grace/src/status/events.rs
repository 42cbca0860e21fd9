//! The page's server-sent event stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

use super::{render, StatusPage};

/// The longest the page waits for news: its countdowns and uptime move,
/// and a dead connection is noticed.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A response body of server-sent events (`text/event-stream`); see
/// [`StatusPage::events`]. Ends when the drain starts, or when the client
/// goes away.
#[derive(Debug)]
pub struct EventStream {
    events: mpsc::Receiver<Bytes>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|e| Ok(Frame::data(e))))
    }
}

pub(super) fn start(page: Arc<StatusPage>) -> EventStream {
    // One event in flight is enough: a slow reader gets the latest state
    // later, never a backlog.
    let (tx, rx) = mpsc::channel(1);
    let mut changes = page.changes();
    tokio::spawn(async move {
        let shutdown = page.shutdown.clone();
        // The browser's reconnect delay, should the stream break otherwise.
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            if tx.send(snapshot(&page)).await.is_err() {
                return;
            }
            tokio::select! {
                biased;
                () = shutdown.draining() => break,
                () = tx.closed() => return,
                _ = changes.changed() => {}
                () = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
        // The drain's progress as it starts, then the end: the page stops
        // listening (no reconnect), and the drain does not wait for us.
        if tx.send(snapshot(&page)).await.is_ok() {
            let _ = tx
                .send(Bytes::from_static(b"event: end\ndata: draining\n\n"))
                .await;
        }
    });
    EventStream { events: rx }
}

fn snapshot(page: &StatusPage) -> Bytes {
    let html = render::body(&page.snapshot());
    let mut event = String::with_capacity(html.len() + 64);
    event.push_str("event: snapshot\n");
    for line in html.lines() {
        event.push_str("data: ");
        event.push_str(line);
        event.push('\n');
    }
    event.push('\n');
    Bytes::from(event)
}
