//! A control socket: ask a running server for its status, a reload, an
//! upgrade or a stop over a unix socket, and get the verdict back.
//!
//! A signal carries no answer; this does. The protocol is line-delimited
//! JSON ([`protocol`]): one request line per connection, then one reply
//! line, or for `stop` with `wait`, progress lines until the process exits.
//!
//! * [`ControlSocket`] binds the socket safely: mode 0600 from the first
//!   moment it is reachable, refuses a path a live server answers on, clears
//!   a stale one, and removes its own path (and only its own) when dropped.
//! * [`ControlServer`] answers on it, dispatching to a
//!   [`Controller`](crate::Controller). Only peers with this process's uid,
//!   or root, are served (checked with `SO_PEERCRED`).

mod dispatch;
mod framing;
mod limits;
pub mod protocol;
mod server;
mod socket;

pub use dispatch::ServerInfo;
pub use server::ControlServer;
pub use socket::{check_path, BindMode, ControlSocket, ControlSocketError, MAX_PATH_LEN};
