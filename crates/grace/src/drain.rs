//! Graceful shutdown: readiness, delay, drain, deadline and force.
//!
//! Ownership says who may do what. The [`ShutdownTrigger`] is not `Clone`:
//! one owner (the [`Lifecycle`](crate::Lifecycle), or your `main`) decides
//! when the shutdown begins and when it is forced. Everything that serves
//! gets a [`Shutdown`], a watcher that can wait for the drain and keep work
//! counted, but can neither start a drain nor force one: a request handler
//! cannot take the whole process down.
//!
//! A [`Shutdown`] is shared by everything that serves: accept loops and
//! connections are spawned on its [`TaskTracker`], requests are counted while
//! in flight, and two [`CancellationToken`]s mark the two moments that matter:
//!
//! * **drain** — listeners close (new connections are refused), HTTP/1
//!   responses carry `Connection: close`, HTTP/2 connections get GOAWAY, and
//!   connections that stay idle for [`DrainSettings::idle_grace`] are closed;
//! * **force** — whatever is left is dropped at once.
//!
//! Force is deliberately *not* a child of drain: cancelling drain must never
//! cut a request, and force may fire before drain did (a second signal during
//! the delay).
//!
//! The drain is over when the tracker is *closed and empty* (tokio-util's
//! rule), so the outcome is driven by the last connection going away, never by
//! a polling timer.

use std::sync::atomic::{AtomicIsize, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::requests::{shard, SHARDS};

/// Timings of a graceful shutdown, read when the shutdown begins so that a
/// reloaded configuration applies to the next shutdown.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::{DrainSettings, Outcome, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Behind a load balancer: keep serving 5 s while it notices, then 20 s to finish.
/// let settings = DrainSettings {
///     delay: Duration::from_secs(5),
///     timeout: Duration::from_secs(20),
///     ..DrainSettings::default()
/// };
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// trigger.begin(settings);
/// assert_eq!(shutdown.settings(), Some(settings));
/// // Nothing in flight: over right after the delay.
/// let elapsed = Duration::from_secs(5);
/// assert_eq!(shutdown.wait().await, Outcome::Drained { elapsed });
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// How long readiness reports "not ready" while serving goes on, so that
    /// load balancers stop sending before listeners close.
    pub delay: Duration,
    /// How long in-flight work may take once the drain started, before the
    /// rest is force-closed.
    pub timeout: Duration,
    /// How long a connection with no request in flight may stay open once the
    /// drain started. A client may already have sent its next request on a
    /// keep-alive connection; closing at once would lose it.
    pub idle_grace: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            delay: Duration::ZERO,
            timeout: Duration::from_secs(30),
            idle_grace: Duration::from_millis(500),
        }
    }
}

/// Where a [`Shutdown`] stands. Each change is logged once.
///
/// Phases only move forward, so they compare: `phase >= Phase::Draining`
/// means "listeners are closed".
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::{DrainSettings, Phase, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// let mut phase = shutdown.watch_phase();
/// assert_eq!(shutdown.phase(), Phase::Running);
/// trigger.begin(DrainSettings { delay: Duration::from_secs(1), ..Default::default() });
/// assert_eq!(shutdown.phase(), Phase::Stopping);
/// phase.wait_for(|p| *p >= Phase::Draining).await.unwrap();
/// shutdown.wait().await;
/// assert_eq!(shutdown.phase().as_str(), "stopped");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Serving and ready.
    Running = 0,
    /// Shutdown requested: readiness fails, serving goes on for the delay.
    Stopping = 1,
    /// Listeners closed; in-flight work is finishing.
    Draining = 2,
    /// The deadline passed or a second signal came: remaining work is cut.
    Forcing = 3,
    /// Nothing is left running.
    Stopped = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Running,
            1 => Phase::Stopping,
            2 => Phase::Draining,
            3 => Phase::Forcing,
            _ => Phase::Stopped,
        }
    }

    /// A short lowercase name, for logs and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Draining => "draining",
            Phase::Forcing => "forcing",
            Phase::Stopped => "stopped",
        }
    }
}

/// Why remaining work was cut.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::{DrainSettings, ForceReason, Outcome, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// let request = shutdown.track_request();
/// let stuck = shutdown.clone();
/// shutdown.spawn(async move { stuck.forced().await; drop(request) }); // never ends on its own
/// trigger.begin(DrainSettings { timeout: Duration::from_secs(3), ..Default::default() });
/// let Outcome::Forced { reason, .. } = shutdown.wait().await else { panic!() };
/// assert_eq!(reason, ForceReason::Deadline);
/// assert_eq!(reason.to_string(), "shutdown deadline passed");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceReason {
    /// [`DrainSettings::timeout`] elapsed with work still in flight.
    Deadline,
    /// The operator asked again (a second SIGINT/SIGTERM).
    Requested,
}

impl std::fmt::Display for ForceReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForceReason::Deadline => "shutdown deadline passed",
            ForceReason::Requested => "shutdown forced on request",
        })
    }
}

/// How a shutdown ended.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::{ForceReason, Outcome, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// // A connection with a client waiting for its answer.
/// let _connection = shutdown.track_connection();
/// let _request = shutdown.track_request();
/// trigger.force(ForceReason::Requested); // a second SIGTERM, say
/// let outcome = shutdown.wait().await;
/// assert!(!outcome.is_clean());
/// assert_eq!(outcome, Outcome::Forced {
///     reason: ForceReason::Requested,
///     connections: 1,
///     requests: 1, // this client saw an error
///     elapsed: Duration::ZERO,
/// });
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every connection finished on its own.
    Drained {
        /// Time from the start of the shutdown (including the delay).
        elapsed: Duration,
    },
    /// Work was still running and was cut.
    Forced {
        /// Why.
        reason: ForceReason,
        /// Connections open when the force began.
        connections: usize,
        /// Requests in flight when the force began: these clients saw an error.
        requests: usize,
        /// Time from the start of the shutdown (including the delay).
        elapsed: Duration,
    },
}

impl Outcome {
    /// True when no request was cut.
    pub fn is_clean(&self) -> bool {
        matches!(self, Outcome::Drained { .. })
    }
}

/// Watches a graceful shutdown: what every service, accept loop and
/// connection holds. Cheap to clone; all clones watch the one shutdown of
/// their [`ShutdownTrigger`].
///
/// A watcher can wait for the drain ([`draining`](Self::draining)), for the
/// force ([`forced`](Self::forced)) and for the end ([`wait`](Self::wait)),
/// and keeps work counted ([`spawn`](Self::spawn),
/// [`track_request`](Self::track_request)); it cannot start a drain or force
/// one. Neither compiles:
///
/// ```compile_fail,E0599
/// fn handler(shutdown: &grace::Shutdown) {
///     shutdown.begin(grace::DrainSettings::default());
/// }
/// ```
///
/// ```compile_fail,E0599
/// fn handler(shutdown: &grace::Shutdown) {
///     shutdown.force(grace::ForceReason::Requested);
/// }
/// ```
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::{DrainSettings, Outcome, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// // A long request, tracked like a connection would be.
/// let request = shutdown.track_request();
/// shutdown.spawn(async move {
///     tokio::time::sleep(Duration::from_secs(2)).await;
///     drop(request);
/// });
///
/// trigger.begin(DrainSettings { timeout: Duration::from_secs(5), ..Default::default() });
/// assert!(!shutdown.is_ready());
/// assert!(shutdown.wait().await.is_clean());
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    // An atomic next to the watch channel: readiness and `Connection: close`
    // decisions sit on the request path and must not take the channel's lock.
    phase: AtomicU8,
    phase_tx: watch::Sender<Phase>,
    drain: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
    connections: AtomicUsize,
    // Every request of every connection changes this count twice: one shared
    // counter would move its cache line between the cores on each request.
    // Each thread adds to its own shard; a guard may end on another thread,
    // so a shard can go below zero, and only the sum means anything.
    requests: [RequestShard; SHARDS],
    // Listening sockets still open; the drain is announced once it is zero.
    listeners: watch::Sender<usize>,
    on_drain: std::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    started: OnceLock<Instant>,
    // When the listeners closed and the timeout began to run.
    drain_started: OnceLock<Instant>,
    settings: OnceLock<DrainSettings>,
    force_reason: OnceLock<ForceReason>,
    outcome: watch::Sender<Option<Outcome>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("phase", &self.phase())
            .field("connections", &self.connections())
            .field("requests", &self.requests())
            .finish()
    }
}

impl Shutdown {
    /// A coordinator in [`Phase::Running`]; only a [`ShutdownTrigger`] makes
    /// one outside tests.
    pub(crate) fn new() -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                phase: AtomicU8::new(Phase::Running as u8),
                phase_tx: watch::Sender::new(Phase::Running),
                drain: CancellationToken::new(),
                force: CancellationToken::new(),
                tracker: TaskTracker::new(),
                connections: AtomicUsize::new(0),
                requests: Default::default(),
                listeners: watch::Sender::new(0),
                on_drain: std::sync::Mutex::new(Vec::new()),
                started: OnceLock::new(),
                drain_started: OnceLock::new(),
                settings: OnceLock::new(),
                force_reason: OnceLock::new(),
                outcome: watch::Sender::new(None),
            }),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        // Relaxed: the phase is advisory for readers (readiness, headers);
        // the tokens carry the happens-before edges that matter.
        Phase::from_u8(self.inner.phase.load(Ordering::Relaxed))
    }

    /// A receiver that sees every phase change.
    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.inner.phase_tx.subscribe()
    }

    /// True until a shutdown begins: what a readiness probe reports.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// True once the drain started: listeners are closed and connections
    /// should finish what they are doing and go.
    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_cancelled()
    }

    /// True once a shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.phase() != Phase::Running
    }

    /// The tracker every accept loop and connection task is spawned on. The
    /// shutdown is over when it is closed and empty.
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }

    /// Spawns `task` as work the shutdown waits for: a connection of a
    /// non-HTTP service, say. The drain is over when every such task is.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tracker.spawn(task)
    }

    /// The token cancelled when the drain starts; per-listener drains are
    /// its children.
    pub(crate) fn drain_token(&self) -> &CancellationToken {
        &self.inner.drain
    }

    /// Resolves when the drain starts.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping it loses nothing.
    pub async fn draining(&self) {
        self.inner.drain.cancelled().await
    }

    /// Resolves when remaining work must be dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping it loses nothing.
    pub async fn forced(&self) {
        self.inner.force.cancelled().await
    }

    /// The settings of the shutdown under way, if one began.
    pub fn settings(&self) -> Option<DrainSettings> {
        self.inner.settings.get().copied()
    }

    /// When remaining work will be forced, if a shutdown began: the end of
    /// the delay plus the timeout, or, once the drain started, its start
    /// plus the timeout.
    pub fn deadline(&self) -> Option<Instant> {
        let settings = self.settings()?;
        let drain_start = match self.inner.drain_started.get() {
            Some(at) => *at,
            None => *self.inner.started.get()? + settings.delay,
        };
        Some(drain_start + settings.timeout)
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Requests currently in flight.
    pub fn requests(&self) -> usize {
        let sum: isize = self
            .inner
            .requests
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        usize::try_from(sum).unwrap_or(0)
    }

    /// True once the drain started (or work is being forced): what an
    /// HTTP/1 response checks to add `Connection: close`. One relaxed load of
    /// a line nothing writes while serving; the drain token would take its
    /// mutex on every request.
    pub(crate) fn drain_started(&self) -> bool {
        self.inner.phase.load(Ordering::Relaxed) >= Phase::Draining as u8
    }

    /// Counts one request in flight until [`request_ended`](Self::request_ended);
    /// the request path's [`track_request`](Self::track_request), without the
    /// guard's reference count on the shared state.
    pub(crate) fn request_began(&self) {
        // Relaxed: a tally read for reports; it publishes nothing.
        self.inner.requests[shard()]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_ended(&self) {
        self.inner.requests[shard()]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one open connection until the guard is dropped.
    pub fn track_connection(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            inner: self.inner.clone(),
        }
    }

    /// Resolves once the drain started and every listening socket counted
    /// by [`track_listener`](Self::track_listener) is closed: from then on,
    /// this process accepts nothing new.
    pub(crate) async fn listeners_closed(&self) {
        self.inner.drain.cancelled().await;
        let _ = self.inner.listeners.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Counts one open listening socket until the guard is dropped: the drain
    /// is announced ("listeners closed") only once every one is closed.
    pub(crate) fn track_listener(&self) -> ListenerGuard {
        self.inner.listeners.send_modify(|n| *n += 1);
        ListenerGuard {
            inner: self.inner.clone(),
        }
    }

    /// Runs `hook` when the drain starts, before listeners close. Hooks
    /// release what would keep a listening socket open (a hand-off's
    /// duplicates, say). Runs at once if the drain already started.
    pub fn on_drain(&self, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = self
            .inner
            .on_drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.is_draining() {
            drop(hooks);
            hook();
        } else {
            hooks.push(Box::new(hook));
        }
    }

    /// Counts one in-flight request until the guard is dropped.
    pub fn track_request(&self) -> RequestGuard {
        self.request_began();
        RequestGuard {
            inner: self.inner.clone(),
        }
    }

    /// Resolves with the outcome once the shutdown is over: all connections
    /// gone, or forced and dropped.
    ///
    /// # Cancel safety
    /// Cancel safe; may be awaited from several places at once.
    pub async fn wait(&self) -> Outcome {
        let mut rx = self.inner.outcome.subscribe();
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .expect("invariant: the sender lives in Inner, which outlives this borrow");
        outcome.expect("invariant: wait_for returned a Some")
    }

    fn set_phase(&self, phase: Phase) {
        let prev = self.inner.phase.fetch_max(phase as u8, Ordering::Relaxed);
        if prev < phase as u8 {
            self.inner.phase_tx.send_replace(phase);
        }
    }

    fn elapsed(&self) -> Duration {
        self.inner
            .started
            .get()
            .map(Instant::elapsed)
            .unwrap_or_default()
    }

    async fn run(self, settings: DrainSettings) {
        let inner = &self.inner;
        tokio::select! {
            biased;
            _ = inner.force.cancelled() => {}
            _ = tokio::time::sleep(settings.delay) => {}
        }
        let _ = inner.drain_started.set(Instant::now());
        self.set_phase(Phase::Draining);
        let hooks = std::mem::take(
            &mut *inner
                .on_drain
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for hook in hooks {
            hook();
        }
        inner.drain.cancel();
        // Accept loops are tasks on the tracker too, so closing it now cannot
        // let it report "empty" while a loop is still handing out connections.
        inner.tracker.close();
        // Announce only what is true: from this line on, connects are refused.
        let _ = inner.listeners.subscribe().wait_for(|n| *n == 0).await;
        tracing::info!(
            connections = self.connections(),
            requests = self.requests(),
            "drain started: listeners closed"
        );

        // Force first: once asked for, the outcome is "forced" even if the
        // tasks it cut have already gone.
        let forced = tokio::select! {
            biased;
            _ = inner.force.cancelled() => Some(*inner.force_reason.get().unwrap_or(&ForceReason::Requested)),
            _ = inner.tracker.wait() => None,
            _ = tokio::time::sleep(settings.timeout) => Some(ForceReason::Deadline),
        };

        let outcome = match forced {
            None => {
                let elapsed = self.elapsed();
                tracing::info!(
                    elapsed_ms = elapsed.as_millis() as u64,
                    "drain finished: all connections closed"
                );
                Outcome::Drained { elapsed }
            }
            Some(reason) => {
                let connections = self.connections();
                let requests = self.requests();
                self.set_phase(Phase::Forcing);
                tracing::warn!(
                    %reason,
                    connections,
                    requests_cut = requests,
                    "forcing shutdown: closing remaining connections"
                );
                inner.force.cancel();
                inner.tracker.wait().await;
                Outcome::Forced {
                    reason,
                    connections,
                    requests,
                    elapsed: self.elapsed(),
                }
            }
        };
        self.set_phase(Phase::Stopped);
        inner.outcome.send_replace(Some(outcome));
    }
}

/// Starts and forces the graceful shutdown its [`Shutdown`] watchers follow.
///
/// Deliberately not `Clone`: whoever owns the trigger (the
/// [`Lifecycle`](crate::Lifecycle), or your `main`) is the one place a
/// shutdown can come from. Services get a watcher
/// ([`watcher`](Self::watcher)), which can wait for the drain but neither
/// start nor force one. Not cloneable:
///
/// ```compile_fail,E0277
/// fn shared<T: Clone>() {}
/// shared::<grace::ShutdownTrigger>();
/// ```
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::{DrainSettings, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone(); // give this to the service
/// // grace::serve(listeners, service, &shutdown).start();
/// trigger.begin(DrainSettings::default()); // on SIGTERM, say
/// assert!(shutdown.wait().await.is_clean());
/// # }
/// ```
pub struct ShutdownTrigger {
    shutdown: Shutdown,
}

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ShutdownTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShutdownTrigger")
            .field(&self.shutdown)
            .finish()
    }
}

impl ShutdownTrigger {
    /// A trigger whose shutdown is in [`Phase::Running`].
    pub fn new() -> Self {
        ShutdownTrigger {
            shutdown: Shutdown::new(),
        }
    }

    /// The watcher to hand to everything that serves; clone it freely.
    pub fn watcher(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Starts a graceful shutdown with `settings`: readiness fails at once,
    /// the drain starts after `settings.delay`, and whatever still runs
    /// `settings.timeout` later is forced.
    ///
    /// Returns `false`, and changes nothing, when a shutdown already began.
    /// Must be called within a tokio runtime: the sequence runs on a task of
    /// its own; [`Shutdown::wait`] reports how it ended.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use grace::{DrainSettings, ShutdownTrigger};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let trigger = ShutdownTrigger::new();
    /// let shutdown = trigger.watcher();
    /// let settings = DrainSettings { delay: Duration::from_secs(2), ..Default::default() };
    /// assert!(trigger.begin(settings));
    /// assert!(!trigger.begin(DrainSettings::default())); // a second begin changes nothing
    /// assert!(!shutdown.is_ready()); // readiness fails at once...
    /// assert!(!shutdown.is_draining()); // ...listeners close after the delay
    /// shutdown.draining().await;
    /// assert!(shutdown.is_draining());
    /// assert!(shutdown.wait().await.is_clean());
    /// # }
    /// ```
    pub fn begin(&self, settings: DrainSettings) -> bool {
        let shutdown = &self.shutdown;
        if shutdown.inner.started.set(Instant::now()).is_err() {
            return false;
        }
        let _ = shutdown.inner.settings.set(settings);
        shutdown.set_phase(Phase::Stopping);
        tracing::info!(
            delay_ms = settings.delay.as_millis() as u64,
            timeout_ms = settings.timeout.as_millis() as u64,
            connections = shutdown.connections(),
            requests = shutdown.requests(),
            "shutdown started: readiness now fails"
        );
        tokio::spawn(shutdown.clone().run(settings));
        true
    }

    /// Cuts remaining work now. Starts the shutdown first if it had not
    /// begun (with no delay and no deadline of its own).
    pub fn force(&self, reason: ForceReason) {
        let _ = self.shutdown.inner.force_reason.set(reason);
        if !self.begin(DrainSettings {
            delay: Duration::ZERO,
            ..DrainSettings::default()
        }) {
            tracing::debug!("force requested during an ongoing shutdown");
        }
        self.shutdown.inner.force.cancel();
    }
}

/// Keeps a connection counted; see [`Shutdown::track_connection`].
///
/// For services with their own accept loop: [`serve`](crate::serve) counts
/// its connections already.
///
/// # Example
///
/// ```
/// use grace::ShutdownTrigger;
///
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// let guard = shutdown.track_connection();
/// assert_eq!(shutdown.connections(), 1);
/// drop(guard); // the connection closed
/// assert_eq!(shutdown.connections(), 0);
/// ```
#[must_use = "the connection is counted only while the guard lives"]
pub struct ConnectionGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a listening socket counted; see [`Shutdown::track_listener`].
pub(crate) struct ListenerGuard {
    inner: Arc<Inner>,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.inner.listeners.send_modify(|n| *n -= 1);
    }
}

/// Keeps a request counted; see [`Shutdown::track_request`].
///
/// The count is what a forced [`Outcome`] reports as cut, so hold the guard
/// for exactly as long as a client waits for an answer.
///
/// # Example
///
/// ```
/// use grace::ShutdownTrigger;
///
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher();
/// {
///     let _request = shutdown.track_request();
///     assert_eq!(shutdown.requests(), 1);
///     // ... answer it ...
/// }
/// assert_eq!(shutdown.requests(), 0);
/// ```
#[must_use = "the request is counted only while the guard lives"]
pub struct RequestGuard {
    inner: Arc<Inner>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.inner.requests[shard()]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One shard of the in-flight request count, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct RequestShard(AtomicIsize);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(delay: u64, timeout: u64) -> DrainSettings {
        DrainSettings {
            delay: Duration::from_secs(delay),
            timeout: Duration::from_secs(timeout),
            idle_grace: Duration::from_millis(500),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn empty_drain_finishes_after_the_delay() {
        let trigger = ShutdownTrigger::new();
        let shutdown = trigger.watcher();
        assert!(trigger.begin(settings(3, 30)));
        assert!(!trigger.begin(settings(0, 0)), "second begin is refused");
        assert_eq!(shutdown.phase(), Phase::Stopping);
        let Outcome::Drained { elapsed } = shutdown.wait().await else {
            panic!("expected a clean drain");
        };
        assert_eq!(elapsed, Duration::from_secs(3));
        assert_eq!(shutdown.phase(), Phase::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn exits_when_the_last_task_ends_not_on_a_timer() {
        let trigger = ShutdownTrigger::new();
        let shutdown = trigger.watcher();
        let s = shutdown.clone();
        shutdown.tracker().spawn(async move {
            s.draining().await;
            tokio::time::sleep(Duration::from_millis(1234)).await;
        });
        trigger.begin(settings(0, 30));
        let outcome = shutdown.wait().await;
        assert_eq!(
            outcome,
            Outcome::Drained {
                elapsed: Duration::from_millis(1234)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_forces_and_counts_what_was_cut() {
        let trigger = ShutdownTrigger::new();
        let shutdown = trigger.watcher();
        let s = shutdown.clone();
        shutdown.tracker().spawn(async move {
            let _conn = s.track_connection();
            let _req = s.track_request();
            s.forced().await;
        });
        tokio::task::yield_now().await;
        trigger.begin(settings(1, 5));
        let outcome = shutdown.wait().await;
        assert_eq!(
            outcome,
            Outcome::Forced {
                reason: ForceReason::Deadline,
                connections: 1,
                requests: 1,
                elapsed: Duration::from_secs(6),
            }
        );
        assert_eq!(shutdown.connections(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn force_during_the_delay_skips_it() {
        let trigger = ShutdownTrigger::new();
        let shutdown = trigger.watcher();
        let s = shutdown.clone();
        shutdown.tracker().spawn(async move { s.forced().await });
        trigger.begin(settings(60, 60));
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.force(ForceReason::Requested);
        let Outcome::Forced {
            reason, elapsed, ..
        } = shutdown.wait().await
        else {
            panic!("expected a forced outcome");
        };
        assert_eq!(reason, ForceReason::Requested);
        assert_eq!(elapsed, Duration::from_secs(1));
    }
}
