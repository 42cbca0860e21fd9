//! The record of upgrade verdicts next to a pid file, which is how
//! `grace upgrade` (a separate process, holding no connection to the server)
//! learns how the upgrade it asked for ended.
//!
//! One line, replaced atomically: `seq=N result=ok pid=P` or
//! `seq=N result=failed reason=...`. The sequence number counts attempts
//! across processes, so a client can tell a new verdict from an old one.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Where [`Handoff`](super::Handoff) records upgrade verdicts for a pid file: the pid file's
/// path with `.upgrade` appended. Removed with the pid file's lock by the
/// last owner at exit (see [`Server::pid_file`](crate::Server::pid_file)).
///
/// # Example
///
/// ```
/// use std::path::Path;
///
/// let path = grace::handoff::status_path(Path::new("/run/myapp.pid"));
/// assert_eq!(path, Path::new("/run/myapp.pid.upgrade"));
/// ```
pub fn status_path(pid_file: &Path) -> PathBuf {
    let mut path = pid_file.as_os_str().to_owned();
    path.push(".upgrade");
    PathBuf::from(path)
}

/// One recorded upgrade verdict.
///
/// What a deploy script needs after sending SIGUSR2: a signal carries no
/// answer, the record does.
///
/// # Example
///
/// ```
/// use std::path::Path;
/// use grace::handoff::{read_status, status_path};
///
/// let path = status_path(Path::new("/run/myapp.pid"));
/// let before = read_status(&path).map_or(0, |s| s.seq);
/// // ... send SIGUSR2 to the pid in /run/myapp.pid, then poll:
/// if let Some(status) = read_status(&path).filter(|s| s.seq > before) {
///     match status.result {
///         Ok(pid) => println!("upgraded: pid {pid} serves"),
///         Err(reason) => println!("upgrade failed, old process serves: {reason}"),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeStatus {
    /// Counts attempts, across processes.
    pub seq: u64,
    /// `Ok(pid)` of the new process, or the reason it failed.
    pub result: Result<u32, String>,
}

/// Reads the last verdict recorded at `path`.
///
/// `None` when nothing was recorded yet, or the file is not a record.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use grace::handoff::{read_status, status_path, Handoff, UpgradeStatus};
/// use grace::{DrainSettings, Lifecycle, Reloadable, Reloader, ShutdownTrigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let pid_file = std::env::temp_dir().join(format!("grace-doc-{}.pid", std::process::id()));
/// let path = status_path(&pid_file);
/// assert_eq!(read_status(&path), None);
///
/// let handoff = Arc::new(Handoff::from_current_process()?.pid_file(&pid_file));
/// let reloader = Reloader::new(Reloadable::new(()), || Ok::<_, grace::BoxError>(()));
/// let lifecycle = Lifecycle::new(reloader, ShutdownTrigger::new(), |_: &()| DrainSettings::default())
///     .with_handoff(handoff);
/// let controller = lifecycle.controller();
/// controller.stop();
/// let _ = controller.upgrade().await; // refused: shutting down
/// let failed = Err("the server is shutting down".to_string());
/// assert_eq!(read_status(&path), Some(UpgradeStatus { seq: 1, result: failed }));
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub fn read_status(path: &Path) -> Option<UpgradeStatus> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let text = text.trim_end();
    let rest = text.strip_prefix("seq=")?;
    let (seq, rest) = rest.split_once(' ')?;
    let seq = seq.parse().ok()?;
    let result = if let Some(pid) = rest.strip_prefix("result=ok pid=") {
        Ok(pid.parse().ok()?)
    } else {
        Err(rest.strip_prefix("result=failed reason=")?.to_owned())
    };
    Some(UpgradeStatus { seq, result })
}

/// Appends the next verdict: `Ok(new pid)` or `Err(reason)`. Failures are
/// logged: the upgrade itself happened (or not) either way.
pub(crate) fn record(pid_file: &Path, verdict: Result<u32, String>) {
    let path = status_path(pid_file);
    let seq = read_status(&path).map_or(0, |s| s.seq) + 1;
    let line = match verdict {
        Ok(pid) => format!("seq={seq} result=ok pid={pid}\n"),
        Err(reason) => format!("seq={seq} result=failed reason={reason}\n"),
    };
    if let Err(e) = crate::pidfile::write_text_atomically(&path, &line) {
        tracing::warn!(path = %path.display(), "cannot record the upgrade verdict: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip() {
        let dir = std::env::temp_dir().join(format!("grace-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        crate::pidfile::write_text_atomically(&path, "seq=3 result=ok pid=42\n").unwrap();
        assert_eq!(
            read_status(&path),
            Some(UpgradeStatus {
                seq: 3,
                result: Ok(42)
            })
        );
        crate::pidfile::write_text_atomically(&path, "seq=4 result=failed reason=it broke: x=1\n")
            .unwrap();
        assert_eq!(
            read_status(&path).unwrap().result,
            Err("it broke: x=1".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
