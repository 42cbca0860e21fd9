//! # grace
//!
//! Hot reload, graceful drain and zero-downtime restarts for Rust network
//! services.
#![deny(missing_docs)]
// `unsafe` is allowed in one module only: handoff::sys.
#![deny(unsafe_code)]

pub mod config;
pub mod drain;
mod error;
pub mod handoff;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod pidfile;
pub mod reload;
pub mod signals;

pub use config::{Reloadable, Snapshot};
pub use drain::{DrainSettings, ForceReason, Outcome, Phase, Shutdown};
pub use error::{BindError, BoxError, ReloadError};
pub use http::{serve, Limits, Running, Serve};
pub use lifecycle::Lifecycle;
pub use listener::Listener;
pub use reload::{Reloader, Ticket, Verdict};
