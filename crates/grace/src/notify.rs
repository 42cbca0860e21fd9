//! Telling systemd what we are doing: `sd_notify(3)`, spoken directly.
//!
//! | moment                         | message                                              |
//! |--------------------------------|------------------------------------------------------|
//! | serving                        | `READY=1`, `STATUS=` (and `MAINPID=` after an upgrade) |
//! | a reload starts                | `RELOADING=1` + `MONOTONIC_USEC=` (one datagram)     |
//! | it ends, accepted or rejected  | `READY=1` + `STATUS=`                                |
//! | a shutdown starts              | `STOPPING=1` + `STATUS=`                             |
//! | while it runs                  | `EXTEND_TIMEOUT_USEC=` (our own deadline, plus slack) |
//! | every half `WATCHDOG_USEC`     | `WATCHDOG=1`                                         |
//!
//! `Type=notify-reload` needs `READY=1` after a *rejected* reload too, or
//! systemd counts the reload as failed. `MAINPID=` from the new process of an
//! upgrade needs `NotifyAccess=all` in the unit.
//!
//! Written here rather than with the `sd-notify` crate because that crate
//! cannot reach abstract sockets (`NOTIFY_SOCKET=@name`), which systemd uses
//! in containers. `NOTIFY_SOCKET` is left in the environment: the new process
//! of an upgrade needs it too.
//!
//! # Example
//!
//! ```
//! use std::{os::unix::net::UnixDatagram, sync::Arc};
//! use grace::notify::Notifier;
//! use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(format!("grace-doc-{}.sock", std::process::id()));
//! let systemd = UnixDatagram::bind(&path)?; // stands in for the service manager
//! std::env::set_var("NOTIFY_SOCKET", &path);
//! let notifier = Arc::new(Notifier::from_env()?.expect("NOTIFY_SOCKET is set"));
//! let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, grace::BoxError>(2u32));
//! let drain = |_: &u32| DrainSettings::default();
//! let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), drain).with_notifier(notifier);
//!
//! lifecycle.controller().reload().await?;
//! let mut buf = [0; 256];
//! let n = systemd.recv(&mut buf)?;
//! assert!(buf[..n].starts_with(b"RELOADING=1\nMONOTONIC_USEC="));
//! let n = systemd.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving generation 2\n");
//! # std::fs::remove_file(&path)?;
//! # Ok(()) }
//! ```

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::drain::{Phase, Shutdown};
use crate::reload::{ReloadEvent, Reloader};

/// How much longer than our own deadline we ask systemd to wait: enough to
/// log and exit after a forced close.
const EXTEND_SLACK: Duration = Duration::from_secs(5);
/// How often the extension is renewed during a long shutdown.
const EXTEND_EVERY: Duration = Duration::from_secs(5);

/// A connection to the service manager's notification socket.
///
/// # Example
///
/// ```no_run
/// use grace::notify::Notifier;
///
/// if let Some(notifier) = Notifier::from_env()? {
///     notifier.ready("serving generation 1");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    // Set when another process took over as the main process: from then on
    // a STOPPING=1 or STATUS= from us would describe the service wrongly.
    silenced: AtomicBool,
    warned: AtomicBool,
}

impl Notifier {
    /// The notifier named by `NOTIFY_SOCKET`, if set: a path, or an abstract
    /// socket written `@name`.
    ///
    /// # Errors
    /// When the variable is set but unusable.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(target) => Notifier::new(target.as_encoded_bytes()).map(Some),
        }
    }

    fn new(target: &[u8]) -> io::Result<Notifier> {
        let addr = match target.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(std::path::Path::new(
                std::str::from_utf8(target).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not UTF-8")
                })?,
            ))?,
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            silenced: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        })
    }

    /// Sends one datagram of `KEY=value` lines. Failures are logged once and
    /// otherwise ignored: a service manager that went away must not take the
    /// server with it.
    fn send(&self, message: &str) {
        if self.silenced.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!("cannot notify the service manager: {e}");
            }
        }
    }

    /// Serving: `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// Serving, as the new main process of an upgrade: `MAINPID=` first, so
    /// systemd follows us before the old process exits.
    pub fn ready_as_main(&self, status: &str) {
        self.send(&format!(
            "MAINPID={}\nREADY=1\nSTATUS={status}\n",
            std::process::id()
        ));
    }

    /// A reload starts.
    pub(crate) fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\n",
            monotonic_usec()
        ));
    }

    /// Stops all further messages: another process is the main one now.
    pub(crate) fn silence(&self) {
        self.silenced.store(true, Ordering::Relaxed);
    }
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` wants it.
fn monotonic_usec() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`), if it asks us
/// (`WATCHDOG_PID` unset or ours).
///
/// A [`Lifecycle`](crate::Lifecycle) with a notifier pings at half of it;
/// call this to report it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use grace::notify::watchdog_interval;
///
/// // What systemd sets for `WatchdogSec=10`.
/// std::env::set_var("WATCHDOG_USEC", "10000000");
/// std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
/// assert_eq!(watchdog_interval(), Some(Duration::from_secs(10)));
/// std::env::set_var("WATCHDOG_PID", "1"); // meant for another process
/// assert_eq!(watchdog_interval(), None);
/// ```
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    (for_us && usec > 0).then(|| Duration::from_micros(usec))
}

/// Reports reloads, the shutdown and watchdog pings of this process to
/// `notifier`: what [`Lifecycle::with_notifier`](crate::Lifecycle::with_notifier)
/// sets up. A status line after a reload names the reloader's current
/// generation.
///
/// # Panics
/// Outside a tokio runtime.
pub(crate) fn attach<T: Send + Sync + 'static>(
    notifier: Arc<Notifier>,
    reloader: &Reloader<T>,
    shutdown: &Shutdown,
) {
    let on_reload = notifier.clone();
    let config = reloader.config().clone();
    reloader.observe(move |event| match event {
        ReloadEvent::Started => on_reload.reloading(),
        ReloadEvent::Finished(Ok(generation)) => {
            on_reload.ready(&format!("serving generation {generation}"));
        }
        ReloadEvent::Finished(Err(e)) => on_reload.ready(&format!(
            "reload rejected, serving generation {}: {e}",
            config.generation()
        )),
    });

    let on_stop = notifier.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut phase = shutdown.watch_phase();
        if phase.wait_for(|p| *p >= Phase::Stopping).await.is_err() {
            return;
        }
        let settings = shutdown.settings().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + settings.delay + settings.timeout;
        on_stop.send(&format!(
            "STOPPING=1\nSTATUS=shutting down: {} connections, {} requests in flight\n",
            shutdown.connections(),
            shutdown.requests()
        ));
        // Keep systemd's stop timeout from cutting a drain that our own
        // deadline still allows (TimeoutStopSec set too low).
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            on_stop.send(&format!(
                "EXTEND_TIMEOUT_USEC={}\n",
                (left + EXTEND_SLACK).as_micros()
            ));
            tokio::select! {
                _ = phase.wait_for(|p| *p == Phase::Stopped) => return,
                _ = tokio::time::sleep(EXTEND_EVERY) => {}
            }
        }
    });

    if let Some(interval) = watchdog_interval() {
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "systemd watchdog enabled"
        );
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval / 2);
            loop {
                ticks.tick().await;
                notifier.send("WATCHDOG=1\n");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_sockets_receive() {
        let dir = std::env::temp_dir().join(format!("grace-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.to_str().unwrap().as_bytes())
            .unwrap()
            .ready("ok");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok\n");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("grace-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(format!("@{name}").as_bytes()).unwrap();
        notifier.reloading();
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        notifier.silence();
        notifier.ready("ignored");
        server.set_nonblocking(true).unwrap();
        assert!(
            server.recv(&mut buf).is_err(),
            "a silenced notifier sends nothing"
        );
    }
}
