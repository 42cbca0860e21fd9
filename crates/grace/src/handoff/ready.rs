//! The readiness handshake between a grace parent and the child it started:
//! one pipe. The child writes a line once it serves; end-of-file without that
//! line means the child is gone. No timer guesses at readiness.

use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};

use rustix::fs::FileType;

use super::sys;

/// The child's end: tells the parent "I serve, you may drain".
///
/// [`Server`](crate::Server) sends it for you; a service wiring the pieces
/// itself sends it once every listener is being served.
///
/// # Example
///
/// ```
/// use grace::handoff::Inherited;
///
/// let mut inherited = Inherited::take()?;
/// // ... take the listeners and start serving them, then:
/// if let Some(pipe) = inherited.take_ready_pipe() {
///     if let Err(e) = pipe.notify() {
///         eprintln!("the parent gave up waiting; serving on: {e}");
///     }
/// }
/// assert!(!inherited.from_upgrade()); // started by hand here: nobody waits
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadyPipe {
    fd: OwnedFd,
}

/// What a ready child writes.
pub(crate) const READY_LINE: &[u8] = b"ready\n";

impl ReadyPipe {
    pub(crate) fn claim(raw: RawFd) -> io::Result<ReadyPipe> {
        let fd = sys::claim_inherited(raw)?;
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a pipe"));
        }
        Ok(ReadyPipe { fd })
    }

    /// Tells the parent we are ready, and closes the pipe.
    ///
    /// Call it once every listener is being served: from then on the parent
    /// stops accepting and drains.
    ///
    /// # Errors
    /// When the parent is gone (`EPIPE`): it gave up waiting. Keep serving;
    /// the sockets are ours now.
    pub fn notify(self) -> io::Result<()> {
        std::fs::File::from(self.fd).write_all(READY_LINE)
    }
}
