//! The process lifecycle: signals in, reloads and a graceful shutdown out.

use std::sync::Arc;

use std::time::Duration;

use crate::drain::{DrainSettings, ForceReason, Outcome, Shutdown};
use crate::handoff::Handoff;
#[cfg(feature = "systemd")]
use crate::notify::Notifier;
use crate::reload::Reloader;
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
    reloader: Reloader<T>,
    shutdown: Shutdown,
    drain_settings: Arc<SettingsFn<T>>,
    handoff: Option<Arc<Handoff>>,
    #[cfg(feature = "systemd")]
    notifier: Option<Arc<Notifier>>,
}

impl<T> std::fmt::Debug for Lifecycle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("reloader", &self.reloader)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
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
            reloader,
            shutdown,
            drain_settings: Arc::new(drain_settings),
            handoff: None,
            #[cfg(feature = "systemd")]
            notifier: None,
        }
    }

    #[cfg(feature = "systemd")]
    /// Reports to systemd through `notifier` (see [`crate::notify`]): reloads,
    /// the shutdown, watchdog pings; silenced once an upgrade's new process
    /// took over as the main one.
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Self {
        crate::notify::attach(notifier.clone(), &self.reloader, &self.shutdown);
        self.notifier = Some(notifier);
        self
    }

    /// Enables upgrades through `handoff`.
    pub fn with_handoff(mut self, handoff: Arc<Handoff>) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Handles `event`, as a signal would. `cause` names it in the log.
    pub fn handle(&self, event: Event, cause: &str) {
        match event {
            Event::Reload if self.shutdown.is_shutting_down() => {
                tracing::info!(cause, "reload ignored: shutting down");
            }
            Event::Reload => {
                self.reloader.trigger();
            }
            Event::Shutdown if !self.shutdown.is_shutting_down() => {
                self.reloader.close();
                let settings = (self.drain_settings)(&self.reloader.config().load());
                self.shutdown.begin(settings);
            }
            Event::Shutdown => {
                tracing::warn!(cause, "second shutdown request: forcing");
                self.shutdown.force(ForceReason::Requested);
            }
            Event::Upgrade => match &self.handoff {
                None => tracing::warn!(
                    cause,
                    "upgrade requested, but upgrades are not enabled; ignored"
                ),
                Some(handoff) => self.upgrade(handoff.clone()),
            },
        }
    }

    fn upgrade(&self, handoff: Arc<Handoff>) {
        let shutdown = self.shutdown.clone();
        let reloader = self.reloader.clone();
        let drain_settings = self.drain_settings.clone();
        #[cfg(feature = "systemd")]
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            match handoff.upgrade(&shutdown).await {
                Ok(up) => {
                    tracing::info!(
                        new_pid = up.pid,
                        elapsed_ms = up.elapsed.as_secs_f64() * 1000.0,
                        "upgrade: the new process is ready; draining this one"
                    );
                    // The new process told systemd it is the main one; our
                    // STOPPING=1 would now describe the service as stopping.
                    #[cfg(feature = "systemd")]
                    if let Some(notifier) = &notifier {
                        notifier.silence();
                    }
                    reloader.close();
                    let settings = DrainSettings {
                        delay: Duration::ZERO,
                        ..drain_settings(&reloader.config().load())
                    };
                    shutdown.begin(settings);
                }
                Err(e) => tracing::warn!("upgrade not done, this process keeps serving: {e}"),
            }
        });
    }

    /// Handles signals until the shutdown is over, and returns how it ended.
    ///
    /// # Cancel safety
    /// Not cancel safe in a useful sense: dropping it stops signal handling,
    /// though a shutdown already begun goes on.
    pub async fn run(self, mut signals: Signals) -> Outcome {
        if let Some(handoff) = self.handoff.clone() {
            self.shutdown.on_drain(move || handoff.release());
        }
        loop {
            tokio::select! {
                outcome = self.shutdown.wait() => return outcome,
                signal = signals.recv() => match signal {
                    Some(signal) => self.on_signal(signal),
                    None => return self.shutdown.wait().await,
                },
            }
        }
    }

    fn on_signal(&self, signal: Signal) {
        tracing::info!(signal = signal.name(), "signal received: {signal}");
        self.handle(signal.event(), signal.name());
    }
}
