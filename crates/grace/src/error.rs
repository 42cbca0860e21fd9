//! Typed errors and verdicts.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// The error type a user's loader may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a reload did not take effect. The previous configuration keeps
/// serving in every case.
///
/// Clone, because one load answers every caller whose request it covered.
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
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address that was asked for.
    pub addr: SocketAddr,
    /// What the OS said.
    #[source]
    pub source: io::Error,
}
