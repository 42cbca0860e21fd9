//! The one place where OS signals become lifecycle events.
//!
//! | signal            | event                    |
//! |-------------------|--------------------------|
//! | SIGHUP            | [`Event::Reload`]        |
//! | SIGINT, SIGTERM, SIGQUIT | [`Event::Shutdown`] (a second one forces) |
//! | SIGUSR2           | [`Event::Upgrade`]       |
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
/// assert_eq!(Signal::Quit.event(), Event::Shutdown); // not a core dump
/// assert_eq!(Signal::Usr2.event(), Event::Upgrade);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
        }
    }

    /// What the signal asks for.
    pub fn event(self) -> Event {
        match self {
            Signal::Hup => Event::Reload,
            Signal::Int | Signal::Term | Signal::Quit => Event::Shutdown,
            Signal::Usr2 => Event::Upgrade,
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
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, Shutdown};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
/// let shutdown = Shutdown::new();
/// let drain = |_: &()| DrainSettings::default();
/// let lifecycle = Lifecycle::new(reloader, shutdown.clone(), drain);
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
///         Event::Reload => println!("reload"),
///         Event::Shutdown => break,
///         Event::Upgrade => println!("upgrade"),
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
