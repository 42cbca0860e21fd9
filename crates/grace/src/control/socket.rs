//! Binding the control socket: private from the start, never stealing a live
//! server's path, never leaving a stale one behind, never removing a path
//! that is no longer ours.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// How [`ControlSocket::bind`] treats a path that a live server answers on.
///
/// # Example
///
/// ```
/// use grace::control::{BindMode, ControlSocket};
///
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.ctl", std::process::id()));
/// let old = ControlSocket::bind(&path, BindMode::Exclusive)?; // the running server
/// // The new process of an upgrade: bound aside, published once it serves.
/// let mut new = ControlSocket::bind(&path, BindMode::Takeover)?;
/// new.publish()?;
/// drop(old); // the old server exits: the path is the new one's, left alone
/// assert!(path.exists());
/// drop(new);
/// assert!(!path.exists());
/// # Ok::<(), grace::control::ControlSocketError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Refuse it ([`ControlSocketError::InUse`]); clear a stale socket.
    Exclusive,
    /// Take it over when [`ControlSocket::publish`] is called: the new
    /// process of an upgrade replaces its parent's socket atomically, once
    /// it is ready, so the path always reaches a live server.
    Takeover,
}

/// Why the control socket could not be set up.
///
/// # Example
///
/// ```
/// use grace::control::{BindMode, ControlSocket, ControlSocketError};
///
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.ctl", std::process::id()));
/// let first = ControlSocket::bind(&path, BindMode::Exclusive)?;
/// // A second server started by mistake must not steal the path.
/// let second = ControlSocket::bind(&path, BindMode::Exclusive);
/// assert!(matches!(second, Err(ControlSocketError::InUse { .. })));
/// drop(first);
/// # Ok::<(), ControlSocketError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlSocketError {
    /// A server answers on this path already.
    #[error("control socket {}: another server is running and answering on it", path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Something that is not a socket is at the path; it is left alone.
    #[error("control socket {}: the path exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The path does not fit in a unix socket address: no client could
    /// connect to it.
    #[error(
        "control socket {}: the path is {len} bytes long; a unix socket address holds at most {MAX_PATH_LEN}",
        path.display()
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The OS refused (directory missing or not writable).
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// The longest path a unix socket can be bound or connected at: `sun_path`
/// holds 108 bytes on Linux, the terminating NUL included.
pub const MAX_PATH_LEN: usize = 107;

/// Checks that clients can reach a socket at `path`; what the server checks
/// before binding and a client before connecting. Binding a longer path
/// could still succeed (through a shorter temporary name, then a link), but
/// nobody could connect to it.
///
/// # Errors
/// [`ControlSocketError::PathTooLong`].
///
/// # Example
///
/// ```
/// use std::path::Path;
/// use grace::control::{check_path, ControlSocketError, MAX_PATH_LEN};
///
/// assert!(check_path(Path::new(&"s".repeat(MAX_PATH_LEN))).is_ok());
/// let long = "s".repeat(MAX_PATH_LEN + 1);
/// assert!(matches!(
///     check_path(Path::new(&long)),
///     Err(ControlSocketError::PathTooLong { len: 108, .. })
/// ));
/// ```
pub fn check_path(path: &Path) -> Result<(), ControlSocketError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_LEN {
        return Err(ControlSocketError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    Ok(())
}

/// A bound control socket, mode 0600. Dropping it removes its path, if the
/// path still refers to this socket (after an upgrade it refers to the new
/// process's socket and is left alone).
///
/// # Example
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use grace::control::{BindMode, ControlSocket};
///
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.ctl", std::process::id()));
/// let socket = ControlSocket::bind(&path, BindMode::Exclusive)?;
/// let mode = std::fs::metadata(socket.path()).unwrap().permissions().mode();
/// assert_eq!(mode & 0o777, 0o600); // private from the first moment
/// drop(socket);
/// assert!(!path.exists());
/// # Ok::<(), grace::control::ControlSocketError>(())
/// ```
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    // Bound here first, then linked or renamed into place: the socket is
    // chmod-ed before anyone can reach it by its public path.
    staging: Option<PathBuf>,
    listener: Option<UnixListener>,
    // (device, inode) of our socket once published at `path`.
    identity: Option<(u64, u64)>,
}

impl ControlSocket {
    /// Binds a socket for `path`. With [`BindMode::Exclusive`] it is
    /// reachable at `path` on return; with [`BindMode::Takeover`] only after
    /// [`ControlSocket::publish`].
    ///
    /// # Errors
    /// [`ControlSocketError::PathTooLong`] when no client could connect to
    /// `path`, [`ControlSocketError::InUse`] when a live server answers at
    /// `path` (exclusive mode), [`ControlSocketError::NotASocket`] when a
    /// file that is not a socket is there, [`ControlSocketError::Io`]
    /// otherwise.
    pub fn bind(
        path: impl Into<PathBuf>,
        mode: BindMode,
    ) -> Result<ControlSocket, ControlSocketError> {
        let path = path.into();
        check_path(&path)?;
        let io_err = |source| ControlSocketError::Io {
            path: path.clone(),
            source,
        };
        if mode == BindMode::Exclusive {
            clear_stale(&path)?;
        } else if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(ControlSocketError::NotASocket { path });
            }
        }
        let staging = staging_path(&path);
        // A leftover from a crashed process with our pid: ours to remove.
        let _ = std::fs::remove_file(&staging);
        let listener = bind_staging(&staging).map_err(io_err)?;
        let mut socket = ControlSocket {
            path: path.clone(),
            staging: Some(staging.clone()),
            listener: Some(listener),
            identity: None,
        };
        // Between bind and chmod the staging name has the umask's mode; a
        // peer that connects in that instant still meets the uid check.
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
        if mode == BindMode::Exclusive {
            socket.link_exclusive()?;
        }
        Ok(socket)
    }

    /// Makes a [`BindMode::Takeover`] socket reachable at its path, replacing
    /// whatever socket was there in one step. Does nothing when already
    /// published.
    ///
    /// # Errors
    /// When the rename fails; the previous socket then stays in place.
    pub fn publish(&mut self) -> Result<(), ControlSocketError> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        if let Err(source) = std::fs::rename(&staging, &self.path) {
            self.staging = Some(staging);
            return Err(ControlSocketError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.identity = identity(&self.path);
        Ok(())
    }

    fn link_exclusive(&mut self) -> Result<(), ControlSocketError> {
        let Some(staging) = self.staging.clone() else {
            return Ok(());
        };
        // link(2) fails if the path exists: two servers started at once
        // cannot both take it, as they could with a check then a rename.
        let linked = match std::fs::hard_link(&staging, &self.path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                clear_stale(&self.path)?;
                std::fs::hard_link(&staging, &self.path)
            }
            other => other,
        };
        linked.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => ControlSocketError::InUse {
                path: self.path.clone(),
            },
            _ => ControlSocketError::Io {
                path: self.path.clone(),
                source: e,
            },
        })?;
        let _ = std::fs::remove_file(&staging);
        self.staging = None;
        self.identity = identity(&self.path);
        Ok(())
    }

    /// The public path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the listening socket out (once), to accept on it.
    pub(crate) fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Some(staging) = &self.staging {
            let _ = std::fs::remove_file(staging);
        }
        if self.identity.is_some() && identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn staging_path(path: &Path) -> PathBuf {
    // Short, so a public path near the 107-byte limit still fits.
    path.with_file_name(format!(".ctl.{}", std::process::id()))
}

/// Binds at `staging`, also when only the public path fits in a socket
/// address and the temporary name next to it (longer than a short public
/// name) does not: then through the directory's descriptor, whose
/// `/proc/self/fd` path is short.
fn bind_staging(staging: &Path) -> io::Result<UnixListener> {
    if staging.as_os_str().len() <= MAX_PATH_LEN {
        return UnixListener::bind(staging);
    }
    let (Some(dir), Some(name)) = (staging.parent(), staging.file_name()) else {
        return UnixListener::bind(staging);
    };
    let dir = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    UnixListener::bind(via)
}

/// Leaves `path` free, or says why it cannot be: a socket nobody answers on
/// is stale and removed; a live one or a non-socket is refused.
fn clear_stale(path: &Path) -> Result<(), ControlSocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlSocketError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ControlSocketError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ControlSocketError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale control socket");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ControlSocketError::Io {
                    path: path.to_owned(),
                    source: e,
                }),
                _ => Ok(()),
            }
        }
        Err(source) => Err(ControlSocketError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("grace-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn exclusive_refuses_a_live_socket_and_clears_a_stale_one() {
        let dir = dir("excl");
        let path = dir.join("c.sock");
        let live = ControlSocket::bind(&path, BindMode::Exclusive).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            ControlSocket::bind(&path, BindMode::Exclusive),
            Err(ControlSocketError::InUse { .. })
        ));
        // A socket file nobody listens on: what a killed server leaves.
        drop(UnixListener::bind(dir.join("stale.sock")).unwrap());
        let stale = ControlSocket::bind(dir.join("stale.sock"), BindMode::Exclusive).unwrap();
        drop(stale);
        assert!(!dir.join("stale.sock").exists(), "removed at drop");
        drop(live);
        assert!(!path.exists());
        std::fs::write(dir.join("file"), "x").unwrap();
        assert!(matches!(
            ControlSocket::bind(dir.join("file"), BindMode::Exclusive),
            Err(ControlSocketError::NotASocket { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_longest_reachable_path_binds_even_with_a_short_name() {
        let dir = dir("long");
        // A one-byte name: the temporary name next to it is longer.
        let deep = dir.join("d".repeat(MAX_PATH_LEN - dir.as_os_str().len() - 3));
        std::fs::create_dir(&deep).unwrap();
        let path = deep.join("c");
        assert_eq!(path.as_os_str().len(), MAX_PATH_LEN);
        let socket = ControlSocket::bind(&path, BindMode::Exclusive).unwrap();
        UnixStream::connect(&path).unwrap();
        drop(socket);
        assert!(!path.exists());
        let too_long = deep.join("cc");
        assert!(matches!(
            ControlSocket::bind(&too_long, BindMode::Exclusive),
            Err(ControlSocketError::PathTooLong { len: 108, .. })
        ));
        assert!(!too_long.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn takeover_replaces_on_publish_and_the_old_owner_leaves_it() {
        let dir = dir("take");
        let path = dir.join("c.sock");
        let old = ControlSocket::bind(&path, BindMode::Exclusive).unwrap();
        let mut new = ControlSocket::bind(&path, BindMode::Takeover).unwrap();
        assert_eq!(identity(&path), old.identity, "not before publish");
        new.publish().unwrap();
        drop(old);
        assert!(
            path.exists(),
            "the old owner must not remove the new socket"
        );
        drop(new);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
