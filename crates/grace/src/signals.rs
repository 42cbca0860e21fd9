//! The one place where OS signals become lifecycle events.
//!
//! | signal            | event                    |
//! |-------------------|--------------------------|
//! | SIGHUP            | [`Event::Reload`]        |
//! | SIGINT, SIGTERM, SIGQUIT | [`Event::Shutdown`] (a second one forces) |
//! | SIGPWR, SIGXCPU   | [`Event::Shutdown`] (a second one forces) |
//! | SIGUSR2           | [`Event::Upgrade`]       |
//! | SIGUSR1, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGXFSZ, SIGSTKFLT | none: logged and ignored |
//!
//! Every signal whose default action ends the process, and that a server can
//! sensibly survive, is in the table: an unexpected one must not cut requests
//! in flight and leave the pid file behind. Why each does what it does:
//!
//! * SIGPWR: the power is failing (a UPS daemon, or LXC stopping a
//!   container); time is short, so stop now, but gracefully.
//! * SIGXCPU: the soft CPU-time limit is passed; the kernel sends SIGKILL at
//!   the hard limit, sending SIGXCPU again for every CPU-second until then.
//!   Stop gracefully; the next one forces, which still exits cleanly (pid
//!   file removed) before the SIGKILL.
//! * SIGUSR1: reserved; grace gives it no meaning yet.
//! * SIGALRM, SIGVTALRM, SIGPROF: timer expiries; grace arms no such timer
//!   (a profiler that does installs its own handler, which takes precedence).
//! * SIGIO: signal-driven I/O, which grace never asks for.
//! * SIGXFSZ: a write passed the file-size limit (a log file, say). Ignored,
//!   the write fails with `EFBIG` instead, and serving goes on.
//! * SIGSTKFLT: unused by Linux itself; only a stray `kill` sends it.
//!
//! Left alone: SIGKILL and SIGSTOP (cannot be caught); the synchronous fault
//! signals SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS and SIGABRT (the
//! program is broken; carrying on would be worse); job control (SIGTSTP,
//! SIGTTIN, SIGTTOU, SIGCONT: stopping a server is the operator's call);
//! those ignored by default (SIGCHLD, SIGURG, SIGWINCH); and the real-time
//! signals (the C library reserves some; none is sent to a server unasked).
//!
//! Handlers are installed by [`Signals::install`], which should run before
//! the process reports itself ready: from then on none of these signals can
//! kill it by their default action. SIGPIPE is already ignored by the Rust
//! runtime, so a client that goes away mid-write is an `EPIPE` error on that
//! connection, never a dead process.

use std::io;

use tokio::signal::unix::{signal, Signal as TokioSignal, SignalKind};

/// A signal grace reacts to.
///
/// # Example
///
/// ```
/// use grace::signals::{Event, Signal};
///
/// assert_eq!(Signal::Term.name(), "SIGTERM");
/// assert_eq!(Signal::Hup.to_string(), "SIGHUP");
/// assert_eq!(Signal::Quit.event(), Some(Event::Shutdown)); // not a core dump
/// assert_eq!(Signal::Usr2.event(), Some(Event::Upgrade));
/// assert_eq!(Signal::Usr1.event(), None); // survived, logged, nothing else
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// SIGHUP.
    Hup,
    /// SIGINT (Ctrl+C).
    Int,
    /// SIGTERM.
    Term,
    /// SIGQUIT.
    Quit,
    /// SIGUSR2.
    Usr2,
    /// SIGPWR (Linux): power failure.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Pwr,
    /// SIGXCPU: the soft CPU-time limit was passed.
    Xcpu,
    /// SIGUSR1.
    Usr1,
    /// SIGALRM.
    Alrm,
    /// SIGVTALRM.
    Vtalrm,
    /// SIGPROF.
    Prof,
    /// SIGIO (also known as SIGPOLL).
    Io,
    /// SIGXFSZ: a write passed the file-size limit.
    Xfsz,
    /// SIGSTKFLT (Linux).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Stkflt,
}

impl Signal {
    /// The conventional name, such as `"SIGTERM"`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Quit => "SIGQUIT",
            Signal::Usr2 => "SIGUSR2",
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Signal::Pwr => "SIGPWR",
            Signal::Xcpu => "SIGXCPU",
            Signal::Usr1 => "SIGUSR1",
            Signal::Alrm => "SIGALRM",
            Signal::Vtalrm => "SIGVTALRM",
            Signal::Prof => "SIGPROF",
            Signal::Io => "SIGIO",
            Signal::Xfsz => "SIGXFSZ",
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Signal::Stkflt => "SIGSTKFLT",
        }
    }

    /// What the signal asks for; `None` for those grace only survives (the
    /// module documentation says why, for each).
    pub fn event(self) -> Option<Event> {
        match self {
            Signal::Hup => Some(Event::Reload),
            Signal::Int | Signal::Term | Signal::Quit | Signal::Xcpu => Some(Event::Shutdown),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Signal::Pwr => Some(Event::Shutdown),
            Signal::Usr2 => Some(Event::Upgrade),
            Signal::Usr1
            | Signal::Alrm
            | Signal::Vtalrm
            | Signal::Prof
            | Signal::Io
            | Signal::Xfsz => None,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Signal::Stkflt => None,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A lifecycle event.
///
/// What a signal asks for, kept apart from the signal so that other sources
/// (a control socket, a test) can ask for the same thing through
/// [`Lifecycle::handle`](crate::Lifecycle::handle).
///
/// # Example
///
/// ```
/// use grace::signals::Event;
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
/// let trigger = ShutdownTrigger::new();
/// let shutdown = trigger.watcher().clone();
/// let drain = |_: &()| DrainSettings::default();
/// let lifecycle = Lifecycle::new(reloader, trigger, drain);
/// lifecycle.handle(Event::Shutdown, "test"); // as SIGTERM would
/// assert!(shutdown.is_shutting_down());
/// assert!(shutdown.wait().await.is_clean());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Load the configuration again.
    Reload,
    /// Shut down gracefully; when already shutting down, force.
    Shutdown,
    /// Hand the listeners to a new process.
    Upgrade,
}

/// Installed signal handlers.
///
/// # Example
///
/// ```no_run
/// use grace::signals::{Event, Signals};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let mut signals = Signals::install()?;
/// while let Some(signal) = signals.recv().await {
///     match signal.event() {
///         Some(Event::Reload) => println!("reload"),
///         Some(Event::Shutdown) => break,
///         Some(Event::Upgrade) => println!("upgrade"),
///         None => println!("{signal} ignored"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Signals {
    streams: Vec<(Signal, TokioSignal)>,
}

impl Signals {
    /// Installs handlers for every signal in the table above.
    ///
    /// # Errors
    /// When the OS refuses to install a handler.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn install() -> io::Result<Signals> {
        let kinds = [
            (Signal::Hup, SignalKind::hangup()),
            (Signal::Int, SignalKind::interrupt()),
            (Signal::Term, SignalKind::terminate()),
            (Signal::Quit, SignalKind::quit()),
            (Signal::Usr2, SignalKind::user_defined2()),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            (Signal::Pwr, SignalKind::from_raw(libc::SIGPWR)),
            (Signal::Xcpu, SignalKind::from_raw(libc::SIGXCPU)),
            (Signal::Usr1, SignalKind::user_defined1()),
            (Signal::Alrm, SignalKind::alarm()),
            (Signal::Vtalrm, SignalKind::from_raw(libc::SIGVTALRM)),
            (Signal::Prof, SignalKind::from_raw(libc::SIGPROF)),
            (Signal::Io, SignalKind::io()),
            (Signal::Xfsz, SignalKind::from_raw(libc::SIGXFSZ)),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            (Signal::Stkflt, SignalKind::from_raw(libc::SIGSTKFLT)),
        ];
        let streams = kinds
            .into_iter()
            .map(|(sig, kind)| Ok((sig, signal(kind)?)))
            .collect::<io::Result<_>>()?;
        Ok(Signals { streams })
    }

    /// The next signal. Deliveries of one signal that arrive before it is
    /// received are merged into one, as the kernel does.
    ///
    /// # Return value
    /// Resolves when one of the signals arrives; `None` only once tokio can
    /// deliver no more signals (its runtime is going away).
    ///
    /// # Cancel safety
    /// Cancel safe: a signal is never lost by dropping this future.
    pub async fn recv(&mut self) -> Option<Signal> {
        std::future::poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if let std::task::Poll::Ready(got) = stream.poll_recv(cx) {
                    return std::task::Poll::Ready(got.map(|()| *sig));
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
