//! The control protocol: line-delimited JSON over a unix stream socket.
//!
//! A client connects, writes one [`Request`] as a JSON object on one line,
//! and reads [`Reply`] lines until the server closes the connection:
//!
//! ```text
//! > {"cmd":"status"}
//! < {"ok":true,"reply":"status","pid":4211,"generation":3,"phase":"running",...}
//! > {"cmd":"reload"}
//! < {"ok":false,"reply":"error","kind":"config_rejected","message":"grace.toml:3:10: ..."}
//! > {"cmd":"stop","wait":true}
//! < {"ok":true,"reply":"stopping","phase":"draining","connections":2,...}
//! < {"ok":true,"reply":"progress","phase":"draining","connections":1,...}
//! < {"ok":true,"reply":"exited","outcome":"drained","elapsed_secs":1.2,...}
//! ```
//!
//! Every line carries `ok` and `reply` (its kind); errors carry a stable
//! `kind` for scripts and a `message` for people. Unknown fields in a
//! request are an error, so a typo is never silently ignored.

use serde::{Deserialize, Serialize};

/// What a client asks.
///
/// # Example
///
/// ```
/// use grace::control::protocol::Request;
///
/// let line = serde_json::to_string(&Request::Stop { wait: true })?;
/// assert_eq!(line, r#"{"cmd":"stop","wait":true}"#);
/// let request: Request = serde_json::from_str(r#"{"cmd":"stop"}"#)?;
/// assert_eq!(request, Request::Stop { wait: false });
/// // A typo is an error, never a silently ignored option.
/// assert!(serde_json::from_str::<Request>(r#"{"cmd":"stop","wiat":true}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    // Struct variants, not unit ones: serde checks unknown fields only on
    // those, and `{"cmd":"reload","forse":true}` must be an error.
    /// The server's state: [`Status`].
    Status {},
    /// Reload the configuration now and answer with the verdict.
    Reload {},
    /// Hand over to a new process and answer with its pid, or why not.
    Upgrade {},
    /// Begin a graceful shutdown; answered once the drain started.
    Stop {
        /// Keep the connection and stream [`Progress`] until the process
        /// exits, ending with [`Reply::Exited`].
        #[serde(default)]
        wait: bool,
    },
}

/// One line from the server, with `ok` beside the reply's own fields.
///
/// # Example
///
/// ```
/// use grace::control::protocol::{Line, Reply};
///
/// let line: Line = serde_json::from_str(r#"{"ok":true,"reply":"reloaded","generation":3}"#)?;
/// assert!(line.ok);
/// assert_eq!(line.reply, Reply::Reloaded { generation: 3 });
/// assert_eq!(Line::from(Reply::Reloaded { generation: 3 }), line); // `ok` follows the reply
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// False for [`Reply::Error`], and for an [`Reply::Exited`] whose
    /// shutdown was forced.
    pub ok: bool,
    /// The reply.
    #[serde(flatten)]
    pub reply: Reply,
}

impl From<Reply> for Line {
    fn from(reply: Reply) -> Line {
        let ok = match &reply {
            Reply::Error { .. } => false,
            Reply::Exited(exited) => exited.outcome == Outcome::Drained,
            _ => true,
        };
        Line { ok, reply }
    }
}

/// What the server answers.
///
/// # Example
///
/// ```
/// use grace::control::protocol::{Line, Reply};
///
/// let text = r#"{"ok":false,"reply":"error","kind":"config_rejected",
///     "message":"app.toml:3:1: bad"}"#;
/// let line: Line = serde_json::from_str(text)?;
/// let exit_code = match line.reply {
///     Reply::Reloaded { generation } => { println!("generation {generation} serves"); 0 }
///     Reply::Error { kind, message } => { eprintln!("{kind:?}: {message}"); 1 }
///     other => { eprintln!("unexpected: {other:?}"); 2 }
/// };
/// assert_eq!(exit_code, 1);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Request::Status`].
    Status(Status),
    /// A reload was accepted: this generation now serves.
    Reloaded {
        /// The new generation.
        generation: u64,
    },
    /// A new process serves; this one drains.
    Upgraded {
        /// The new process.
        pid: u32,
        /// How long it took to be ready, in seconds.
        elapsed_secs: f64,
    },
    /// A graceful shutdown is under way and the drain started.
    Stopping(Progress),
    /// Drain progress, about every 250 ms while something changes and every
    /// second otherwise.
    Progress(Progress),
    /// The shutdown is over; the process exits right after this line.
    Exited(Exited),
    /// The request failed.
    Error {
        /// Stable, for scripts: see [`ErrorKind`].
        kind: ErrorKind,
        /// For people: the full reason (a configuration error names
        /// file:line:column).
        message: String,
    },
}

/// Why a request failed.
///
/// Stable names in `snake_case`, for scripts to branch on.
///
/// # Example
///
/// ```
/// use grace::control::protocol::ErrorKind;
///
/// assert_eq!(serde_json::to_string(&ErrorKind::ConfigRejected)?, r#""config_rejected""#);
/// let kind: ErrorKind = serde_json::from_str(r#""shutting_down""#)?;
/// assert_eq!(kind, ErrorKind::ShuttingDown);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The new configuration was invalid; the previous one keeps serving.
    ConfigRejected,
    /// The new configuration was valid but could not take effect (a listen
    /// address could not be bound); nothing changed.
    ApplyFailed,
    /// The upgrade failed or was refused; this process keeps serving.
    UpgradeFailed,
    /// The server is shutting down.
    ShuttingDown,
    /// The request line was not a valid request.
    BadRequest,
    /// No request line arrived in time.
    Timeout,
    /// The peer's uid is neither the server's nor root.
    Forbidden,
    /// Too many control connections at once; try again.
    Busy,
}

/// The server's state.
///
/// # Example
///
/// ```
/// use grace::control::protocol::{Line, Phase, Reply};
///
/// let text = r#"{"ok":true,"reply":"status","pid":4211,"generation":3,"phase":"running",
///     "uptime_secs":86.5,"config_path":null,"connections":2,"requests":1,"last_reload":null}"#;
/// let Reply::Status(status) = serde_json::from_str::<Line>(text)?.reply else { panic!() };
/// assert_eq!((status.generation, status.phase), (3, Phase::Running));
/// assert_eq!((status.connections, status.requests), (2, 1));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Process id.
    pub pid: u32,
    /// Generation of the configuration serving (1 at start).
    pub generation: u64,
    /// Lifecycle phase.
    pub phase: Phase,
    /// Seconds since the process started.
    pub uptime_secs: f64,
    /// Where the configuration comes from, if the server said.
    pub config_path: Option<String>,
    /// Connections open now.
    pub connections: usize,
    /// Requests in flight now.
    pub requests: usize,
    /// The last reload that ran, if any.
    pub last_reload: Option<LastReload>,
    /// The certificates TLS listeners serve now (absent without TLS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
    /// The program `grace run` supervises (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<Box<AppState>>,
}

/// The supervised app (`grace run`), as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    /// The serving generation's pid; absent between a crash and its restart.
    pub pid: Option<u32>,
    /// The serving generation's number (the first is 1).
    pub generation: u64,
    /// New generations that took over, for any reason.
    pub restarts: u64,
    /// Of those, replacements (reloads).
    pub replaced: u64,
    /// Of those, restarts after a crash.
    pub crash_restarts: u64,
    /// Generations that failed to start.
    pub failed_starts: u64,
    /// How the last generation to end ended, such as
    /// `generation 2: exit status: 0`.
    pub last_exit: Option<String>,
}

/// A certificate served now, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// What it is served for: `default`, or its SNI names.
    pub name: String,
    /// The subject's distinguished name.
    pub subject: String,
    /// The serial number, hex bytes separated by colons.
    pub serial: String,
    /// When it expires (`notAfter`), Unix time in seconds.
    pub not_after: i64,
}

/// A lifecycle phase, as the protocol names it.
///
/// # Example
///
/// ```
/// use grace::control::protocol::Phase;
///
/// assert_eq!(serde_json::to_string(&Phase::Draining)?, r#""draining""#);
/// assert_eq!(Phase::from(grace::Phase::Forcing).to_string(), "forcing");
/// // A phase the protocol does not name is an error, not a string passed on.
/// assert!(serde_json::from_str::<Phase>(r#""drainig""#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
// Ordered as the phases follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Serving and ready.
    Running,
    /// Shutdown requested: readiness fails, serving goes on for the delay.
    Stopping,
    /// Listeners closed; in-flight work is finishing.
    Draining,
    /// Remaining work is being cut.
    Forcing,
    /// Nothing is left running.
    Stopped,
}

impl Phase {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Draining => "draining",
            Phase::Forcing => "forcing",
            Phase::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// The protocol keeps its own enum so that the wire format changes only when
// this file does, whatever the drain's phases become.
impl From<crate::drain::Phase> for Phase {
    fn from(phase: crate::drain::Phase) -> Phase {
        use crate::drain::Phase as Drain;
        match phase {
            Drain::Running => Phase::Running,
            Drain::Stopping => Phase::Stopping,
            Drain::Draining => Phase::Draining,
            Drain::Forcing => Phase::Forcing,
            Drain::Stopped => Phase::Stopped,
        }
    }
}

/// The last reload's verdict.
///
/// # Example
///
/// ```
/// use grace::control::protocol::{LastReload, ReloadResult};
///
/// let text = r#"{"result":"rejected","generation":null,"error":"app.toml:3:1: bad","at":1.7e9}"#;
/// let last: LastReload = serde_json::from_str(text)?;
/// assert_eq!(last.result, ReloadResult::Rejected);
/// assert_eq!(last.error.as_deref(), Some("app.toml:3:1: bad"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    /// Whether it took effect.
    pub result: ReloadResult,
    /// The generation it produced, when accepted.
    pub generation: Option<u64>,
    /// Why it was rejected.
    pub error: Option<String>,
    /// When it finished, Unix time in seconds.
    pub at: f64,
}

/// Whether a reload took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new configuration serves.
    Accepted,
    /// The previous configuration keeps serving.
    Rejected,
}

/// A drain in progress.
///
/// # Example
///
/// ```
/// use grace::control::protocol::{Line, Reply};
///
/// let text = r#"{"ok":true,"reply":"progress","phase":"draining",
///     "connections":1,"requests":1,"deadline_secs":12.5}"#;
/// let Reply::Progress(p) = serde_json::from_str::<Line>(text)?.reply else { panic!() };
/// println!("{}: {} connections, {:.0}s left", p.phase, p.connections, p.deadline_secs);
/// assert_eq!(p.requests, 1);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Connections still open.
    pub connections: usize,
    /// Requests still in flight.
    pub requests: usize,
    /// Seconds left before the rest is forced.
    pub deadline_secs: f64,
}

/// How the shutdown ended.
///
/// # Example
///
/// ```
/// use grace::control::protocol::{Exited, Line, Outcome, Reply};
///
/// let forced = Exited { outcome: Outcome::Forced, elapsed_secs: 30.0, requests_cut: 2 };
/// let line = Line::from(Reply::Exited(forced));
/// assert!(!line.ok); // requests were cut: a script should notice
/// assert!(serde_json::to_string(&line)?.contains(r#""requests_cut":2"#));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exited {
    /// Whether every request finished.
    pub outcome: Outcome,
    /// Seconds from the start of the shutdown.
    pub elapsed_secs: f64,
    /// Requests cut by the force; 0 when drained.
    pub requests_cut: usize,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every request finished.
    Drained,
    /// Some requests were cut.
    Forced,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let r: Request = serde_json::from_str(r#"{"cmd":"stop","wait":true}"#).unwrap();
        assert_eq!(r, Request::Stop { wait: true });
        let r: Request = serde_json::from_str(r#"{"cmd":"stop"}"#).unwrap();
        assert_eq!(r, Request::Stop { wait: false });
        let r: Request = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(r, Request::Status {});
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reload","force":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"explode"}"#).is_err());
    }

    #[test]
    fn lines_flatten_ok_beside_the_reply() {
        let line = Line::from(Reply::Error {
            kind: ErrorKind::ConfigRejected,
            message: "c.toml:1:1: bad".into(),
        });
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"ok":false,"reply":"error","kind":"config_rejected","message":"c.toml:1:1: bad"}"#
        );
        assert_eq!(serde_json::from_str::<Line>(&text).unwrap(), line);
        let text = serde_json::to_string(&Line::from(Reply::Reloaded { generation: 3 })).unwrap();
        assert_eq!(text, r#"{"ok":true,"reply":"reloaded","generation":3}"#);
    }

    /// The enums must keep the bytes the strings had: scripts and
    /// `tests/control.rs` read them.
    #[test]
    fn enums_keep_the_wire_format() {
        let status = Status {
            pid: 7,
            generation: 2,
            phase: Phase::Running,
            uptime_secs: 1.5,
            config_path: None,
            connections: 0,
            requests: 0,
            last_reload: Some(LastReload {
                result: ReloadResult::Accepted,
                generation: Some(2),
                error: None,
                at: 3.0,
            }),
            certificates: Vec::new(),
            app: None,
        };
        assert_eq!(
            serde_json::to_string(&Line::from(Reply::Status(status))).unwrap(),
            r#"{"ok":true,"reply":"status","pid":7,"generation":2,"phase":"running","uptime_secs":1.5,"config_path":null,"connections":0,"requests":0,"last_reload":{"result":"accepted","generation":2,"error":null,"at":3.0}}"#
        );
        let progress = Progress {
            phase: Phase::Draining,
            connections: 1,
            requests: 1,
            deadline_secs: 2.5,
        };
        assert_eq!(
            serde_json::to_string(&Line::from(Reply::Progress(progress))).unwrap(),
            r#"{"ok":true,"reply":"progress","phase":"draining","connections":1,"requests":1,"deadline_secs":2.5}"#
        );
        let exited = Exited {
            outcome: Outcome::Forced,
            elapsed_secs: 30.0,
            requests_cut: 2,
        };
        assert_eq!(
            serde_json::to_string(&Line::from(Reply::Exited(exited))).unwrap(),
            r#"{"ok":false,"reply":"exited","outcome":"forced","elapsed_secs":30.0,"requests_cut":2}"#
        );
        for phase in [
            crate::drain::Phase::Running,
            crate::drain::Phase::Stopping,
            crate::drain::Phase::Draining,
            crate::drain::Phase::Forcing,
            crate::drain::Phase::Stopped,
        ] {
            let text = serde_json::to_string(&Phase::from(phase)).unwrap();
            assert_eq!(text, format!("\"{}\"", phase.as_str()));
        }
    }

    #[test]
    fn values_outside_the_protocol_are_errors() {
        let progress = r#"{"phase":"drainig","connections":1,"requests":1,"deadline_secs":1.0}"#;
        assert!(serde_json::from_str::<Progress>(progress).is_err());
        let exited = r#"{"outcome":"exploded","elapsed_secs":1.0,"requests_cut":0}"#;
        assert!(serde_json::from_str::<Exited>(exited).is_err());
        let last = r#"{"result":"maybe","generation":null,"error":null,"at":1.0}"#;
        assert!(serde_json::from_str::<LastReload>(last).is_err());
    }
}
