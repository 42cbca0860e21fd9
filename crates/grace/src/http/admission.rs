//! The connection limit. Accept loops ask for a slot before they accept, so
//! at the limit connections wait in the kernel's backlog (bounded, costing
//! this process nothing) instead of being accepted into memory and file
//! descriptors the server does not have.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::listener::ConnectionLimit;
use crate::log_limit::LogLimit;

/// Counts open connections against a limit shared by every listener of a
/// server. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    open: AtomicUsize,
    max: AtomicUsize,
    // Woken when a slot frees or the limit is raised.
    freed: Notify,
    log: LogLimit,
}

/// One open connection's place under the limit; freed when dropped.
pub(crate) struct Slot {
    inner: Arc<Inner>,
    // Its listener's open connections, for the status page.
    listener: Option<Arc<AtomicUsize>>,
}

impl Slot {
    /// Counts the connection in `open` (its listener's) while it is open:
    /// once per connection, at accept, never per request.
    pub(crate) fn count_in(mut self, open: &Arc<AtomicUsize>) -> Slot {
        // Relaxed: a display count, ordered with nothing else.
        open.fetch_add(1, Ordering::Relaxed);
        self.listener = Some(open.clone());
        self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(open) = &self.listener {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
        self.inner.freed.notify_waiters();
    }
}

impl Admission {
    pub(crate) fn new(max: usize) -> Self {
        Admission {
            inner: Arc::new(Inner {
                open: AtomicUsize::new(0),
                max: AtomicUsize::new(max.max(1)),
                freed: Notify::new(),
                log: LogLimit::default(),
            }),
        }
    }

    /// Changes the limit. Lowering it closes nothing: the excess goes as it
    /// finishes, and no new connection is taken until then.
    pub(crate) fn set_max(&self, max: usize) {
        self.inner.max.store(max.max(1), Ordering::Release);
        self.inner.freed.notify_waiters();
    }

    /// A slot, when one is free now.
    fn try_admit(&self) -> Option<Slot> {
        let max = self.inner.max.load(Ordering::Acquire);
        self.inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot {
                inner: self.inner.clone(),
                listener: None,
            })
    }

    /// A slot even past the limit: for connections the kernel had already
    /// completed when a listener closes. Refusing them would reset them, and
    /// there are at most a backlog's worth.
    pub(crate) fn admit_now(&self) -> Slot {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        Slot {
            inner: self.inner.clone(),
            listener: None,
        }
    }

    /// Waits for a free slot.
    ///
    /// # Cancel safety
    /// Cancel safe: a slot is taken only when the future resolves.
    pub(crate) async fn admit(&self, listener: &str) -> Slot {
        loop {
            // Registered before the check, so a slot freed in between is not
            // missed.
            let mut freed = pin!(self.inner.freed.notified());
            freed.as_mut().enable();
            if let Some(slot) = self.try_admit() {
                return slot;
            }
            self.log_full(listener);
            freed.await;
        }
    }

    fn log_full(&self, listener: &str) {
        if let Some(suppressed) = self.inner.log.admit() {
            tracing::warn!(
                listener,
                max_connections = self.inner.max.load(Ordering::Relaxed),
                suppressed,
                "connection limit reached: not accepting until a connection closes; new ones wait in the backlog"
            );
        }
    }
}

impl ConnectionLimit for Admission {
    type Slot = Slot;

    fn admit(&self, listener: &str) -> impl std::future::Future<Output = Slot> + Send {
        Admission::admit(self, listener)
    }

    fn admit_now(&self) -> Slot {
        Admission::admit_now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn waits_at_the_limit_and_wakes_when_a_slot_frees() {
        let admission = Admission::new(2);
        let a = admission.admit("t").await;
        let _b = admission.admit("t").await;
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit("t").await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "the third waits while two are open");
        drop(a);
        let _c = waiter.await.unwrap();
        assert_eq!(admission.inner.open.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_counted_slot_counts_its_connection_until_it_closes() {
        let admission = Admission::new(4);
        let listener = Arc::new(AtomicUsize::new(0));
        let a = admission.admit("t").await.count_in(&listener);
        let b = admission.admit_now().count_in(&listener);
        let _elsewhere = admission.admit("u").await;
        assert_eq!(listener.load(Ordering::Relaxed), 2);
        drop(a);
        drop(b);
        assert_eq!(listener.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn raising_the_limit_admits_waiters() {
        let admission = Admission::new(1);
        let _a = admission.admit("t").await;
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit("t").await }
        });
        tokio::task::yield_now().await;
        admission.set_max(2);
        waiter.await.unwrap();
    }
}
