//! The process lifecycle: signals in, reloads and a graceful shutdown out.

use std::sync::Arc;

use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::drain::{DrainSettings, ForceReason, Outcome, Shutdown};
use crate::error::ReloadError;
use crate::handoff::{Handoff, UpgradeError, Upgraded};
#[cfg(feature = "systemd")]
use crate::notify::Notifier;
use crate::reload::{Reloader, Verdict};
use crate::signals::{Event, Signal, Signals};

type SettingsFn<T> = dyn Fn(&T) -> DrainSettings + Send + Sync;

/// Routes lifecycle events to a [`Reloader`] and a [`Shutdown`]:
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
/// use grace::{signals::Signals, DrainSettings, Lifecycle, Reloadable, Reloader, Shutdown};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let signals = Signals::install()?;
/// let config = Reloadable::new(Duration::from_secs(10));
/// let reloader = Reloader::new(config, || Ok::<_, grace::BoxError>(Duration::from_secs(20)));
/// let shutdown = Shutdown::new();
/// // ... grace::serve(listeners, service, &shutdown).start();
/// let lifecycle = Lifecycle::new(reloader, shutdown, |timeout: &Duration| DrainSettings {
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
    /// Ties `reloader` and `shutdown` together; `drain_settings` reads the
    /// shutdown timings from the configuration.
    pub fn new<F>(reloader: Reloader<T>, shutdown: Shutdown, drain_settings: F) -> Self
    where
        F: Fn(&T) -> DrainSettings + Send + Sync + 'static,
    {
        Lifecycle {
            controller: Controller {
                reloader,
                shutdown,
                drain_settings: Arc::new(drain_settings),
                handoff: None,
                upgrades: TaskTracker::new(),
                #[cfg(feature = "systemd")]
                notifier: None,
            },
        }
    }

    /// Reports to systemd through `notifier` (see [`crate::notify`]): reloads,
    /// the shutdown, watchdog pings; silenced once an upgrade's new process
    /// took over as the main one.
    #[cfg(feature = "systemd")]
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Self {
        crate::notify::attach(
            notifier.clone(),
            &self.controller.reloader,
            &self.controller.shutdown,
        );
        self.controller.notifier = Some(notifier);
        self
    }

    /// Enables upgrades through `handoff`.
    pub fn with_handoff(mut self, handoff: Arc<Handoff>) -> Self {
        self.controller.handoff = Some(handoff);
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
        match event {
            Event::Reload if c.shutdown.is_shutting_down() => {
                tracing::info!(cause, "reload ignored: shutting down");
            }
            Event::Reload => {
                c.reloader.trigger();
            }
            Event::Shutdown if !c.shutdown.is_shutting_down() => {
                c.stop();
            }
            Event::Shutdown => {
                tracing::warn!(cause, "second shutdown request: forcing");
                c.shutdown.force(ForceReason::Requested);
            }
            Event::Upgrade if c.handoff.is_none() => tracing::warn!(
                cause,
                "upgrade requested, but upgrades are not enabled; ignored"
            ),
            Event::Upgrade => {
                // Counted before the task first runs: `run` must not return
                // (and the process exit) in between.
                let running = c.upgrades.token();
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
        let shutdown = self.controller.shutdown.clone();
        if let Some(handoff) = self.controller.handoff.clone() {
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
        let upgrades = &self.controller.upgrades;
        upgrades.close();
        upgrades.wait().await;
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

/// Asks a [`Lifecycle`] for reloads, upgrades and stops, and returns their
/// verdicts. Cheap to clone; get one from [`Lifecycle::controller`].
///
/// # Example
///
/// ```
/// use grace::{DrainSettings, Lifecycle, ReloadError, Reloadable, Reloader, Shutdown};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
/// let drain = |_: &u32| DrainSettings::default();
/// let lifecycle = Lifecycle::new(reloader, Shutdown::new(), drain);
/// let controller = lifecycle.controller();
///
/// assert_eq!(controller.reload().await.unwrap(), 2); // a verdict, unlike SIGHUP
/// assert!(controller.stop());
/// assert!(matches!(controller.reload().await, Err(ReloadError::ShuttingDown)));
/// assert!(controller.shutdown().wait().await.is_clean());
/// # }
/// ```
pub struct Controller<T> {
    reloader: Reloader<T>,
    shutdown: Shutdown,
    drain_settings: Arc<SettingsFn<T>>,
    handoff: Option<Arc<Handoff>>,
    // Upgrades under way, which `Lifecycle::run` waits for.
    upgrades: TaskTracker,
    #[cfg(feature = "systemd")]
    notifier: Option<Arc<Notifier>>,
}

impl<T> Clone for Controller<T> {
    fn clone(&self) -> Self {
        Controller {
            reloader: self.reloader.clone(),
            shutdown: self.shutdown.clone(),
            drain_settings: self.drain_settings.clone(),
            handoff: self.handoff.clone(),
            upgrades: self.upgrades.clone(),
            #[cfg(feature = "systemd")]
            notifier: self.notifier.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Controller<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("reloader", &self.reloader)
            .field("shutdown", &self.shutdown)
            .field("upgrades", &self.handoff.is_some())
            .finish()
    }
}

impl<T: Send + Sync + 'static> Controller<T> {
    /// The reloader: generation, last verdict, counters.
    pub fn reloader(&self) -> &Reloader<T> {
        &self.reloader
    }

    /// The shutdown: phase, counts, deadline.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The hand-off, when upgrades are enabled.
    pub fn handoff(&self) -> Option<&Arc<Handoff>> {
        self.handoff.as_ref()
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
    /// use grace::{DrainSettings, Lifecycle, ReloadError, Reloadable, Reloader, Shutdown};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let load = || "x".parse::<u32>(); // always invalid
    /// let reloader = Reloader::new(Reloadable::new(1u32), load);
    /// let drain = |_: &u32| DrainSettings::default();
    /// let lifecycle = Lifecycle::new(reloader, Shutdown::new(), drain);
    /// let controller = lifecycle.controller();
    /// let err = controller.reload().await.unwrap_err();
    /// assert!(matches!(err, ReloadError::Load(_)), "{err}");
    /// assert_eq!(controller.reloader().config().generation(), 1); // still serving
    /// # }
    /// ```
    pub async fn reload(&self) -> Verdict {
        if self.shutdown.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        self.reloader.reload().await
    }

    /// Hands the listeners to a new process; once it is ready, this one
    /// drains (no delay: the new one already serves). Resolves with the new
    /// process, or why nothing changed, within the hand-off's ready timeout.
    ///
    /// # Errors
    /// [`UpgradeError::Disabled`] without a [`Handoff`]; otherwise as
    /// [`Handoff::upgrade`]. This process keeps serving in every case.
    ///
    /// # Example
    ///
    /// ```
    /// use grace::handoff::UpgradeError;
    /// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, Shutdown};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
    /// let drain = |_: &()| DrainSettings::default();
    /// let lifecycle = Lifecycle::new(reloader, Shutdown::new(), drain);
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
    /// Not cancel safe: see [`Handoff::upgrade`]. Spawn it when the caller
    /// may go away (a control client that disconnects).
    pub async fn upgrade(&self) -> Result<Upgraded, UpgradeError> {
        let Some(handoff) = &self.handoff else {
            return Err(UpgradeError::Disabled);
        };
        let _running = self.upgrades.token();
        match handoff.upgrade(&self.shutdown).await {
            Ok(up) => {
                tracing::info!(
                    new_pid = up.pid,
                    elapsed_ms = up.elapsed.as_secs_f64() * 1000.0,
                    "upgrade: the new process is ready; draining this one"
                );
                // The new process told systemd it is the main one; our
                // STOPPING=1 would now describe the service as stopping.
                #[cfg(feature = "systemd")]
                if let Some(notifier) = &self.notifier {
                    notifier.silence();
                }
                self.reloader.close();
                let settings = DrainSettings {
                    delay: Duration::ZERO,
                    ..(self.drain_settings)(&self.reloader.config().load())
                };
                self.shutdown.begin(settings);
                Ok(up)
            }
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
    /// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, Shutdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // The configuration is the drain timeout; a reload raised it to 60 s.
    /// let reloader = Reloader::new(Reloadable::new(10u64), || Ok::<_, grace::BoxError>(60u64));
    /// let settings = |secs: &u64| DrainSettings {
    ///     timeout: Duration::from_secs(*secs),
    ///     ..DrainSettings::default()
    /// };
    /// let controller = Lifecycle::new(reloader, Shutdown::new(), settings).controller();
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
        if self.shutdown.is_shutting_down() {
            return false;
        }
        self.reloader.close();
        let settings = (self.drain_settings)(&self.reloader.config().load());
        self.shutdown.begin(settings)
    }

    /// Cuts remaining work now, as a second signal does.
    pub fn force(&self) {
        self.shutdown.force(ForceReason::Requested);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Reloadable;
    use crate::error::BoxError;

    fn lifecycle() -> Lifecycle<u32> {
        let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, BoxError>(2u32));
        Lifecycle::new(reloader, Shutdown::new(), |_: &u32| DrainSettings {
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
    async fn verdicts_for_reload_and_upgrade() {
        let c = lifecycle().controller();
        assert_eq!(c.reload().await.unwrap(), 2);
        assert!(matches!(c.upgrade().await, Err(UpgradeError::Disabled)));
        c.stop();
        assert!(matches!(c.reload().await, Err(ReloadError::ShuttingDown)));
    }
}
