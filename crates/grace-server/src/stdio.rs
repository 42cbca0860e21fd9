//! Standard descriptors 0, 1 and 2 must be open before anything else is.
//!
//! Started with one of them closed (`grace 2>&-`, some supervisors), the
//! first file or socket grace opens would take its number, and log lines
//! meant for stderr would go into it: into a client's connection, say.
//! Opening `/dev/null` in the gaps, as daemons do, makes that impossible.

use std::os::fd::{AsFd, IntoRawFd};

use rustix::fs::{Mode, OFlags};

pub fn ensure_open() {
    let std_fds = [
        std::io::stdin().as_fd().try_clone_to_owned().is_ok(),
        std::io::stdout().as_fd().try_clone_to_owned().is_ok(),
        std::io::stderr().as_fd().try_clone_to_owned().is_ok(),
    ];
    for open in std_fds {
        if !open {
            // The lowest free number is the gap being filled: 0, 1 and 2 are
            // handled in order. Deliberately never closed.
            if let Ok(null) = rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()) {
                let _ = null.into_raw_fd();
            }
        }
    }
}
