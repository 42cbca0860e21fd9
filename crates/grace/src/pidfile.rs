//! Pid files written atomically and removed only by their owner.
//!
//! A reader must never see a half-written pid, and a process must never
//! remove a pid file that a successor has already rewritten: both are the
//! classic ways `kill $(cat pidfile)` reaches the wrong process.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A pid file this process wrote. Removed on drop if it still names us.
///
/// # Example
///
/// ```
/// use grace::pidfile::{self, PidFile};
///
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.pid", std::process::id()));
/// let pid_file = PidFile::create(&path)?;
/// assert_eq!(pidfile::read(pid_file.path())?, std::process::id());
/// drop(pid_file); // at exit: still ours, so removed
/// assert!(!path.exists());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes our pid to `path` through a temporary file and a rename.
    ///
    /// # Errors
    /// When the directory is not writable.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<PidFile> {
        let path = path.into();
        let pid = std::process::id();
        write_atomically(&path, pid)?;
        Ok(PidFile { path, pid })
    }

    /// Takes over a pid file that another process writes for us (the parent
    /// of an upgrade writes our pid once we are ready). Removed on drop if it
    /// names us then.
    pub fn adopt(path: impl Into<PathBuf>) -> PidFile {
        PidFile {
            path: path.into(),
            pid: std::process::id(),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).ok() == Some(self.pid) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Replaces the content of `path` with `pid` so that no reader ever sees a
/// partial file.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
///
/// # Example
///
/// ```
/// use grace::pidfile::{self, PidFile};
///
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.pid", std::process::id()));
/// let ours = PidFile::create(&path)?;
/// pidfile::write_atomically(&path, 4242)?; // a successor took over
/// drop(ours); // names another process now: left alone
/// assert_eq!(pidfile::read(&path)?, 4242);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomically(path: &Path, pid: u32) -> io::Result<()> {
    write_text_atomically(path, &format!("{pid}\n"))
}

/// Replaces the content of `path` with `text` through a temporary file in the
/// same directory and a rename.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
///
/// # Example
///
/// ```
/// let path = std::env::temp_dir().join(format!("grace-doc-{}.txt", std::process::id()));
/// grace::pidfile::write_text_atomically(&path, "old\n")?;
/// grace::pidfile::write_text_atomically(&path, "new\n")?; // readers see old or new, whole
/// assert_eq!(std::fs::read_to_string(&path)?, "new\n");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_text_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "pid file path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.map_or_else(|| PathBuf::from(&tmp_name), |d| d.join(&tmp_name));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
