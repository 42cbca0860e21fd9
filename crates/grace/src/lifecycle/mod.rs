//! The process lifecycle: signals in, reloads and a graceful shutdown out.
//!
//! Every signal path (SIGHUP, SIGTERM and its kin, SIGUSR2) and every
//! [`Controller`] request starts here, and asks one state machine (the
//! `machine` module, whose documentation is its transition table) what it
//! may do: the rules that keep reloads, upgrades and the shutdown apart live
//! there and nowhere else. This module only carries out the answers.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::drain::{DrainSettings, ForceReason, Outcome, Shutdown, ShutdownTrigger};
use crate::error::ReloadError;
use crate::handoff::{Handoff, UpgradeError, Upgraded};
#[cfg(feature = "systemd")]
use crate::notify::Notifier;
use crate::reload::{ReloadEvent, Reloader, Verdict};
use crate::signals::{Event, Signal, Signals};
use machine::{Action, By, Input, Refusal, State};

mod machine;

type SettingsFn<T> = dyn Fn(&T) -> DrainSettings + Send + Sync;

/// Routes lifecycle events to a [`Reloader`] and a [`ShutdownTrigger`],
/// which it owns: the lifecycle is the one place a shutdown begins or is
/// forced, while services watch it through a [`Shutdown`].
///
/// * reload: triggers a reload, or is ignored (and logged) during shutdown;
/// * shutdown: begins a graceful shutdown with the drain settings of the
///   configuration current at that moment; a second one forces;
/// * upgrade: hands the listeners to a new process (see [`Handoff`]); once
///   it is ready, this one drains (no delay: the new one already serves).
///   Without a `Handoff`, logged and ignored.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use grace::{signals::Signals, DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let signals = Signals::install()?;
/// let config = Reloadable::new(Duration::from_secs(10));
/// let reloader = Reloader::new(config, || Ok::<_, grace::BoxError>(Duration::from_secs(20)));
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// // ... grace::serve(listeners, service, &shutdown).start();
/// let lifecycle = Lifecycle::new(reloader, trigger, |timeout: &Duration| DrainSettings {
///     timeout: *timeout,
///     ..DrainSettings::default()
/// });
/// let outcome = lifecycle.run(signals).await;
/// std::process::exit(if outcome.is_clean() { 0 } else { 75 });
/// # }
/// ```
pub struct Lifecycle<T> {
    controller: Controller<T>,
}

impl<T> std::fmt::Debug for Lifecycle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("controller", &self.controller)
            .finish()
    }
}

impl<T: Send + Sync + 'static> Lifecycle<T> {
    /// Ties `reloader` and the shutdown of `trigger` together, and keeps the
    /// trigger; `drain_settings` reads the shutdown timings from the
    /// configuration.
    pub fn new<F>(reloader: Reloader<T>, trigger: ShutdownTrigger, drain_settings: F) -> Self
    where
        F: Fn(&T) -> DrainSettings + Send + Sync + 'static,
    {
        let core = Arc::new(Core {
            state: Mutex::new(State::Running),
            reloader,
            trigger,
            drain_settings: Box::new(drain_settings),
            handoff: OnceLock::new(),
            upgrades: TaskTracker::new(),
            #[cfg(feature = "systemd")]
            notifier: OnceLock::new(),
        });
        // Weak: the reloader keeps its observers, and the core keeps the
        // reloader; a strong reference would keep both alive forever.
        let weak = Arc::downgrade(&core);
        core.reloader.observe(move |event| {
            if let Some(core) = weak.upgrade() {
                core.on(match event {
                    ReloadEvent::Started => Input::ReloadStarted,
                    ReloadEvent::Finished(verdict) => Input::ReloadFinished {
                        accepted: verdict.is_ok(),
                    },
                });
            }
        });
        Lifecycle {
            controller: Controller { core },
        }
    }

    /// Reports to systemd through `notifier` (see [`crate::notify`]): reloads,
    /// the shutdown, watchdog pings; silenced once an upgrade's new process
    /// took over as the main one.
    #[cfg(feature = "systemd")]
    pub fn with_notifier(self, notifier: Arc<Notifier>) -> Self {
        let core = &self.controller.core;
        // Builder methods take `self`: no controller exists yet to race with.
        if core.notifier.set(notifier.clone()).is_ok() {
            crate::notify::attach(notifier, &core.reloader, core.trigger.watcher());
        }
        self
    }

    /// Enables upgrades through `handoff`.
    pub fn with_handoff(self, handoff: Arc<Handoff>) -> Self {
        let _ = self.controller.core.handoff.set(handoff);
        self
    }

    /// A handle that asks for reloads, upgrades and stops programmatically
    /// and gets their verdicts (what a control socket uses). Signals and the
    /// handle act on the same state: a stop asked either way is one shutdown.
    pub fn controller(&self) -> Controller<T> {
        self.controller.clone()
    }

    /// Handles `event`, as a signal would. `cause` names it in the log.
    pub fn handle(&self, event: Event, cause: &str) {
        let c = &self.controller;
        let core = &c.core;
        match event {
            Event::Reload => match core.on(Input::ReloadRequested) {
                Action::Reload => {
                    core.reloader.trigger_by(cause);
                }
                _ => tracing::info!(cause, "reload ignored: shutting down"),
            },
            Event::Shutdown => match core.on(Input::Stop(By::Signal)) {
                Action::Drain => {
                    core.begin_drain();
                }
                Action::Force => {
                    tracing::warn!(cause, "second shutdown request: forcing");
                    core.force();
                }
                _ => {}
            },
            Event::Upgrade if core.handoff.get().is_none() => tracing::warn!(
                cause,
                "upgrade requested, but upgrades are not enabled; ignored"
            ),
            Event::Upgrade => {
                // Counted before the task first runs: `run` must not return
                // (and the process exit) in between.
                let running = core.upgrades.token();
                let c = c.clone();
                // The verdict is logged by `upgrade`; nobody else waits for it.
                tokio::spawn(async move {
                    let _running = running;
                    c.upgrade().await
                });
            }
        }
    }

    /// Handles signals until the shutdown is over, and returns how it ended.
    ///
    /// # Return value
    /// Resolves once the shutdown is over, however it was asked for (a
    /// signal, [`Controller::stop`], a finished upgrade): every connection
    /// gone, or cut at the deadline. The [`Outcome`] says which. An upgrade
    /// still under way then is waited for, so that its verdict is logged and
    /// its new process stopped before the caller exits: it gives up as soon
    /// as the shutdown begins, and stopping its process takes at most the
    /// grace period of [`Handoff::upgrade`] (5 s, then SIGKILL).
    ///
    /// # Cancel safety
    /// Not cancel safe in a useful sense: dropping it stops signal handling,
    /// though a shutdown already begun goes on.
    pub async fn run(self, mut signals: Signals) -> Outcome {
        let core = &self.controller.core;
        let shutdown = core.trigger.watcher().clone();
        if let Some(handoff) = core.handoff.get().cloned() {
            shutdown.on_drain(move || handoff.release());
        }
        let outcome = loop {
            tokio::select! {
                outcome = shutdown.wait() => break outcome,
                signal = signals.recv() => match signal {
                    Some(signal) => self.on_signal(signal),
                    None => break shutdown.wait().await,
                },
            }
        };
        core.on(Input::DrainFinished);
        core.upgrades.close();
        core.upgrades.wait().await;
        outcome
    }

    fn on_signal(&self, signal: Signal) {
        match signal.event() {
            Some(event) => {
                tracing::info!(signal = signal.name(), "signal received: {signal}");
                self.handle(event, signal.name());
            }
            None => tracing::warn!(
                signal = signal.name(),
                "signal ignored: {signal} has no meaning for grace"
            ),
        }
    }
}

/// What a [`Lifecycle`] and its controllers share: the state, and what its
/// actions act on.
struct Core<T> {
    state: Mutex<State>,
    reloader: Reloader<T>,
    // Never handed out: only the lifecycle's actions begin or force.
    trigger: ShutdownTrigger,
    drain_settings: Box<SettingsFn<T>>,
    // Set once, by the builder methods of `Lifecycle`.
    handoff: OnceLock<Arc<Handoff>>,
    // Upgrades under way, which `Lifecycle::run` waits for.
    upgrades: TaskTracker,
    #[cfg(feature = "systemd")]
    notifier: OnceLock<Arc<Notifier>>,
}

impl<T> Core<T> {
    /// Moves the state machine; the caller carries out the action.
    fn on(&self, input: Input) -> Action {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, action) = machine::on(*state, input);
        if next != *state {
            tracing::debug!(from = ?*state, to = ?next, ?input, "lifecycle state changed");
        }
        *state = next;
        action
    }
}

impl<T: Send + Sync + 'static> Core<T> {
    fn begin_drain(&self) -> bool {
        self.reloader.close();
        let settings = (self.drain_settings)(&self.reloader.config().load());
        self.trigger.begin(settings)
    }

    fn force(&self) {
        self.reloader.close();
        self.trigger.force(ForceReason::Requested);
    }

    fn hand_over(&self) {
        // The new process told systemd it is the main one; our
        // STOPPING=1 would now describe the service as stopping.
        #[cfg(feature = "systemd")]
        if let Some(notifier) = self.notifier.get() {
            notifier.silence();
        }
        self.reloader.close();
        let settings = DrainSettings {
            delay: Duration::ZERO,
            ..(self.drain_settings)(&self.reloader.config().load())
        };
        self.trigger.begin(settings);
    }
}

/// The "upgrading" state of one upgrade: leaves it however the upgrade ends,
/// a verdict or its future dropped, so that a cancelled upgrade never
/// refuses the next one.
struct Upgrading<'a, T> {
    core: &'a Core<T>,
    finished: bool,
}

impl<T> Upgrading<'_, T> {
    fn finish(mut self, ok: bool) -> Action {
        self.finished = true;
        self.core.on(Input::UpgradeFinished { ok })
    }
}

impl<T> Drop for Upgrading<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.core.on(Input::UpgradeFinished { ok: false });
        }
    }
}

/// Asks a [`Lifecycle`] for reloads, upgrades and stops, and returns their
/// verdicts. Cheap to clone; get one from [`Lifecycle::controller`].
///
/// # Example
///
/// ```
/// use grace::{DrainSettings, Lifecycle, ReloadError, Reloadable, Reloader, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let drain = |_: &u32| DrainSettings::default();
/// let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), drain);
/// let controller = lifecycle.controller();
///
/// assert_eq!(controller.reload().await.unwrap(), 2); // a verdict, unlike SIGHUP
/// assert!(controller.stop());
/// assert!(matches!(controller.reload().await, Err(ReloadError::ShuttingDown)));
/// assert!(controller.shutdown().wait().await.is_clean());
/// # }
/// ```
pub struct Controller<T> {
    core: Arc<Core<T>>,
}

impl<T> Clone for Controller<T> {
    fn clone(&self) -> Self {
        Controller {
            core: self.core.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Controller<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("reloader", &self.core.reloader)
            .field("shutdown", self.core.trigger.watcher())
            .field("upgrades", &self.core.handoff.get().is_some())
            .finish()
    }
}

impl<T: Send + Sync + 'static> Controller<T> {
    /// The reloader: generation, last verdict, counters.
    pub fn reloader(&self) -> &Reloader<T> {
        &self.core.reloader
    }

    /// The shutdown: phase, counts, deadline.
    pub fn shutdown(&self) -> &Shutdown {
        self.core.trigger.watcher()
    }

    /// The hand-off, when upgrades are enabled.
    pub fn handoff(&self) -> Option<&Arc<Handoff>> {
        self.core.handoff.get()
    }
    /// Reloads and returns the verdict: the new generation, or why the
    /// configuration was refused (the previous one keeps serving). During a
    /// shutdown: [`ReloadError::ShuttingDown`].
    ///
    /// # Return value
    /// Resolves once a load that started after this call finished.
    ///
    /// # Errors
    /// [`ReloadError::Load`] or [`ReloadError::Apply`] when the new
    /// configuration was refused; [`ReloadError::ShuttingDown`] during a
    /// shutdown.
    ///
    /// # Cancel safety
    /// Cancel safe: the reload happens whether or not anyone waits for it.
    ///
    /// # Example
    ///
    /// ```
    /// use grace::{DrainSettings, Lifecycle, ReloadError, Reloadable, Reloader, ShutdownTrigger};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let load = || "x".parse::<u32>(); // always invalid
    /// let reloader = Reloader::new(Reloadable::new(1u32), load);
    /// let drain = |_: &u32| DrainSettings::default();
    /// let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), drain);
    /// let controller = lifecycle.controller();
    /// let err = controller.reload().await.unwrap_err();
    /// assert!(matches!(err, ReloadError::Load(_)), "{err}");
    /// assert_eq!(controller.reloader().config().generation(), 1); // still serving
    /// # }
    /// ```
    pub async fn reload(&self) -> Verdict {
        match self.core.on(Input::ReloadRequested) {
            Action::Reload => self.core.reloader.reload_by("control socket").await,
            _ => Err(ReloadError::ShuttingDown),
        }
    }

    /// Hands the listeners to a new process; once it is ready, this one
    /// drains (no delay: the new one already serves). Resolves with the new
    /// process, or why nothing changed, within the hand-off's ready timeout.
    ///
    /// # Return value
    /// A success is resolved (and recorded, see [`Handoff::succeeded`] and
    /// [`crate::handoff::read_status`]) only once this process's listeners
    /// are closed: from then on, every new connection reaches the new
    /// process.
    ///
    /// # Errors
    /// [`UpgradeError::Disabled`] without a [`Handoff`]; otherwise as
    /// [`Handoff::upgrade`]. This process keeps serving in every case.
    ///
    /// # Example
    ///
    /// ```
    /// use grace::handoff::UpgradeError;
    /// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
    /// let drain = |_: &()| DrainSettings::default();
    /// let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), drain);
    /// // Enable upgrades with `.with_handoff(Arc::new(Handoff::from_current_process()?))`.
    /// let controller = lifecycle.controller();
    /// match controller.upgrade().await {
    ///     Ok(up) => println!("pid {} serves; draining", up.pid),
    ///     Err(UpgradeError::Disabled) => println!("no upgrades here; serving on"),
    ///     Err(e) => println!("upgrade failed, serving on: {e}"),
    /// }
    /// assert!(controller.shutdown().is_ready());
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future ends the attempt (its new process is
    /// stopped, see [`Handoff::upgrade`]) and the next upgrade may start at
    /// once. Spawn it when the attempt should outlive its caller (a control
    /// client that disconnects).
    pub async fn upgrade(&self) -> Result<Upgraded, UpgradeError> {
        let core = &*self.core;
        let Some(handoff) = core.handoff.get() else {
            return Err(UpgradeError::Disabled);
        };
        let _running = core.upgrades.token();
        let pid1 = std::process::id() == 1;
        let result = match core.on(Input::UpgradeRequested { pid1 }) {
            Action::Upgrade => {
                let upgrading = Upgrading {
                    core,
                    finished: false,
                };
                let watcher = core.trigger.watcher();
                let result = handoff.start_new(watcher).await;
                if let Ok(up) = &result {
                    tracing::info!(
                        new_pid = up.pid,
                        elapsed_ms = up.elapsed.as_secs_f64() * 1000.0,
                        "upgrade: the new process is ready; draining this one"
                    );
                }
                if upgrading.finish(result.is_ok()) == Action::HandOver {
                    core.hand_over();
                    // "Upgraded" tells a deploy script that the new process
                    // alone accepts: true only once our listeners are
                    // closed. Recorded on a task of its own, so that a caller
                    // who stops waiting does not lose the verdict.
                    let (handoff, watcher) = (handoff.clone(), watcher.clone());
                    let recorded = core.upgrades.spawn(async move {
                        watcher.listeners_closed().await;
                        handoff.record(result)
                    });
                    match recorded.await {
                        Ok(verdict) => verdict,
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                } else {
                    handoff.record(result)
                }
            }
            Action::RefuseUpgrade(refusal) => Err(handoff.record_failure(match refusal {
                Refusal::InProgress => UpgradeError::InProgress,
                Refusal::ShuttingDown => UpgradeError::ShuttingDown,
                Refusal::Pid1 => UpgradeError::Pid1,
            })),
            action => unreachable!("the machine answers an upgrade request with {action:?}"),
        };
        match result {
            Ok(up) => Ok(up),
            // Not "keeps serving": it is on its way out.
            Err(e @ UpgradeError::ShuttingDown) => {
                tracing::info!("upgrade not done: {e}");
                Err(e)
            }
            Err(e) => {
                tracing::warn!("upgrade not done, this process keeps serving: {e}");
                Err(e)
            }
        }
    }

    /// Begins a graceful shutdown with the drain settings of the current
    /// configuration. Returns false when one had already begun: unlike a
    /// second signal, asking again never forces (a retrying script must not
    /// cut requests); see [`Controller::force`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // The configuration is the drain timeout; a reload raised it to 60 s.
    /// let reloader = Reloader::new(Reloadable::new(10u64), || Ok::<_, grace::BoxError>(60u64));
    /// let settings = |secs: &u64| DrainSettings {
    ///     timeout: Duration::from_secs(*secs),
    ///     ..DrainSettings::default()
    /// };
    /// let controller = Lifecycle::new(reloader, ShutdownTrigger::new(), settings).controller();
    /// controller.reload().await.unwrap();
    ///
    /// assert!(controller.stop());
    /// assert!(!controller.stop()); // asking again neither forces nor restarts
    /// let shutdown = controller.shutdown();
    /// assert_eq!(shutdown.settings().unwrap().timeout, Duration::from_secs(60));
    /// assert!(shutdown.wait().await.is_clean());
    /// # }
    /// ```
    pub fn stop(&self) -> bool {
        match self.core.on(Input::Stop(By::Request)) {
            Action::Drain => self.core.begin_drain(),
            _ => false,
        }
    }

    /// Cuts remaining work now, as a second signal does.
    pub fn force(&self) {
        if self.core.on(Input::Force) == Action::Force {
            self.core.force();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Reloadable;
    use crate::error::BoxError;
    use crate::handoff::upgrade_tests::READY_AT_ONCE;

    fn lifecycle() -> Lifecycle<u32> {
        let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, BoxError>(2u32));
        Lifecycle::new(reloader, ShutdownTrigger::new(), |_: &u32| DrainSettings {
            delay: Duration::ZERO,
            timeout: Duration::from_secs(5),
            idle_grace: Duration::from_millis(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_stop_joins_the_shutdown_and_never_forces() {
        let c = lifecycle().controller();
        let s = c.shutdown().clone();
        let request = s.track_request();
        s.tracker().spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(request);
        });
        assert!(c.stop());
        assert!(!c.stop(), "already stopping");
        assert!(s.wait().await.is_clean(), "the request was not cut");
    }

    #[tokio::test]
    async fn an_upgrade_dropped_midway_does_not_block_the_next() {
        let mark = std::env::temp_dir().join(format!("grace-upgrade-{}", std::process::id()));
        let _ = std::fs::remove_file(&mark);
        // The first attempt never gets ready; the next one is ready at once.
        let script = format!(
            "if [ -e '{}' ]; then {READY_AT_ONCE}; else : > '{0}'; exec sleep 30; fi",
            mark.display()
        );
        let handoff = Handoff::from_current_process()
            .unwrap()
            .command("/bin/sh", &["sh", "-c", &script]);
        let c = lifecycle().with_handoff(Arc::new(handoff)).controller();
        // The caller goes away: a control client that disconnected, a `select!`.
        let cancelled = tokio::time::timeout(Duration::from_millis(200), c.upgrade()).await;
        assert!(
            cancelled.is_err(),
            "the first new process never reports ready"
        );

        let up = c.upgrade().await;
        assert!(up.is_ok(), "{up:?}");
        assert!(c.shutdown().is_shutting_down(), "handed over: draining");
        std::fs::remove_file(&mark).unwrap();
    }

    #[tokio::test]
    async fn an_upgrade_succeeds_only_once_our_listeners_are_closed() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = std::env::temp_dir().join(format!("grace-verdict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("grace.pid");
        let handoff = Handoff::from_current_process()
            .unwrap()
            .command("/bin/sh", &["sh", "-c", READY_AT_ONCE])
            .pid_file(&pid_file);
        let handoff = Arc::new(handoff);
        let c = lifecycle().with_handoff(handoff.clone()).controller();
        let s = c.shutdown().clone();
        // An accept loop's socket: it goes only once the accept loop saw the
        // drain begin, which takes a turn of the runtime.
        let listener = s.track_listener();
        let closed = Arc::new(AtomicBool::new(false));
        let recorded_before_close = Arc::new(AtomicU64::new(u64::MAX));
        let status = crate::handoff::status_path(&pid_file);
        let (flag, recorded, watcher) = (closed.clone(), recorded_before_close.clone(), s.clone());
        let (handoff_seen, status_seen) = (handoff.clone(), status.clone());
        s.spawn(async move {
            watcher.draining().await;
            tokio::task::yield_now().await;
            let seen = handoff_seen.succeeded()
                + crate::handoff::read_status(&status_seen).map_or(0, |_| 1);
            recorded.store(seen, Ordering::SeqCst);
            flag.store(true, Ordering::SeqCst);
            drop(listener);
        });

        let up = c.upgrade().await;
        assert!(up.is_ok(), "{up:?}");
        assert!(
            closed.load(Ordering::SeqCst),
            "the upgrade's verdict came while this process still listened"
        );
        assert_eq!(
            recorded_before_close.load(Ordering::SeqCst),
            0,
            "success was recorded before this process's listeners closed"
        );
        assert_eq!(handoff.succeeded(), 1);
        assert!(matches!(crate::handoff::read_status(&status), Some(st) if st.result.is_ok()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn verdicts_for_reload_and_upgrade() {
        let c = lifecycle().controller();
        assert_eq!(c.reload().await.unwrap(), 2);
        assert!(matches!(c.upgrade().await, Err(UpgradeError::Disabled)));
        c.stop();
        assert!(matches!(c.reload().await, Err(ReloadError::ShuttingDown)));
    }
}
