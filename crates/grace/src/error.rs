//! Typed errors and verdicts.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// The error type a user's loader may return.
///
/// Any error converts into it with `?` or `.into()`, so a loader can mix
/// I/O, parse and validation errors without a type of its own.
///
/// # Example
///
/// ```
/// use grace::BoxError;
///
/// fn load(text: &str) -> Result<u16, BoxError> {
///     let port: u16 = text.trim().parse()?; // a ParseIntError
///     if port < 1024 {
///         return Err(format!("port {port} is privileged").into()); // a String
///     }
///     Ok(port)
/// }
/// assert_eq!(load("8080\n").unwrap(), 8080);
/// assert_eq!(load("80").unwrap_err().to_string(), "port 80 is privileged");
/// assert!(load("http").is_err());
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a reload did not take effect. The previous configuration keeps
/// serving in every case.
///
/// Clone, because one load answers every caller whose request it covered.
///
/// # Example
///
/// ```
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ReloadError, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = Reloadable::new(1u32);
/// let reloader = Reloader::new(config, || Err::<u32, _>("line 3: expected a number"));
/// match reloader.reload().await {
///     Err(ReloadError::Load(e)) => assert_eq!(e.to_string(), "line 3: expected a number"),
///     other => panic!("expected a rejected load, got {other:?}"),
/// }
/// let drain = |_: &u32| DrainSettings::default();
/// let controller = Lifecycle::new(reloader.clone(), ShutdownTrigger::new(), drain).controller();
/// controller.stop(); // shutting down: later reloads are refused
/// assert!(matches!(reloader.reload().await, Err(ReloadError::ShuttingDown)));
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// Reading, parsing or validating the new configuration failed; the
    /// loader's own error says where and why.
    #[error("{0}")]
    Load(Arc<dyn std::error::Error + Send + Sync>),
    /// The new configuration was valid, but making it take effect failed (a
    /// new listen address could not be bound, say); nothing was changed.
    #[error("cannot apply: {0}")]
    Apply(Arc<dyn std::error::Error + Send + Sync>),
    /// A shutdown is under way: reloads are refused.
    #[error("reload refused: the server is shutting down")]
    ShuttingDown,
}

/// A listening socket could not be set up.
///
/// # Example
///
/// ```no_run
/// use grace::{BindError, Listener};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let first = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
/// // The same address again: taken (SO_REUSEADDR does not share a listener).
/// let err: BindError = Listener::bind(first.local_addr()).unwrap_err();
/// assert_eq!(err.addr, first.local_addr());
/// assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
/// eprintln!("{err}"); // cannot listen on 127.0.0.1:…: Address already in use (os error 98)
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address that was asked for.
    pub addr: SocketAddr,
    /// What the OS said.
    #[source]
    pub source: io::Error,
}
