//! Waiting on a token every connection shares without touching it on each
//! wake-up of the connection.
//!
//! A connection's task selects between its IO and the drain and force
//! tokens, and `select!` polls every branch each time the task wakes: once
//! or twice per request. Polling `CancellationToken::cancelled` locks the
//! token's mutex and then its waiter list's mutex, and the drain and force
//! tokens are shared by every connection: four contended locks per request.
//! [`Quiet`] polls the wait only when the wait itself woke the task (or the
//! task's waker changed), so a request costs one atomic swap on a line of
//! the connection's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// A future polled only when it woke its task; see the module doc.
pub(crate) struct Quiet<F> {
    inner: Pin<Box<F>>,
    relay: Arc<Relay>,
    // What the inner future was last polled with: the relay's waker.
    relay_waker: Waker,
    // The task's waker the relay passes wake-ups to; `None` before the
    // first poll.
    task: Option<Waker>,
}

/// Stands between the inner future and the task: remembers that the inner
/// future asked to be polled, then wakes the task.
struct Relay {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: the task's next poll sees the flag before it polls the
        // inner future, which then sees what its waker was woken for.
        self.woken.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<F: Future> Quiet<F> {
    pub(crate) fn new(inner: F) -> Self {
        let relay = Arc::new(Relay {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Quiet {
            inner: Box::pin(inner),
            relay_waker: Waker::from(relay.clone()),
            relay,
            task: None,
        }
    }
}

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let first = this.task.is_none();
        if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            // Moved to another task (or first poll): wake-ups go there now.
            *this
                .relay
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            this.task = Some(cx.waker().clone());
        }
        // A load first: most wake-ups are for something else, and a load
        // does not take the line for writing as the swap does. Acquire:
        // pairs with the relay's store.
        let woken = this.relay.woken.load(Ordering::Relaxed)
            && this.relay.woken.swap(false, Ordering::Acquire);
        if !first && !woken {
            // The task woke for something else: the inner future's
            // registration (with the relay's waker) still stands.
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.relay_waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn resolves_when_the_token_is_cancelled_after_other_wake_ups() {
        let token = CancellationToken::new();
        let mut wait = Quiet::new(token.clone().cancelled_owned());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let cancel = token.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                tx.send(()).unwrap();
                tokio::task::yield_now().await;
            }
            cancel.cancel();
        });
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut wait => break,
                    Some(()) = rx.recv() => {}
                }
            }
        });
        assert!(waited.await.is_ok(), "the cancellation was missed");
    }

    #[tokio::test]
    async fn resolves_at_once_when_already_cancelled() {
        let token = CancellationToken::new();
        token.cancel();
        Quiet::new(token.cancelled_owned()).await;
    }
}
