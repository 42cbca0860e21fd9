//! # grace
//!
//! Hot reload, graceful drain and zero-downtime upgrade for Rust network
//! services, in one lifecycle.
//!
//! ## Quick start
//!
//! ```no_run
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::{service::service_fn, Response};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Called at start and on every SIGHUP; an error keeps the old value.
//!     let load = || std::fs::read_to_string("greeting.txt");
//!     let outcome = grace::Server::new(load)
//!         .listen("127.0.0.1:8080".parse()?)
//!         // Takes inherited sockets first, then starts its own runtime.
//!         .run_blocking(|greeting, _shutdown| {
//!             service_fn(move |_req| {
//!                 let body = Bytes::from(greeting.load().to_string());
//!                 async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
//!             })
//!         })?;
//!     // SIGTERM: readiness fails, listeners close, every request finishes.
//!     std::process::exit(if outcome.is_clean() { 0 } else { 75 });
//! }
//! ```
//!
//! That server reloads on SIGHUP (swapping the value atomically, with a
//! verdict in the log), drains on SIGINT/SIGTERM/SIGQUIT (a second signal
//! forces), and on SIGUSR2 hands its listening sockets to a new process of
//! the binary now at its path, draining only once that one serves. Under
//! systemd it speaks `sd_notify`. An axum `Router` works the same through
//! `Server::run_tower_blocking` (feature `tower`).
//!
//! ## Why not `select!` on a signal?
//!
//! Because the hard part is what happens to the connections. hyper's and
//! axum's graceful shutdown close a connection still reading its first
//! request (the client sees EOF), close idle keep-alive connections at once
//! (racing the client's next request), and wait forever without a deadline.
//! Go's `Shutdown` polls and exits up to half a second late. grace serves
//! every accepted connection's first request, answers a keep-alive client's
//! next request with `Connection: close` before closing it, bounds the drain,
//! and exits the moment the last connection is done.
//!
//! ## The pieces, each usable alone
//!
//! * [`Reloadable`]: a lock-free, atomically swapped configuration with
//!   generations; [`Reloader`]: load, validate, swap, with verdicts.
//! * [`Shutdown`]: readiness, delay, drain, deadline, force.
//! * [`serve`] / `serve_tower`: HTTP/1.1 and h2c under those drain rules,
//!   and over TLS with certificate hot reload (`tls`, feature `tls`).
//! * [`handoff`]: zero-downtime upgrade and systemd socket activation.
//! * [`signals`], [`Lifecycle`]: signals in, lifecycle events out.
//! * `notify` (feature `systemd`), `watch` (feature `watch`).
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `systemd` | yes | `notify`: sd_notify, watchdog (no extra dependency) |
//! | `watch` | yes | `watch`: reload on config file change (`notify` crate) |
//! | `tower` | yes | `serve_tower`, `Server::run_tower`: axum and any tower service |
//! | `metrics` | yes | `metrics::MetricsCollector` for prometheus-client (request tallies are always there) |
//! | `control` | yes | `control`: the control socket and its JSON-lines protocol |
//! | `tls` | yes | `tls`: TLS listeners (rustls, ring), certificates swapped on reload |
#![deny(missing_docs)]
// `unsafe` is allowed in one module only: handoff::sys.
#![deny(unsafe_code)]

pub mod config;
#[cfg(feature = "control")]
pub mod control;
pub mod drain;
mod error;
pub mod handoff;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
#[cfg(feature = "systemd")]
pub mod notify;
pub mod pidfile;
pub mod reload;
mod server;
pub mod signals;
pub mod supervise;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "watch")]
pub mod watch;

pub use config::{Reloadable, Snapshot, SnapshotRef};
pub use drain::{DrainSettings, ForceReason, Outcome, Phase, Shutdown};
pub use error::{BindError, BoxError, ReloadError};
#[cfg(feature = "tower")]
pub use http::serve_tower;
pub use http::{serve, Limits, Running, Serve};
pub use lifecycle::{Controller, Lifecycle};
pub use listener::Listener;
pub use reload::{ReloadEvent, Reloader, Ticket, Verdict};
pub use server::{Server, StartError, Started};
