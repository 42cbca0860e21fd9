//! Reloading: load, validate, swap, and tell the caller how it went.
//!
//! Triggers never queue up. A burst of a thousand SIGHUPs costs at most two
//! loads: the one running when the burst starts, and one more that sees the
//! file as it is after the burst. Every caller still gets a verdict: the
//! verdict of the first load that *started* after its request, so it always
//! reflects the file as it was when the caller asked, or later.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::config::Reloadable;
use crate::error::{BoxError, ReloadError};

/// The result of one reload: the generation now serving, or why the new
/// configuration was refused (the previous one keeps serving).
///
/// # Example
///
/// ```
/// use grace::{Reloadable, Reloader, Verdict};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let verdict: Verdict = reloader.reload().await;
/// match verdict {
///     Ok(generation) => assert_eq!(generation, 2),
///     Err(e) => panic!("rejected, generation 1 keeps serving: {e}"),
/// }
/// # }
/// ```
pub type Verdict = Result<u64, ReloadError>;

/// A request for a reload, redeemable for its verdict with
/// [`Reloader::verdict`].
///
/// Taking a ticket and waiting are separate so a caller can ask at once
/// (from a signal handler, say) and learn the verdict later, or never.
///
/// # Example
///
/// ```
/// use grace::{Reloadable, Reloader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(7u32));
/// let first = reloader.trigger();
/// // Merged with the first unless its load started in between.
/// let second = reloader.trigger();
/// assert!(first < second);
/// let covered_second = reloader.verdict(second).await.unwrap();
/// let covered_first = reloader.verdict(first).await.unwrap();
/// assert!(covered_first <= covered_second);
/// assert!((1..=2).contains(&reloader.loads()));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The last reload that ran, for status reports.
///
/// # Example
///
/// ```
/// use grace::{Reloadable, Reloader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Err::<u32, _>("bad value"));
/// assert!(reloader.last().is_none()); // nothing ran yet
/// let _ = reloader.reload().await;
/// let last = reloader.last().unwrap();
/// assert_eq!(last.verdict.unwrap_err().to_string(), "bad value");
/// assert!(last.at <= std::time::SystemTime::now());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LastReload {
    /// When it finished.
    pub at: SystemTime,
    /// How it went.
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
struct Done {
    // Every ticket up to and including this one is answered by `last`.
    upto: u64,
    last: Option<LastReload>,
}

type LoadFn<T> = dyn Fn() -> Result<T, BoxError> + Send + Sync;

/// What a reload does outside the configuration once it is swapped in:
/// prepared (and able to fail) before the swap, run after it.
///
/// Split in two so a reload that fails to prepare changes nothing, and one
/// that prepared never leaves the world out of step with the configuration.
///
/// # Example
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use grace::{reload::Commit, Reloadable, Reloader, ReloadError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let applied = Arc::new(Mutex::new(Vec::new()));
/// let log = applied.clone();
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32))
///     .with_prepare(move |old: &u32, new: &u32| {
///         if new < old {
///             return Err::<Option<Commit>, grace::BoxError>("cannot go back".into());
///         }
///         let (log, new) = (log.clone(), *new);
///         Ok(Some(Box::new(move || log.lock().unwrap().push(new)) as Commit))
///     });
/// assert_eq!(reloader.reload().await.unwrap(), 2);
/// assert_eq!(*applied.lock().unwrap(), [2]); // committed after the swap
/// # }
/// ```
pub type Commit = Box<dyn FnOnce() + Send>;

type PrepareFn<T> = dyn Fn(&T, &T) -> Result<Option<Commit>, BoxError> + Send + Sync;

/// A step of a reload, as seen by an observer (see [`Reloader::observe`]).
///
/// # Example
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use grace::reload::ReloadEvent;
/// use grace::{Reloadable, Reloader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let log = seen.clone();
/// reloader.observe(move |event| {
///     log.lock().unwrap().push(match event {
///         ReloadEvent::Started => "started".to_string(),
///         ReloadEvent::Finished(verdict) => format!("finished: {verdict:?}"),
///     })
/// });
/// reloader.reload().await.unwrap();
/// assert_eq!(*seen.lock().unwrap(), ["started", "finished: Ok(2)"]);
/// # }
/// ```
#[derive(Debug)]
pub enum ReloadEvent<'a> {
    /// A load begins.
    Started,
    /// It ended with this verdict.
    Finished(&'a Verdict),
}

type ObserverFn = dyn Fn(&ReloadEvent<'_>) + Send + Sync;

/// Drives reloads of a [`Reloadable`]: runs the loader (read, parse,
/// validate), swaps the result in when it is accepted, and reports a
/// [`Verdict`]. Cheap to clone.
///
/// All of a reload runs on a thread of its own, `grace-reload`, at a lower
/// priority than the rest of the process (nice 10): loading, preparing,
/// swapping, dropping the old generation, the observers and the verdict's
/// log line. (A server started with [`Server::block_on`] runs them on the
/// thread that called it instead, at the same priority.) The threads that
/// serve requests only ever see the new generation appear.
///
/// [`Server::block_on`]: crate::Server::block_on
///
/// # Example
///
/// ```
/// use grace::{Reloadable, Reloader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = std::env::temp_dir().join(format!("grace-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("port");
/// std::fs::write(&path, "8080").unwrap();
///
/// let load = {
///     let path = path.clone();
///     move || -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
///         Ok(std::fs::read_to_string(&path)?.trim().parse()?)
///     }
/// };
/// let config = Reloadable::new(load().unwrap());
/// let reloader = Reloader::new(config.clone(), load);
///
/// std::fs::write(&path, "not a port").unwrap();
/// assert!(reloader.reload().await.is_err());   // rejected...
/// assert_eq!(**config.load(), 8080);           // ...the old one keeps serving
///
/// std::fs::write(&path, "9090").unwrap();
/// assert_eq!(reloader.reload().await.unwrap(), 2);
/// assert_eq!(**config.load(), 9090);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
pub struct Reloader<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Reloader<T> {
    fn clone(&self) -> Self {
        Reloader {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Reloader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("generation", &self.inner.config.generation())
            .field("loads", &self.inner.loads.load(Ordering::Relaxed))
            .finish()
    }
}

struct Inner<T> {
    config: Reloadable<T>,
    load: Box<LoadFn<T>>,
    // Tickets handed out so far. SeqCst pairs with the worker's read of it:
    // a ticket taken before the worker reads is covered by that load.
    requested: AtomicU64,
    // The reload thread, to wake; an error when it could not be started.
    thread: OnceLock<Result<std::thread::Thread, Arc<std::io::Error>>>,
    done: watch::Sender<Done>,
    closed: AtomicBool,
    loads: AtomicU64,
    // Verdicts of loads that ran, for metrics: accepted, rejected.
    accepted: AtomicU64,
    rejected: AtomicU64,
    prepare: std::sync::OnceLock<Box<PrepareFn<T>>>,
    // Read once per reload, written when an observer is added: never on the
    // request path.
    observers: std::sync::RwLock<Vec<Box<ObserverFn>>>,
    // What asked for reloads: those not yet loaded, and those the running
    // (or last) load covers. Touched per trigger and per load only.
    causes: std::sync::Mutex<Causes>,
}

#[derive(Default)]
struct Causes {
    pending: Vec<String>,
    loading: Vec<String>,
}

impl<T: Send + Sync + 'static> Reloader<T> {
    /// A reloader for `config` that calls `load` to produce each new
    /// configuration. `load` reads, parses and validates; an `Err` rejects
    /// the reload and leaves the current configuration serving.
    ///
    /// Starts the reload thread. Inside a tokio runtime, that thread enters
    /// it, so that `load`, the prepare step and observers may spawn tasks.
    /// When the thread cannot be started (the system is out of threads),
    /// every reload is rejected with that error.
    pub fn new<F, E>(config: Reloadable<T>, load: F) -> Self
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Self::hosted(config, load, None)
    }

    /// As [`Reloader::new`], with the loads run by `host` (see
    /// [`ReloadHost`]) instead of a thread of their own, when it is given
    /// and still there.
    pub(crate) fn hosted<F, E>(config: Reloadable<T>, load: F, host: Option<&ReloadHost>) -> Self
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let inner = Arc::new(Inner {
            config,
            load: Box::new(move || load().map_err(Into::into)),
            requested: AtomicU64::new(0),
            thread: OnceLock::new(),
            done: watch::Sender::new(Done {
                upto: 0,
                last: None,
            }),
            closed: AtomicBool::new(false),
            loads: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            prepare: std::sync::OnceLock::new(),
            observers: std::sync::RwLock::new(Vec::new()),
            causes: std::sync::Mutex::default(),
        });
        let runtime = tokio::runtime::Handle::try_current().ok();
        let hosted = host.and_then(|host| {
            let (weak, runtime) = (Arc::downgrade(&inner), runtime.clone());
            host.run(move |ended| reload_thread(weak, runtime, Some(ended)))
        });
        let thread = match hosted {
            Some(thread) => Ok(thread),
            None => Self::spawn_thread(Arc::downgrade(&inner), runtime),
        };
        // Set once, here, before anyone can trigger.
        let _ = inner.thread.set(thread);
        Reloader { inner }
    }

    fn spawn_thread(
        inner: Weak<Inner<T>>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Result<std::thread::Thread, Arc<std::io::Error>> {
        let thread = std::thread::Builder::new()
            .name("grace-reload".into())
            .spawn(move || reload_thread(inner, runtime, None));
        match thread {
            Ok(handle) => Ok(handle.thread().clone()),
            Err(e) => {
                tracing::error!("cannot start the reload thread, reloads will be rejected: {e}");
                Err(Arc::new(e))
            }
        }
    }

    /// Adds a step between loading and swapping, for changes a configuration
    /// implies outside itself (binding a new listen address, say).
    ///
    /// `prepare(old, new)` runs off the async threads after `load` accepted
    /// the new configuration. An `Err` rejects the reload with
    /// [`ReloadError::Apply`], and nothing changes (what it prepared is
    /// dropped). `Ok(Some(commit))` runs `commit` right after the swap.
    ///
    /// # Panics
    /// When called twice.
    pub fn with_prepare<F, E>(self, prepare: F) -> Self
    where
        F: Fn(&T, &T) -> Result<Option<Commit>, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let boxed: Box<PrepareFn<T>> =
            Box::new(move |old, new| prepare(old, new).map_err(Into::into));
        if self.inner.prepare.set(boxed).is_err() {
            panic!("Reloader::with_prepare called twice");
        }
        self
    }

    /// Calls `observer` when each load starts and when it finishes (systemd's
    /// `RELOADING=1` … `READY=1`, metrics). It runs on the reload thread,
    /// before the next load can start: keep it short.
    pub fn observe(&self, observer: impl Fn(&ReloadEvent<'_>) + Send + Sync + 'static) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(observer));
    }

    /// The configuration this reloader swaps.
    pub fn config(&self) -> &Reloadable<T> {
        &self.inner.config
    }

    /// Asks for a reload and returns at once. Requests made while a load runs
    /// are merged into the next one.
    pub fn trigger(&self) -> Ticket {
        let ticket = self.inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.wake();
        Ticket(ticket)
    }

    /// As [`trigger`](Self::trigger), naming what asked (`SIGHUP`, `control
    /// socket`, `file change`): [`causes`](Self::causes) reports it for the
    /// load that covers this request.
    pub fn trigger_by(&self, cause: &str) -> Ticket {
        self.inner.add_cause(cause);
        self.trigger()
    }

    /// As [`reload`](Self::reload), naming what asked (see
    /// [`trigger_by`](Self::trigger_by)).
    ///
    /// # Return value
    /// As [`Reloader::reload`].
    ///
    /// # Errors
    /// As [`Reloader::verdict`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Reloader::verdict`].
    pub async fn reload_by(&self, cause: &str) -> Verdict {
        let ticket = self.trigger_by(cause);
        self.verdict(ticket).await
    }

    /// What asked for the load running now, or for the last one once it
    /// finished (as named by [`trigger_by`](Self::trigger_by); requests
    /// merged into one load are all listed). Empty when none was named.
    ///
    /// # Example
    ///
    /// ```
    /// use grace::{Reloadable, Reloader};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
    /// reloader.reload_by("SIGHUP").await.unwrap();
    /// assert_eq!(reloader.causes(), ["SIGHUP"]);
    /// # }
    /// ```
    pub fn causes(&self) -> Vec<String> {
        self.inner.lock_causes().loading.clone()
    }

    /// Waits for the verdict of the first load that started after `ticket`
    /// was taken.
    ///
    /// # Return value
    /// Resolves once that load finished (at once if it already did).
    ///
    /// # Errors
    /// The load's [`ReloadError`] when the configuration was refused (the
    /// previous one keeps serving); [`ReloadError::ShuttingDown`] when the
    /// reloader was closed before a load covered `ticket`.
    ///
    /// # Cancel safety
    /// Cancel safe: the reload happens whether or not anyone waits for it.
    pub async fn verdict(&self, ticket: Ticket) -> Verdict {
        let mut rx = self.inner.done.subscribe();
        let done = rx.wait_for(|d| d.upto >= ticket.0).await;
        match done {
            Ok(done) => match &done.last {
                Some(last) => last.verdict.clone(),
                None => Err(ReloadError::ShuttingDown),
            },
            Err(_) => Err(ReloadError::ShuttingDown),
        }
    }

    /// Reloads and waits for the verdict: `trigger` then `verdict`.
    ///
    /// # Return value
    /// Resolves once a load that started after this call finished: with
    /// the new generation when it was accepted.
    ///
    /// # Errors
    /// As [`Reloader::verdict`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Reloader::verdict`].
    ///
    /// # Example
    ///
    /// ```
    /// use grace::{Reloadable, Reloader};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let load = || "  10 ".trim().parse::<u32>(); // any `Fn() -> Result<T, E>`
    /// let config = Reloadable::new(1u32);
    /// let reloader = Reloader::new(config.clone(), load);
    /// assert_eq!(reloader.reload().await.unwrap(), 2); // generation 2...
    /// assert_eq!(**config.load(), 10); // ...now serving
    /// assert_eq!((reloader.accepted(), reloader.rejected()), (1, 0));
    /// # }
    /// ```
    pub async fn reload(&self) -> Verdict {
        let ticket = self.trigger();
        self.verdict(ticket).await
    }

    /// Refuses further reloads (during shutdown). Pending and later requests
    /// get [`ReloadError::ShuttingDown`]; a load already running finishes.
    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wake();
    }

    /// The last reload that ran, if any.
    pub fn last(&self) -> Option<LastReload> {
        self.inner.done.borrow().last.clone()
    }

    /// How many loads ran: fewer than the triggers when they were merged.
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    /// How many loads were accepted and swapped in (the initial
    /// configuration is not counted).
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// How many loads were rejected. Reloads refused during shutdown did not
    /// load anything and are not counted.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        // The last handle is gone: the reload thread, parked, finds nothing
        // left to reload and ends.
        self.wake();
    }
}

impl<T> Inner<T> {
    fn wake(&self) {
        match self.thread.get() {
            Some(Ok(thread)) => thread.unpark(),
            Some(Err(e)) => {
                // No thread to load: answer at once, with why.
                let verdict = Err(ReloadError::Load(e.clone()));
                let upto = self.requested.load(Ordering::SeqCst);
                self.done.send_modify(|d| {
                    d.upto = d.upto.max(upto);
                    d.last = Some(LastReload {
                        at: SystemTime::now(),
                        verdict,
                    });
                });
            }
            None => {}
        }
    }

    fn lock_causes(&self) -> std::sync::MutexGuard<'_, Causes> {
        self.causes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add_cause(&self, cause: &str) {
        let mut causes = self.lock_causes();
        // Bounded by the distinct causes: a burst of signals adds one.
        if !causes.pending.iter().any(|c| c == cause) {
            causes.pending.push(cause.to_owned());
        }
    }

    fn emit(&self, event: &ReloadEvent<'_>) {
        let observers = self
            .observers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for observe in observers.iter() {
            observe(event);
        }
    }
}

/// A thread that runs a reloader's loads in place of one of its own: the
/// thread that loaded the first configuration, [`Server::block_on`]'s
/// caller.
///
/// glibc gives each thread a heap of its own and a cache of freed blocks
/// (its tcache) that `malloc_trim` cannot reach. A thread that only ever
/// reloads builds both from nothing on the first reload, and the cached
/// blocks, spread over its heap, keep about 250 KiB of it resident for
/// good (100 routes): RSS stepped up by 8-9% on the first reloads and
/// stayed there. The thread that parsed the first configuration already
/// holds that working set, in the main heap, which the allocator can trim.
///
/// [`Server::block_on`]: crate::Server::block_on
pub(crate) struct ReloadHost {
    thread: std::thread::Thread,
    jobs: std::sync::mpsc::Sender<Job>,
    ended: Arc<AtomicBool>,
}

type Job = Box<dyn FnOnce() + Send>;

/// What the host thread runs: the jobs handed to its [`ReloadHost`], in
/// turn, until [`HostEnd`] is dropped.
pub(crate) struct HostLoop {
    jobs: std::sync::mpsc::Receiver<Job>,
    ended: Arc<AtomicBool>,
}

/// Held by whatever the host serves; dropping it ends the host's loop and
/// the reload loop it runs, even while a reloader is still held (by an
/// observer that keeps a handle to its own reloader, say).
pub(crate) struct HostEnd {
    thread: std::thread::Thread,
    ended: Arc<AtomicBool>,
}

impl ReloadHost {
    /// A host for the calling thread, which must then run the loop.
    pub(crate) fn for_this_thread() -> (ReloadHost, HostLoop, HostEnd) {
        let (jobs, receiver) = std::sync::mpsc::channel();
        let ended = Arc::new(AtomicBool::new(false));
        let thread = std::thread::current();
        let host = ReloadHost {
            thread: thread.clone(),
            jobs,
            ended: ended.clone(),
        };
        let run = HostLoop {
            jobs: receiver,
            ended: ended.clone(),
        };
        (host, run, HostEnd { thread, ended })
    }

    /// Hands `job` to the host thread, with the flag that says the host
    /// has ended; the thread to wake for it, or `None` when the host takes
    /// no more jobs.
    fn run(
        &self,
        job: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> Option<std::thread::Thread> {
        let ended = self.ended.clone();
        self.jobs.send(Box::new(move || job(ended))).ok()?;
        self.thread.unpark();
        Some(self.thread.clone())
    }
}

impl HostLoop {
    /// Runs jobs until the host has ended, or no job can come any more.
    pub(crate) fn run(self) {
        use std::sync::mpsc::TryRecvError;
        while !self.ended.load(Ordering::SeqCst) {
            match self.jobs.try_recv() {
                Ok(job) => job(),
                Err(TryRecvError::Empty) => std::thread::park(),
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

impl Drop for HostEnd {
    fn drop(&mut self) {
        self.ended.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// How long the reload thread waits after a load, for another to come,
/// before it gives the freed memory back: a burst of reloads is trimmed
/// once, after it ends, and a lone reload a moment after it.
const TRIM_AFTER: Duration = Duration::from_millis(50);

/// The reload thread: runs a load whenever a ticket is not covered yet,
/// until the reloader is closed or every handle to it is gone.
fn reload_thread<T: Send + Sync + 'static>(
    inner: Weak<Inner<T>>,
    runtime: Option<tokio::runtime::Handle>,
    host_ended: Option<Arc<AtomicBool>>,
) {
    let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
    // A reload competes for the CPU with the requests being served, which
    // matter more: the scheduler runs this thread when they leave room, and
    // a slower load merges more triggers, never queues them.
    if let Err(e) = crate::handoff::sys::lower_thread_priority(RELOAD_NICE) {
        tracing::debug!("reload thread keeps the normal priority: {e}");
    }
    // The first load (the one `config` was made from) left its parse's
    // pages with the allocator too.
    let mut trim_at = Some(Instant::now());
    loop {
        if host_ended
            .as_ref()
            .is_some_and(|e| e.load(Ordering::SeqCst))
        {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let upto = inner.requested.load(Ordering::SeqCst);
        if inner.closed.load(Ordering::SeqCst) {
            inner.done.send_modify(|d| {
                d.upto = u64::MAX;
                d.last = Some(LastReload {
                    at: SystemTime::now(),
                    verdict: Err(ReloadError::ShuttingDown),
                });
            });
            return;
        }
        if upto != inner.done.borrow().upto {
            inner.run(upto);
            trim_at = Some(Instant::now() + TRIM_AFTER);
            continue;
        }
        // Not held while parked: dropping the last handle must end us.
        drop(inner);
        match trim_at {
            None => std::thread::park(),
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                _ => {
                    // The parse's temporaries (and the old generation) are
                    // freed by now, but the allocator keeps their pages:
                    // without this, RSS grows with reloads of a big config.
                    crate::handoff::sys::release_free_memory();
                    trim_at = None;
                }
            },
        }
    }
}

/// The reload thread's nice value: below the threads that serve.
const RELOAD_NICE: i32 = 10;

impl<T: Send + Sync + 'static> Inner<T> {
    /// One load, covering every ticket up to `upto`.
    fn run(&self, upto: u64) {
        {
            let mut causes = self.lock_causes();
            causes.loading = std::mem::take(&mut causes.pending);
        }
        self.emit(&ReloadEvent::Started);
        let (verdict, previous, elapsed) = self.load_once();
        // Observers (the status page's history, a service's hook) first: a
        // reader that waits for the log line then finds the verdict there.
        self.emit(&ReloadEvent::Finished(&verdict));
        log_verdict(&verdict, previous, elapsed);
        self.done.send_replace(Done {
            upto,
            last: Some(LastReload {
                at: SystemTime::now(),
                verdict,
            }),
        });
    }

    fn load_once(&self) -> (Verdict, u64, Duration) {
        let start = Instant::now();
        let previous = self.config.generation();
        self.loads.fetch_add(1, Ordering::Relaxed);
        // A panicking loader rejects the reload; the thread lives on.
        let swapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.swap()));
        let outcome = swapped.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(ReloadError::Load(Arc::from(BoxError::from(format!(
                "the configuration loader panicked: {why}"
            )))))
        });
        let elapsed = start.elapsed();
        match &outcome {
            Ok(_) => self.accepted.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.rejected.fetch_add(1, Ordering::Relaxed),
        };
        (outcome, previous, elapsed)
    }

    /// Load, prepare, swap, commit: the old generation is dropped here too
    /// (unless a request still holds it), which for a big config costs as
    /// much as loading it.
    fn swap(&self) -> Verdict {
        let config = (self.load)().map_err(|e| ReloadError::Load(Arc::from(e)))?;
        let commit = match self.prepare.get() {
            None => None,
            Some(prepare) => prepare(&self.config.load(), &config)
                .map_err(|e| ReloadError::Apply(Arc::from(e)))?,
        };
        let generation = self.config.store(config).generation();
        if let Some(commit) = commit {
            commit();
        }
        Ok(generation)
    }
}

fn log_verdict(verdict: &Verdict, previous: u64, elapsed: Duration) {
    match verdict {
        Ok(generation) => tracing::info!(
            generation,
            previous,
            elapsed_us = micros(elapsed),
            "reload accepted"
        ),
        Err(error) => tracing::warn!(
            generation = previous,
            elapsed_us = micros(elapsed),
            "reload rejected, generation {previous} keeps serving: {error}"
        ),
    }
}

/// Microseconds as an integer: a number in JSON logs, and no float
/// printing. An `f64`'s shortest form now and then needs the slow fallback of
/// Rust's float formatting, whose code (about 100 KiB, unused otherwise) then
/// joins the resident set: measured as a one-time RSS step somewhere in a
/// run of thousands of reloads.
fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_is_merged_and_ends_on_the_latest_value() {
        let source = Arc::new(AtomicU32::new(0));
        let s = source.clone();
        let reloader = Reloader::new(Reloadable::new(0u32), move || {
            std::thread::sleep(Duration::from_millis(5));
            Ok::<_, BoxError>(s.load(Ordering::SeqCst))
        });
        let mut last = None;
        for i in 1..=1000 {
            source.store(i, Ordering::SeqCst);
            last = Some(reloader.trigger());
        }
        reloader.verdict(last.unwrap()).await.unwrap();
        assert_eq!(**reloader.config().load(), 1000);
        assert!(
            reloader.loads() < 10,
            "1000 triggers ran {} loads",
            reloader.loads()
        );
    }

    #[tokio::test]
    async fn rejection_keeps_the_old_config_and_generation() {
        let reloader = Reloader::new(Reloadable::new("good"), || Err::<&str, _>("line 3: bad"));
        let err = reloader.reload().await.unwrap_err();
        assert!(err.to_string().contains("line 3: bad"), "{err}");
        assert_eq!(reloader.config().generation(), 1);
        assert!(reloader.last().unwrap().verdict.is_err());
    }

    #[tokio::test]
    async fn a_failed_prepare_rejects_and_a_good_one_commits_after_the_swap() {
        let committed = Arc::new(AtomicU32::new(0));
        let c = committed.clone();
        let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, BoxError>(2u32))
            .with_prepare(move |old: &u32, new: &u32| {
                if *old == *new {
                    return Err::<Option<Commit>, BoxError>("address already in use".into());
                }
                let c = c.clone();
                Ok(Some(Box::new(move || {
                    c.store(1, Ordering::SeqCst);
                })))
            });
        assert_eq!(reloader.reload().await.unwrap(), 2);
        assert_eq!(committed.load(Ordering::SeqCst), 1);
        // Now old == new: prepare refuses, nothing changes.
        let err = reloader.reload().await.unwrap_err();
        assert!(matches!(err, ReloadError::Apply(_)), "{err:?}");
        assert_eq!(reloader.config().generation(), 2);
    }

    #[tokio::test]
    async fn merged_requests_name_every_cause_once() {
        // The loader waits while the test holds `gate`: triggers taken
        // during the first load are merged into the next one.
        let gate = Arc::new(std::sync::Mutex::new(()));
        let held = gate.lock().unwrap();
        let loader_gate = gate.clone();
        let reloader = Reloader::new(Reloadable::new(1u32), move || {
            drop(loader_gate.lock().unwrap());
            Ok::<_, BoxError>(2u32)
        });
        reloader.trigger_by("first");
        let started = Instant::now();
        while reloader.loads() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the first load never started"
            );
            std::thread::yield_now();
        }
        reloader.trigger_by("SIGHUP");
        reloader.trigger_by("SIGHUP");
        let last = reloader.trigger_by("file change");
        drop(held);
        reloader.verdict(last).await.unwrap();
        assert_eq!(reloader.loads(), 2);
        assert_eq!(reloader.causes(), ["SIGHUP", "file change"]);
        // An unnamed trigger names nothing.
        reloader.reload().await.unwrap();
        assert!(reloader.causes().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_run_on_the_reload_thread_at_a_lower_priority() {
        let reloader = Reloader::new(Reloadable::new((String::new(), 0)), || {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            // Field 19 of the thread's stat line is its nice value.
            let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
            let after_name = stat.rsplit_once(')').ok_or("no comm in stat")?.1;
            let nice: i32 = after_name
                .split_whitespace()
                .nth(16)
                .ok_or("short stat")?
                .parse()?;
            Ok::<_, BoxError>((name, nice))
        });
        reloader.reload().await.unwrap();
        let loaded = reloader.config().load();
        assert_eq!(loaded.0, "grace-reload");
        assert_eq!(loaded.1, RELOAD_NICE);
    }

    #[tokio::test]
    async fn a_panicking_loader_is_rejected_and_the_next_reload_runs() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let reloader = Reloader::new(Reloadable::new(0u32), move || {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("bad table");
            }
            Ok::<_, BoxError>(7u32)
        });
        let err = reloader.reload().await.unwrap_err();
        assert!(err.to_string().contains("panicked: bad table"), "{err}");
        assert_eq!(reloader.reload().await.unwrap(), 2);
        assert_eq!(**reloader.config().load(), 7);
    }

    #[tokio::test]
    async fn dropping_every_handle_frees_the_reloader() {
        let captured = Arc::new(());
        let held = captured.clone();
        let reloader = Reloader::new(Reloadable::new(()), move || {
            let _ = &held;
            Ok::<_, BoxError>(())
        });
        reloader.reload().await.unwrap();
        drop(reloader);
        // The thread lets go of it once it wakes to find no handle left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&captured) > 1 {
            assert!(Instant::now() < deadline, "the loader is still held");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn closed_reloader_refuses() {
        let reloader = Reloader::new(Reloadable::new(1), || Ok::<_, BoxError>(2));
        reloader.close();
        assert!(matches!(
            reloader.reload().await,
            Err(ReloadError::ShuttingDown)
        ));
        assert_eq!(reloader.config().generation(), 1);
    }
}
