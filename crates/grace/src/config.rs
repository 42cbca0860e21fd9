//! A configuration that can be swapped while it is being read.
//!
//! [`Reloadable`] holds the current [`Snapshot`] behind an [`ArcSwap`]:
//! readers take no lock and always see one whole configuration, old or new,
//! never a mix. A reader that keeps its `Arc<Snapshot>` across an `.await`
//! finishes with the configuration it started with, however many swaps happen
//! meanwhile.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

/// A configuration with the generation it was accepted as.
///
/// Dereferences to the configuration, so a handler reads fields directly;
/// the generation and load time are there for logs and status reports.
///
/// # Example
///
/// ```
/// use grace::Reloadable;
///
/// struct Config { greeting: String }
///
/// let config = Reloadable::new(Config { greeting: "hello".into() });
/// let snapshot = config.load();
/// assert_eq!(snapshot.greeting, "hello"); // through Deref
/// assert_eq!(snapshot.config().greeting, "hello");
/// assert_eq!(snapshot.generation(), 1);
/// assert!(snapshot.loaded_at() <= std::time::SystemTime::now());
/// ```
#[derive(Debug)]
pub struct Snapshot<T> {
    generation: u64,
    loaded_at: SystemTime,
    config: T,
}

impl<T> Snapshot<T> {
    /// 1 for the configuration the process started with, then one more for
    /// every accepted reload. Rejected reloads do not use a number. A
    /// process started by an upgrade continues from the one it replaced
    /// (see [`Reloadable::starting_at`]), so numbers in logs and metrics
    /// never go backwards.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When this configuration was accepted.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The configuration itself.
    pub fn config(&self) -> &T {
        &self.config
    }
}

impl<T> std::ops::Deref for Snapshot<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.config
    }
}

/// A short-lived borrow of the current [`Snapshot`]; see [`Reloadable::read`].
pub struct SnapshotRef<T>(arc_swap::Guard<Arc<Snapshot<T>>>);

impl<T> std::ops::Deref for SnapshotRef<T> {
    type Target = Snapshot<T>;

    fn deref(&self) -> &Snapshot<T> {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for SnapshotRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The current configuration, swapped atomically on reload. Cheap to clone;
/// all clones share one value.
///
/// # Example
///
/// ```
/// use grace::Reloadable;
///
/// let config = Reloadable::new(String::from("Before hot reload"));
/// let seen = config.load();
/// assert_eq!(seen.generation(), 1);
///
/// let new = config.store(String::from("After hot reload"));
/// assert_eq!(new.generation(), 2);
/// // A reader holding the old snapshot keeps it, whole.
/// assert_eq!(**seen, "Before hot reload");
/// assert_eq!(**config.load(), "After hot reload");
/// ```
pub struct Reloadable<T> {
    inner: Arc<Shared<T>>,
}

struct Shared<T> {
    current: ArcSwap<Snapshot<T>>,
    // Carries only the generation: subscribers read the config through
    // `load`, so the channel never holds a second copy alive.
    changed: watch::Sender<u64>,
    writer: Mutex<()>,
}

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable {
            inner: self.inner.clone(),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reloadable").field(&self.load()).finish()
    }
}

impl<T> Reloadable<T> {
    /// Holds `initial` as generation 1.
    pub fn new(initial: T) -> Self {
        Reloadable::starting_at(initial, 1)
    }

    /// The current snapshot. Lock-free: one atomic reference-count increment.
    /// To keep across an `.await`; on the request path, [`read`](Self::read).
    pub fn load(&self) -> Arc<Snapshot<T>> {
        self.inner.current.load_full()
    }

    /// The current snapshot, for a short read (building a response, say).
    /// Lock-free, and it writes to no counter every reader shares, as
    /// [`load`](Self::load)'s reference count is: a request on each core can
    /// read at once without moving a cache line. Hold it briefly and not
    /// across an `.await`; a store meanwhile waits for nothing, but the old
    /// generation lives until the guard goes.
    ///
    /// # Example
    ///
    /// ```
    /// use grace::Reloadable;
    ///
    /// let config = Reloadable::new(String::from("hello"));
    /// assert_eq!(config.read().config(), "hello");
    /// assert_eq!(config.read().generation(), 1);
    /// ```
    pub fn read(&self) -> SnapshotRef<T> {
        SnapshotRef(self.inner.current.load())
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.inner.current.load().generation
    }

    /// Makes `config` current as the next generation and notifies
    /// subscribers. Returns the new snapshot.
    ///
    /// Concurrent calls are serialised: generations are never reused or
    /// skipped. Readers are never blocked by a store. [`Reloader`](crate::Reloader) is the usual caller; call this
    /// directly only for configurations that need no validation.
    pub fn store(&self, config: T) -> Arc<Snapshot<T>> {
        // Writers are rare (reloads); serialising them keeps generations
        // gap-free without making readers wait: `load` never takes this lock.
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let snapshot = Arc::new(Snapshot {
            generation: self.inner.current.load().generation + 1,
            loaded_at: SystemTime::now(),
            config,
        });
        self.inner.current.store(snapshot.clone());
        self.inner.changed.send_replace(snapshot.generation);
        snapshot
    }

    /// A receiver whose value is the current generation; `changed()` resolves
    /// after each accepted reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

impl<T> Reloadable<T> {
    /// Holds `initial` as generation `generation` (at least 1): a process
    /// started by an upgrade continues after the generation of the one it
    /// replaced ([`Inherited::generation`](crate::handoff::Inherited::generation)),
    /// so that generation numbers keep increasing across upgrades.
    ///
    /// # Example
    ///
    /// ```
    /// use grace::Reloadable;
    ///
    /// // The process we replaced served generation 7.
    /// let config = Reloadable::starting_at("new binary", 7 + 1);
    /// assert_eq!(config.generation(), 8);
    /// assert_eq!(config.store("reloaded").generation(), 9);
    /// assert_eq!(Reloadable::starting_at((), 0).generation(), 1);
    /// ```
    pub fn starting_at(initial: T, generation: u64) -> Self {
        let generation = generation.max(1);
        Reloadable {
            inner: Arc::new(Shared {
                current: ArcSwap::from_pointee(Snapshot {
                    generation,
                    loaded_at: SystemTime::now(),
                    config: initial,
                }),
                changed: watch::Sender::new(generation),
                writer: Mutex::new(()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_count_up_and_old_snapshots_stay_whole() {
        let config = Reloadable::new((1, "one"));
        let first = config.load();
        config.store((2, "two"));
        let third = config.store((3, "three"));
        assert_eq!(third.generation(), 3);
        assert_eq!(*first.config(), (1, "one"));
        assert_eq!(config.generation(), 3);
    }

    #[test]
    fn concurrent_stores_never_reuse_a_generation() {
        let config = Reloadable::new(0u64);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|i| config.store(i).generation())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        let expected: Vec<u64> = (2..=2001).collect();
        assert_eq!(all, expected);
    }

    #[tokio::test]
    async fn subscribers_see_each_change() {
        let config = Reloadable::new("a");
        let mut rx = config.subscribe();
        config.store("b");
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 2);
    }
}
