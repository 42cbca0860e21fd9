//! Pid files written atomically, owned by one live server at a time, and
//! removed only by their owner.
//!
//! A reader must never see a half-written pid, a process must never remove a
//! pid file that a successor has already rewritten, and a command must never
//! signal whatever process a stale pid file happens to name: all are classic
//! ways `kill $(cat pidfile)` reaches the wrong process.
//!
//! # Ownership
//!
//! The pid file stays one line, the bare pid, so `kill $(cat grace.pid)`
//! keeps working (a second line would become a second argument to `kill`).
//! Ownership lives in a lock file next to it, `NAME.lock`
//! ([`lock_path`]): each server holds a POSIX record lock on the byte at the
//! offset of its own pid. [`owner`] accepts pid P only when the process
//! holding byte P is P. The kernel drops the lock when the process exits, so
//! a reused pid (another start time, another program) never holds it, and
//! neither does a grace that owns some other pid file. Unlike a recorded
//! start time or command line, there is nothing to parse or to go stale.
//!
//! Byte ranges, not one lock for the file, because ownership passes on
//! during an upgrade: the new process locks its byte while the old one still
//! holds its own and drains, and from the moment the old one writes the new
//! pid into the pid file, that pid checks out.
//!
//! A server starting afresh first locks the whole range:
//! that fails while any grace holds a byte, which is how a second server on
//! the same pid file refuses to start ([`PidFileError::InUse`]), even when
//! two start at the same instant.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::process::{FlockOffsetType, FlockType};

use crate::handoff::sys::{set_record_lock, RecordLock};

/// Why a pid file could not be claimed, or does not lead to its server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PidFileError {
    /// A live grace owns the pid file: starting another would overwrite it.
    #[error("pid file {}: {} owns it and is running", path.display(), holder(*pid))]
    InUse {
        /// The pid file.
        path: PathBuf,
        /// The owner, when the kernel names it (not across pid namespaces).
        pid: Option<u32>,
    },
    /// The pid file names a running process that does not own it: a stale
    /// pid file whose number was reused, or one grace did not write.
    #[error(
        "pid file {} names pid {pid}, which is not the grace server that owns this pid file \
         (a stale file whose pid was reused, or one grace did not write)",
        path.display()
    )]
    NotOwner {
        /// The pid file.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
    },
    /// The pid file names no running process.
    #[error("stale pid file {}: no process {pid} is running", path.display())]
    Stale {
        /// The pid file.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
    },
    /// The pid file or its lock file could not be read.
    #[error("cannot read pid file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The pid file or its lock file could not be created, locked or written.
    #[error("cannot write pid file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(
        || "another grace".to_owned(),
        |pid| format!("grace pid {pid}"),
    )
}

/// Where the lock that says which server owns `pid_file` lives: the pid
/// file's path with `.lock` appended. Removed by the last owner at exit.
///
/// # Example
///
/// ```
/// use std::path::Path;
///
/// let path = grace::pidfile::lock_path(Path::new("/run/myapp.pid"));
/// assert_eq!(path, Path::new("/run/myapp.pid.lock"));
/// ```
pub fn lock_path(pid_file: &Path) -> PathBuf {
    let mut path = pid_file.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

/// A pid file this process owns. Removed on drop if it still names us.
///
/// One per path and process: record locks belong to the process, and closing
/// any descriptor of the lock file releases them.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    pid: u32,
    // Holds our record lock: closing it would release the lock.
    lock: fs::File,
}

impl PidFile {
    /// Claims `path` for this process without writing it yet: a server
    /// claims before listening, so that a second one refuses before it
    /// touches anything, and writes its pid ([`PidFile::write`]) once it
    /// listens.
    ///
    /// # Errors
    /// [`PidFileError::InUse`] while a live grace owns the pid file,
    /// [`PidFileError::Write`] when the lock file cannot be created.
    pub(crate) fn claim(path: impl Into<PathBuf>) -> Result<PidFile, PidFileError> {
        let path = path.into();
        let pid = std::process::id();
        let lock = lock_owned(&path, Claim::Afresh)?;
        Ok(PidFile { path, pid, lock })
    }

    /// Claims `path` and writes our pid to it: [`PidFile::claim`] then
    /// [`PidFile::write`].
    ///
    /// # Errors
    /// As those two.
    #[cfg(test)]
    fn create(path: impl Into<PathBuf>) -> Result<PidFile, PidFileError> {
        let file = PidFile::claim(path)?;
        file.write()?;
        Ok(file)
    }

    /// Writes our pid to the pid file, atomically.
    ///
    /// # Errors
    /// [`PidFileError::Write`] when the directory is not writable.
    pub(crate) fn write(&self) -> Result<(), PidFileError> {
        write_atomically(&self.path, self.pid).map_err(|source| PidFileError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Takes over a pid file that another process writes for us (the parent
    /// of an upgrade writes our pid once we are ready, while it still owns
    /// the file). Removed on drop if it names us then.
    ///
    /// # Errors
    /// [`PidFileError::Write`] when the lock file cannot be opened or locked.
    pub(crate) fn adopt(path: impl Into<PathBuf>) -> Result<PidFile, PidFileError> {
        let path = path.into();
        let pid = std::process::id();
        let lock = lock_owned(&path, Claim::Adopt)?;
        Ok(PidFile { path, pid, lock })
    }

    /// Where it is.
    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).ok() == Some(self.pid) {
            let _ = fs::remove_file(&self.path);
        }
        // The whole range is ours only when no other grace holds its byte
        // (an upgrade's new process does). Removed while locked: a server
        // that opened it meanwhile finds it unlinked once it gets the lock,
        // and starts over on a new one (see `lock_owned`).
        // The upgrade record goes with it: kept while a successor serves
        // (`grace upgrade` reads the verdict there), stale once none does.
        if set_record_lock(self.lock.as_fd(), RecordLock::Write, 0, 0).is_ok() {
            let _ = fs::remove_file(crate::handoff::status_path(&self.path));
            let _ = fs::remove_file(lock_path(&self.path));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Only when no other grace holds any byte.
    Afresh,
    /// Next to the parent of an upgrade, which holds its own byte.
    Adopt,
}

/// Opens (creating it if needed) the lock file of `pid_file` and locks our
/// byte in it, retrying until the lock is taken on the file that is at the
/// path: its last owner may have removed it between our open and our lock.
fn lock_owned(pid_file: &Path, claim: Claim) -> Result<fs::File, PidFileError> {
    let pid = u64::from(std::process::id());
    let (start, len) = match claim {
        Claim::Afresh => (0, 0),
        Claim::Adopt => (pid, 1),
    };
    let path = lock_path(pid_file);
    let fail = |source| PidFileError::Write {
        path: path.clone(),
        source,
    };
    for _ in 0..10 {
        // No O_TRUNC and nothing is ever written: a file planted at the name
        // (even a hard link to something precious) is only locked. No
        // following of a planted symlink either.
        let fd = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| fail(e.into()))?;
        let file = fs::File::from(fd);
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the lock file is not a regular file",
            )));
        }
        match set_record_lock(file.as_fd(), RecordLock::Write, start, len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match lock_holder(&file, start, len).map_err(fail)? {
                    Some(pid) => {
                        return Err(PidFileError::InUse {
                            path: pid_file.to_owned(),
                            pid: (pid > 0).then_some(pid),
                        })
                    }
                    // Its holder exited in between: try again.
                    None => continue,
                }
            }
            Err(e) => return Err(fail(e)),
        }
        match fs::symlink_metadata(&path) {
            Ok(now) if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) => {}
            _ => continue,
        }
        if claim == Claim::Afresh {
            // Keep our byte only: the new process of an upgrade locks its own.
            set_record_lock(file.as_fd(), RecordLock::Unlock, 0, pid).map_err(fail)?;
            set_record_lock(file.as_fd(), RecordLock::Unlock, pid + 1, 0).map_err(fail)?;
        }
        return Ok(file);
    }
    Err(fail(io::Error::other(
        "the lock file keeps being replaced; is another server starting and stopping?",
    )))
}

/// The pid of the other process holding a lock on `len` bytes from `start`:
/// `Some(0)` when the holder is in another pid namespace; `None` when there
/// is none. This process's own locks never show.
fn lock_holder(file: &fs::File, start: u64, len: u64) -> io::Result<Option<u32>> {
    let query = rustix::process::Flock {
        start,
        length: len,
        pid: None,
        typ: FlockType::WriteLock,
        offset_type: FlockOffsetType::Set,
    };
    Ok(rustix::process::fcntl_getlk(file, &query)?.map(|held| {
        held.pid
            .map_or(0, |pid| pid.as_raw_nonzero().get().unsigned_abs())
    }))
}

/// The pid of the grace server that owns `path`: the pid it names, once
/// checked to be the process holding that pid's lock (see the module
/// documentation). What to call before signalling the pid in a pid file.
///
/// Asks from another process than the owner's: a process does not see its
/// own locks, so it never finds itself the owner (and opening the lock file
/// would not be safe for it: closing it drops its locks).
///
/// # Errors
/// [`PidFileError::Read`] when the pid file cannot be read or holds no pid,
/// [`PidFileError::Stale`] when no process has that pid,
/// [`PidFileError::NotOwner`] when one does but it does not own the file.
///
/// # Example
///
/// ```
/// use grace::pidfile::{self, PidFileError};
///
/// let path = std::env::temp_dir().join(format!("grace-doc-owner-{}.pid", std::process::id()));
/// // Pid 1 runs, but it did not write this file.
/// std::fs::write(&path, "1\n")?;
/// assert!(matches!(pidfile::owner(&path), Err(PidFileError::NotOwner { pid: 1, .. })));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn owner(path: &Path) -> Result<u32, PidFileError> {
    let pid = read(path).map_err(|source| PidFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let not_owner = || PidFileError::NotOwner {
        path: path.to_owned(),
        pid,
    };
    let running = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .map(rustix::process::test_kill_process);
    if let Some(Err(rustix::io::Errno::SRCH)) = running {
        return Err(PidFileError::Stale {
            path: path.to_owned(),
            pid,
        });
    }
    if pid == std::process::id() {
        return Err(not_owner());
    }
    let lock = lock_path(path);
    let file = match rustix::fs::open(
        &lock,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Err(not_owner()),
        Err(e) => {
            return Err(PidFileError::Read {
                path: lock,
                source: e.into(),
            })
        }
    };
    match lock_holder(&file, u64::from(pid), 1) {
        Ok(Some(holder)) if holder == pid => Ok(pid),
        Ok(_) => Err(not_owner()),
        Err(source) => Err(PidFileError::Read { path: lock, source }),
    }
}

/// Replaces the content of `path` with `pid` so that no reader ever sees a
/// partial file.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
pub(crate) fn write_atomically(path: &Path, pid: u32) -> io::Result<()> {
    write_text_atomically(path, &format!("{pid}\n"))
}

/// Replaces the content of `path` with `text` through a temporary file in the
/// same directory and a rename.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
pub(crate) fn write_text_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let (tmp, mut file) = create_temporary(dir.unwrap_or(Path::new(".")), file_name)?;
    let result = (|| {
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new file next to the target, exclusively and without following
/// links: whoever can write the directory could otherwise plant a symlink at
/// the temporary name and have us write through it (as root, into any file).
/// The name is unpredictable, so planting files at it cannot block us either.
fn create_temporary(dir: &Path, file_name: &std::ffi::OsStr) -> io::Result<(PathBuf, fs::File)> {
    use std::hash::{BuildHasher, Hasher};
    let mut last = None;
    for _ in 0..8 {
        // RandomState is seeded from the OS's randomness once per thread
        // and differs at each call: enough for a name nobody can guess.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.{random:016x}.tmp", std::process::id()));
        let tmp = dir.join(name);
        match rustix::fs::open(
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => return Ok((tmp, fs::File::from(fd))),
            Err(rustix::io::Errno::EXIST) => last = Some(rustix::io::Errno::EXIST),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| io::Error::other("no temporary name"), Into::into))
}

/// Reads a pid file.
///
/// # Errors
/// When the file cannot be read, or does not hold a positive number.
///
/// # Example
///
/// ```
/// use std::io::ErrorKind;
///
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.pid", std::process::id()));
/// std::fs::write(&path, "  1234\n")?;
/// assert_eq!(grace::pidfile::read(&path)?, 1234);
/// std::fs::write(&path, "0\n")?; // never a pid to signal
/// assert_eq!(grace::pidfile::read(&path).unwrap_err().kind(), ErrorKind::InvalidData);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read(path: &Path) -> io::Result<u32> {
    let text = fs::read_to_string(path)?;
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold a pid: {:?}", path.display(), text.trim()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("grace-unit-{}-{name}", std::process::id()))
    }

    #[test]
    fn an_owned_pid_file_is_removed_at_drop_with_its_lock() {
        let path = temp("owned.pid");
        let pid_file = PidFile::create(&path).unwrap();
        assert_eq!(read(pid_file.path()).unwrap(), std::process::id());
        drop(pid_file); // at exit: still ours, so removed
        assert!(!path.exists());
        assert!(!lock_path(&path).exists());
    }

    #[test]
    fn a_pid_file_a_successor_rewrote_is_left_alone() {
        let path = temp("successor.pid");
        let ours = PidFile::create(&path).unwrap();
        write_atomically(&path, 4242).unwrap(); // a successor took over
        drop(ours); // names another process now: left alone
        assert_eq!(read(&path).unwrap(), 4242);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn text_is_replaced_whole() {
        let path = temp("text.txt");
        write_text_atomically(&path, "old\n").unwrap();
        write_text_atomically(&path, "new\n").unwrap(); // readers see old or new, whole
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn written_read_and_removed_by_its_owner_only() {
        let dir = std::env::temp_dir().join(format!("grace-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("grace.pid");

        let file = PidFile::create(&path).unwrap();
        assert_eq!(read(&path).unwrap(), std::process::id());
        drop(file);
        assert!(!path.exists());

        let file = PidFile::create(&path).unwrap();
        write_atomically(&path, 1).unwrap();
        drop(file);
        assert_eq!(
            read(&path).unwrap(),
            1,
            "a successor's pid file is left alone"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
