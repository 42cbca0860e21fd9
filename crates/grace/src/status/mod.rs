//! A live status page: what changed lately and what is happening now, for a
//! browser.
//!
//! A [`Recorder`] keeps the last [`HISTORY`] reloads and upgrades, fed by
//! the reloader's and the hand-off's verdicts (never by requests).
//! [`StatusPage`] turns it, with the control socket's own
//! [`Status`], into a [`Snapshot`] (the
//! JSON twin), one self-contained HTML page (readable without script), and
//! a server-sent event stream that ends when the drain starts, so a page
//! left open never holds a drain. Get one from
//! [`Started::status_page`](crate::Started::status_page) and serve it on an
//! admin address.
//!
//! A supervisor (`grace run`) adds its application generations through
//! [`AppSource`].

mod events;
mod render;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use crate::control::protocol::Status;
use crate::drain::{Phase, Shutdown};
use crate::handoff::{Handoff, UpgradeError, Upgraded};
use crate::metrics::RequestStats;
use crate::reload::{ReloadEvent, Reloader};

pub use events::EventStream;

/// Reloads and upgrades kept, each: the newest first.
pub const HISTORY: usize = 20;

/// How far apart request-rate samples are taken (only while the page is
/// looked at), and how many are kept: five minutes.
const RATE_STEP: Duration = Duration::from_secs(5);
const RATE_POINTS: usize = 61;

/// One reload, as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadRecord {
    /// When it finished, Unix time in seconds.
    pub at: f64,
    /// What asked for it (`SIGHUP`, `control socket`, `file change`),
    /// comma separated when several were merged into one load. Shared with
    /// the records before it when it is the same.
    pub trigger: Arc<str>,
    /// `accepted` or `rejected`.
    pub result: &'static str,
    /// The generation serving after it.
    pub generation: u64,
    /// Why it was rejected (a configuration error names file:line:column).
    pub error: Option<String>,
}

/// One upgrade, as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpgradeRecord {
    /// When it ended, Unix time in seconds.
    pub at: f64,
    /// The process that handed over.
    pub old_pid: u32,
    /// The process started, when one was.
    pub new_pid: Option<u32>,
    /// Seconds until the new process was ready, when it was.
    pub ready_secs: Option<f64>,
    /// `ok` or `failed`.
    pub result: &'static str,
    /// Why it failed.
    pub error: Option<String>,
}

/// A listening address, as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerStatus {
    /// `http`, `tls` or `admin`.
    pub kind: &'static str,
    /// The address.
    pub addr: String,
    /// Its connections open now, when counted (see
    /// [`Running::open_connections`](crate::Running::open_connections)).
    pub connections: Option<usize>,
}

/// Requests per second by status class (1xx to 5xx) over one sampling step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatePoint {
    /// End of the step, Unix time in seconds.
    pub at: f64,
    /// Requests per second finished with a 1xx, 2xx, 3xx, 4xx, 5xx status.
    pub per_sec: [f64; 5],
}

/// One generation of a supervised application, for the page's `grace run`
/// section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppGeneration {
    /// Counts from 1 at the supervisor's start.
    pub generation: u64,
    /// Its process, while it runs.
    pub pid: Option<u32>,
    /// What it is doing: `starting`, `serving`, `draining`, `exited`...
    pub state: String,
    /// When it started, Unix time in seconds.
    pub started_at: f64,
    /// How many times it was restarted.
    pub restarts: u32,
}

/// What a supervisor reports to the page: its application generations,
/// newest first. Called per snapshot, off the request path.
///
/// # Example
///
/// ```
/// use grace::status::{AppGeneration, AppSource};
///
/// struct Fixed;
/// impl AppSource for Fixed {
///     fn generations(&self) -> Vec<AppGeneration> {
///         vec![AppGeneration { generation: 2, pid: Some(4242), state: "serving".into(),
///                              started_at: 1.7e9, restarts: 0 }]
///     }
/// }
/// assert_eq!(Fixed.generations()[0].pid, Some(4242));
/// ```
pub trait AppSource: Send + Sync {
    /// The generations to show, newest first.
    fn generations(&self) -> Vec<AppGeneration>;
}

/// Everything the page shows, as `/status.json` serves it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The program's version.
    pub version: String,
    /// What the control socket's `status` says.
    #[serde(flatten)]
    pub status: Status,
    /// Seconds left before the drain is forced, during one.
    pub deadline_secs: Option<f64>,
    /// Connections and requests open when the drain started: the progress
    /// bar's full length.
    pub drain_started_with: Option<(usize, usize)>,
    /// The last reloads, newest first.
    pub reloads: Vec<ReloadRecord>,
    /// The last upgrades, newest first.
    pub upgrades: Vec<UpgradeRecord>,
    /// Where this process listens.
    pub listeners: Vec<ListenerStatus>,
    /// Request rates, oldest first, sampled while someone looks.
    pub rates: Vec<RatePoint>,
    /// A supervisor's application generations, when there is one.
    pub apps: Option<Vec<AppGeneration>>,
}

type CausesFn = dyn Fn() -> Vec<String> + Send + Sync;

/// The last reloads and upgrades of this process. Updated on lifecycle
/// events only; cheap to read.
///
/// # Example
///
/// ```
/// use grace::status::Recorder;
/// use grace::{Reloadable, Reloader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Err::<u32, _>("app.toml:3:1: bad"));
/// let recorder = Recorder::new();
/// recorder.follow_reloads(&reloader);
/// let _ = reloader.reload_by("SIGHUP").await;
/// let last = &recorder.reloads()[0];
/// assert_eq!((&*last.trigger, last.result), ("SIGHUP", "rejected"));
/// assert_eq!(last.error.as_deref(), Some("app.toml:3:1: bad"));
/// # }
/// ```
pub struct Recorder {
    history: Mutex<History>,
    // Bumped on every record: open event streams push at once.
    changed: watch::Sender<u64>,
    causes: OnceLock<Box<CausesFn>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let history = self.lock();
        f.debug_struct("Recorder")
            .field("reloads", &history.reloads.len())
            .field("upgrades", &history.upgrades.len())
            .finish()
    }
}

struct History {
    reloads: VecDeque<ReloadRecord>,
    upgrades: VecDeque<UpgradeRecord>,
}

impl Default for History {
    // Full size from the start: a list that grows during reloads puts each
    // larger copy among the load's temporaries, where it pins their pages.
    fn default() -> Self {
        History {
            reloads: VecDeque::with_capacity(HISTORY + 1),
            upgrades: VecDeque::with_capacity(HISTORY + 1),
        }
    }
}

impl Recorder {
    /// An empty history.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            history: Mutex::default(),
            changed: watch::Sender::new(0),
            causes: OnceLock::new(),
        })
    }

    /// Records each reload `reloader` runs, with what asked for it.
    ///
    /// # Panics
    /// When called twice on one recorder.
    pub fn follow_reloads<T: Send + Sync + 'static>(self: &Arc<Self>, reloader: &Reloader<T>) {
        let ours = reloader.clone();
        if self.causes.set(Box::new(move || ours.causes())).is_err() {
            panic!("Recorder::follow_reloads called twice");
        }
        // Weak: the reloader keeps its observers, and we keep the reloader.
        let weak: Weak<Recorder> = Arc::downgrade(self);
        let config = reloader.config().clone();
        reloader.observe(move |event| {
            let (Some(recorder), ReloadEvent::Finished(verdict)) = (weak.upgrade(), event) else {
                return;
            };
            let trigger = recorder.causes.get().map_or_else(Vec::new, |f| f());
            let (result, error) = match verdict {
                Ok(_) => ("accepted", None),
                Err(e) => ("rejected", Some(e.to_string())),
            };
            let trigger = if trigger.is_empty() {
                "unnamed".to_owned()
            } else {
                trigger.join(", ")
            };
            recorder.push_reload(ReloadRecord {
                at: unix_now(),
                trigger: recorder.shared_trigger(&trigger),
                result,
                generation: *verdict.as_ref().unwrap_or(&config.generation()),
                error,
            });
        });
    }

    /// Records each upgrade verdict of `handoff`, refusals included.
    pub fn follow_upgrades(self: &Arc<Self>, handoff: &Handoff) {
        let weak = Arc::downgrade(self);
        handoff.observe(move |verdict| {
            if let Some(recorder) = weak.upgrade() {
                recorder.push_upgrade(upgrade_record(std::process::id(), verdict));
            }
        });
    }

    /// Records that this process took over from `old_pid` by an upgrade,
    /// ready `elapsed` after it started: the old process's history ends with
    /// it, so the new one begins with this entry.
    pub fn upgraded_from(&self, old_pid: u32, elapsed: Duration) {
        self.push_upgrade(UpgradeRecord {
            at: unix_now(),
            old_pid,
            new_pid: Some(std::process::id()),
            ready_secs: Some(elapsed.as_secs_f64()),
            result: "ok",
            error: None,
        });
    }

    /// The last reloads, newest first.
    pub fn reloads(&self) -> Vec<ReloadRecord> {
        self.lock().reloads.iter().cloned().collect()
    }

    /// The last upgrades, newest first.
    pub fn upgrades(&self) -> Vec<UpgradeRecord> {
        self.lock().upgrades.iter().cloned().collect()
    }

    /// The newest record's trigger when it is the same text: a storm of
    /// reloads from one source keeps one string, not one per record
    /// allocated in the middle of each load and living on after it.
    fn shared_trigger(&self, trigger: &str) -> Arc<str> {
        match self.lock().reloads.front() {
            Some(newest) if *newest.trigger == *trigger => Arc::clone(&newest.trigger),
            _ => Arc::from(trigger),
        }
    }

    fn push_reload(&self, record: ReloadRecord) {
        push_front(&mut self.lock().reloads, record);
        self.changed.send_modify(|n| *n += 1);
    }

    fn push_upgrade(&self, record: UpgradeRecord) {
        push_front(&mut self.lock().upgrades, record);
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn push_front<R>(list: &mut VecDeque<R>, record: R) {
    list.push_front(record);
    list.truncate(HISTORY);
}

fn upgrade_record(old_pid: u32, verdict: Result<&Upgraded, &UpgradeError>) -> UpgradeRecord {
    match verdict {
        Ok(up) => UpgradeRecord {
            at: unix_now(),
            old_pid,
            new_pid: Some(up.pid),
            ready_secs: Some(up.elapsed.as_secs_f64()),
            result: "ok",
            error: None,
        },
        Err(e) => UpgradeRecord {
            at: unix_now(),
            old_pid,
            new_pid: match e {
                UpgradeError::ChildExited { pid, .. } | UpgradeError::ReadyTimeout { pid, .. } => {
                    Some(*pid)
                }
                _ => None,
            },
            ready_secs: None,
            result: "failed",
            error: Some(e.to_string()),
        },
    }
}

fn unix_now() -> f64 {
    unix(SystemTime::now())
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

type StatusFn = dyn Fn() -> Status + Send + Sync;
type ListenersFn = dyn Fn() -> Vec<ListenerStatus> + Send + Sync;

/// The status page of one server: its [`Snapshot`], HTML and event stream.
/// Nothing here runs per request of the service: only when the page, its
/// JSON or its stream is asked for.
pub struct StatusPage {
    recorder: Arc<Recorder>,
    status: Box<StatusFn>,
    shutdown: Shutdown,
    version: String,
    listeners: Option<Box<ListenersFn>>,
    requests: Option<Arc<RequestStats>>,
    // (taken at, totals by class), oldest first.
    samples: Mutex<VecDeque<(SystemTime, [u64; 5])>>,
    drain_started_with: OnceLock<(usize, usize)>,
    apps: Option<Arc<dyn AppSource>>,
}

impl std::fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPage")
            .field("recorder", &self.recorder)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl StatusPage {
    pub(crate) fn new(
        recorder: Arc<Recorder>,
        shutdown: Shutdown,
        status: impl Fn() -> Status + Send + Sync + 'static,
    ) -> StatusPage {
        StatusPage {
            recorder,
            status: Box::new(status),
            shutdown,
            version: String::new(),
            listeners: None,
            requests: None,
            samples: Mutex::default(),
            drain_started_with: OnceLock::new(),
            apps: None,
        }
    }

    /// Shows `version` as the program's.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Lists the listeners `listeners` returns, called per snapshot (so a
    /// reload that changed them shows).
    pub fn listeners(
        mut self,
        listeners: impl Fn() -> Vec<ListenerStatus> + Send + Sync + 'static,
    ) -> Self {
        self.listeners = Some(Box::new(listeners));
        self
    }

    /// Charts request rates from `stats` (sampled when the page is asked
    /// for, at most every 5 s: nothing runs while nobody looks).
    pub fn requests(mut self, stats: Arc<RequestStats>) -> Self {
        self.requests = Some(stats);
        self
    }

    /// Adds a supervisor's application generations.
    pub fn apps(mut self, apps: Arc<dyn AppSource>) -> Self {
        self.apps = Some(apps);
        self
    }

    /// The state now.
    pub fn snapshot(&self) -> Snapshot {
        let status = (self.status)();
        let draining = matches!(self.shutdown.phase(), Phase::Draining | Phase::Forcing);
        if draining {
            let _ = self
                .drain_started_with
                .set((status.connections, status.requests));
        }
        Snapshot {
            version: self.version.clone(),
            deadline_secs: self.shutdown.deadline().map(|d| {
                d.saturating_duration_since(tokio::time::Instant::now())
                    .as_secs_f64()
            }),
            drain_started_with: self.drain_started_with.get().copied(),
            status,
            reloads: self.recorder.reloads(),
            upgrades: self.recorder.upgrades(),
            listeners: self.listeners.as_ref().map_or_else(Vec::new, |f| f()),
            rates: self.rates(),
            apps: self.apps.as_ref().map(|a| a.generations()),
        }
    }

    /// The whole page, showing the state now; its script follows the event
    /// stream at `events_path`.
    pub fn html(&self, events_path: &str) -> String {
        render::page(&self.snapshot(), events_path)
    }

    /// A server-sent event stream of the page's body: one `snapshot` event
    /// now, then one on each change and at least every second; when the
    /// drain starts, the drain's progress and an `end` event, and the
    /// stream ends (a page left open must not hold the drain).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn events(self: &Arc<Self>) -> EventStream {
        events::start(self.clone())
    }

    fn rates(&self) -> Vec<RatePoint> {
        let Some(stats) = &self.requests else {
            return Vec::new();
        };
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = SystemTime::now();
        let due = samples
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at).unwrap_or_default() >= RATE_STEP);
        if due {
            samples.push_back((now, std::array::from_fn(|class| stats.count(class))));
            if samples.len() > RATE_POINTS {
                samples.pop_front();
            }
        }
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|((t0, a), (t1, b))| {
                let secs = t1.duration_since(*t0).unwrap_or_default().as_secs_f64();
                RatePoint {
                    at: unix(*t1),
                    per_sec: std::array::from_fn(|i| {
                        (b[i].saturating_sub(a[i])) as f64 / secs.max(0.001)
                    }),
                }
            })
            .collect()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.recorder.changed.subscribe()
    }
}

#[cfg(test)]
mod tests;
