//! Reloading when the configuration file changes.
//!
//! The directory is watched, not the file: editors and deploy tools replace
//! files by renaming a temporary one over them (a new inode), and Kubernetes
//! swaps a `..data` symlink to a new timestamped directory, so the file's own
//! inode never changes. Every event in the directory (and in the directory
//! the path currently resolves into) wakes the watcher; after a quiet
//! `debounce`, it reads the file through its path, re-resolving links, and
//! reloads only if the content's hash differs from the last one it saw.
//!
//! * a file that is briefly missing (deleted, then recreated) is waited for,
//!   not reported as an error;
//! * a half-written file is a change like any other: rejected by the loader
//!   if invalid, and the complete file is applied when it lands.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::Notify;

use crate::error::ReloadError;
use crate::reload::Reloader;

/// Events arriving this many debounces after the first one of a burst no
/// longer postpone the reload: a file rewritten without pause is still
/// picked up.
const MAX_DEBOUNCES: u32 = 5;

/// Why watching could not start.
///
/// Not fatal for a server: it still reloads on SIGHUP, so log it and go on.
///
/// # Example
///
/// ```
/// use std::{path::Path, time::Duration};
/// use grace::{watch::watch, Reloadable, Reloader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let reloader = Reloader::new(Reloadable::new(0u8), || Ok::<_, grace::BoxError>(0u8));
/// let path = "/no-such-dir-grace-doc/app.toml".into();
/// let err = watch(path, reloader, Duration::from_millis(200)).unwrap_err();
/// assert_eq!(err.path, Path::new("/no-such-dir-grace-doc")); // the directory is watched
/// eprintln!("not watching the config file: {err}");
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {source}", path.display())]
pub struct WatchError {
    /// The directory that could not be watched.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Watches `path` and reloads through `reloader` when its content changes.
/// Runs until the reloader refuses reloads (shutdown).
///
/// # Errors
/// When the directory of `path` cannot be watched (inotify limits, say).
///
/// # Panics
/// Outside a tokio runtime.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use grace::{Reloadable, Reloader};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::path::PathBuf::from("/etc/myapp/config.toml");
/// let load = { let path = path.clone(); move || std::fs::read_to_string(&path) };
/// let reloader = Reloader::new(Reloadable::new(load()?), load);
/// grace::watch::watch(path, reloader, Duration::from_millis(200))?;
/// # Ok(()) }
/// ```
pub fn watch<T: Send + Sync + 'static>(
    path: PathBuf,
    reloader: Reloader<T>,
    debounce: Duration,
) -> Result<(), WatchError> {
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e.kind)) {
            waker.notify_one();
        }
    })
    .map_err(|e| WatchError {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    let mut watched = Vec::new();
    for dir in dirs_of(&path) {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| WatchError {
                path: dir.clone(),
                source: io::Error::other(e),
            })?;
        watched.push(dir);
    }
    tracing::info!(
        path = %path.display(),
        debounce_ms = debounce.as_millis() as u64,
        "watching the config file"
    );
    let mut last = content_hash(&path).ok();
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            settle(&wake, debounce).await;
            // The path may now lead elsewhere (a symlink switched to another
            // directory): watch there too, so its next change is seen.
            for dir in dirs_of(&path) {
                if !watched.contains(&dir)
                    && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok()
                {
                    watched.push(dir);
                }
            }
            let hash = match content_hash(&path) {
                Ok(hash) => hash,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::info!(path = %path.display(), "config file is gone; waiting for it to come back");
                    continue;
                }
                // Unreadable for another reason: let the loader say why.
                Err(_) => 0,
            };
            if last == Some(hash) {
                tracing::info!(path = %path.display(), "config file touched, content unchanged: no reload");
                continue;
            }
            last = Some(hash);
            tracing::info!(path = %path.display(), "config file changed: reloading");
            if let Err(ReloadError::ShuttingDown) = reloader.reload_by("file change").await {
                return;
            }
        }
    });
    Ok(())
}

/// Whether an event may have changed the file. Opening and reading it (our
/// own loads among them) must not count, or every read would wake us again.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Waits until no event came for `debounce`, or `MAX_DEBOUNCES` debounces
/// have passed since the first event, whichever is first.
async fn settle(wake: &Notify, debounce: Duration) {
    let deadline = tokio::time::Instant::now() + debounce * MAX_DEBOUNCES;
    loop {
        tokio::select! {
            _ = wake.notified() => {
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
            _ = tokio::time::sleep(debounce) => return,
        }
    }
}

/// The directory of `path`, and the directory its resolution ends in when
/// that differs.
fn dirs_of(path: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let mut dirs = vec![parent(path)];
    if let Ok(resolved) = std::fs::canonicalize(path) {
        let dir = parent(&resolved);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

fn content_hash(path: &Path) -> io::Result<u64> {
    let bytes = std::fs::read(path)?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Ok(hasher.finish())
}
