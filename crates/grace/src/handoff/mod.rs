//! Zero-downtime upgrade: hand the *same* listening sockets to a new process.
//!
//! Re-binding with `SO_REUSEPORT` would lose the connections queued in the
//! old socket's backlog; restarting leaves a window of refused connections.
//! Passing the socket itself loses nothing: the backlog is shared, and the
//! old process stops accepting only once the new one serves.
//!
//! * [`Handoff`] (old process): start the new one with the sockets, in the
//!   systemd socket-activation convention, and wait for its readiness.
//! * [`Inherited`] (new process, or one started by systemd): take the
//!   sockets, check them, and tell the parent when serving.
//!
//! All `unsafe` code of grace lives in the private `sys` module here.

pub(crate) mod group;
pub(crate) mod inherit;
pub(crate) mod pass;
mod ready;
mod status;
pub(crate) mod sys;
pub(crate) mod upgrade;

pub use inherit::{ActivationError, Inherited};
pub use ready::ReadyPipe;
pub use status::{read_status, status_path, UpgradeStatus};
#[cfg(test)]
pub(crate) use upgrade::tests as upgrade_tests;
pub use upgrade::{Handoff, UpgradeError, Upgraded};
