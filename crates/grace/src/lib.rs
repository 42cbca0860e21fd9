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
//! * [`ShutdownTrigger`] and [`Shutdown`]: readiness, delay, drain,
//!   deadline, force. The trigger is not `Clone` and alone begins or forces
//!   the drain; the [`Lifecycle`] owns it. Services get the [`Shutdown`]
//!   watcher, which waits for the drain but cannot start or force one.
//! * [`serve`] / `serve_tower`: HTTP/1.1 and h2c under those drain rules,
//!   and over TLS with certificate hot reload (`tls`, feature `tls`).
//! * [`Handoff`] and [`Listener`] (also for non-HTTP services), and
//!   [`handoff`]: zero-downtime upgrade and systemd socket activation.
//! * [`signals`], [`Lifecycle`]: signals in, lifecycle events out.
//!
//! Everything a service needs is at the root; the modules hold the
//! advanced pieces, named for what they do: [`reload`], [`handoff`],
//! [`signals`], [`http`], [`metrics`], [`pidfile`], and per feature `notify`,
//! `watch`, `control`, `tls`.
//! * `notify` (feature `systemd`), `watch` (feature `watch`).
//! * [`health`]: `/healthz` and `/readyz` as the binary answers them, as a
//!   plain function for hyper and a tower layer for axum.
//!
//! ## What a service built on `Server` gets
//!
//! * Every reload verdict, however the reload was asked for:
//!   [`Server::on_reload`] (`Ok(generation)`, or `Err` with why).
//! * A [`Controller`] that reloads, upgrades and stops with verdicts, for an
//!   admin route or a deploy hook: [`Started::controller`], between
//!   [`Server::start`] and [`Started::run`] (see [`Server::block_on`]).
//! * Readiness: [`health::Health`], from the [`Shutdown`] the service
//!   receives. Background work follows that handle too: spawn it with
//!   [`Shutdown::spawn`] and end it at [`Shutdown::draining`].
//! * The control socket (`Server::control_socket`, feature `control`), a
//!   file watch (`Server::watch`, feature `watch`), TLS listeners
//!   (`Server::listen_tls`, feature `tls`) and the lifecycle metrics
//!   (`Started::metrics_collector`, feature `metrics`).
//! * Generation numbers that keep increasing across upgrades: the new
//!   process continues from the old one's.
//!
//! `examples/axum_admin.rs` (features `tower,metrics`) shows them together.
//!
//! ## Features
//!
//! The default set is the lifecycle and tower support; the rest costs
//! dependencies and is opt-in. `full` enables everything (the `grace`
//! binary uses it).
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `systemd` | yes | `notify`: sd_notify, watchdog (no extra dependency) |
//! | `tower` | yes | `serve_tower`, `Server::run_tower`, `Started::serve_tower`, the health layer: axum and any tower service |
//! | `watch` | no | `watch`, `Server::watch`: reload on config file change (`notify` crate) |
//! | `metrics` | no | `metrics::MetricsCollector` for prometheus-client, `Started::metrics_collector` (request tallies are always there) |
//! | `control` | no | `control`, `Server::control_socket`: the control socket and its JSON-lines protocol |
//! | `tls` | no | `tls`, `Server::listen_tls`: TLS listeners (rustls, ring), certificates swapped on reload |
//! | `full` | no | all of the above |
#![deny(missing_docs)]
// `unsafe` is allowed in one module only: handoff::sys.
#![deny(unsafe_code)]

#[cfg(any(feature = "control", feature = "tls"))]
mod civil_time;
mod config;
#[cfg(feature = "control")]
pub mod control;
mod drain;
mod error;
pub mod handoff;
pub mod health;
pub mod http;
mod lifecycle;
mod listener;
mod log_limit;
pub mod metrics;
#[cfg(feature = "systemd")]
pub mod notify;
pub mod pidfile;
pub mod reload;
mod server;
pub mod signals;
#[cfg(feature = "control")]
pub mod status;
pub mod supervise;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "watch")]
pub mod watch;

pub use config::{Reloadable, Snapshot, SnapshotRef};
pub use drain::{
    ConnectionGuard, DrainSettings, ForceReason, Outcome, Phase, RequestGuard, Shutdown,
    ShutdownTrigger,
};
pub use error::{BindError, BoxError, ReloadError};
pub use handoff::Handoff;
#[cfg(feature = "tower")]
pub use http::serve_tower;
pub use http::{serve, Limits, Running, Serve};
pub use lifecycle::{Controller, Lifecycle};
pub use listener::Listener;
pub use reload::{Reloader, Verdict};
pub use server::{Server, StartError, Started};
