//! The giving side of socket activation: a child started with our listening
//! sockets at descriptors 3, 4, … and the variables that describe them
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`), as `grace upgrade` starts the next
//! process and `grace run` starts each generation of an app.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::inherit::{encode_name, LISTEN_FDS_START};

/// Descriptors placed for a child, to move into place between fork and exec
/// (see `sys::ExecPlan`).
pub(crate) struct Passed {
    /// The duplicates the moves read from: open until the child is started.
    pub(crate) keep_alive: Vec<OwnedFd>,
    /// `(duplicate, target)` pairs.
    pub(crate) moves: Vec<(RawFd, RawFd)>,
    /// `LISTEN_FDS`: how many sockets.
    pub(crate) count: String,
    /// `LISTEN_FDNAMES`: their names, colon-separated.
    pub(crate) names: String,
    // Above every target number.
    floor: RawFd,
}

impl Passed {
    /// Places `sockets` at 3, 4, …, with room for `extra` more descriptors
    /// after them (see [`Passed::add`]). Each source is first duplicated
    /// above every target number, so moving one into place never overwrites
    /// another still to move.
    pub(crate) fn sockets(sockets: &[(String, OwnedFd)], extra: usize) -> io::Result<Self> {
        let count = sockets.len();
        let mut passed = Passed {
            floor: LISTEN_FDS_START + (count + extra) as RawFd,
            keep_alive: Vec::with_capacity(count + extra),
            moves: Vec::with_capacity(count + extra),
            count: count.to_string(),
            names: sockets
                .iter()
                .map(|(name, _)| encode_name(name))
                .collect::<Vec<_>>()
                .join(":"),
        };
        for (_, fd) in sockets {
            passed.add(fd)?;
        }
        Ok(passed)
    }

    /// Places `fd`, one of the `extra` descriptors, at the next number after
    /// those already placed, and returns that number.
    pub(crate) fn add(&mut self, fd: impl AsFd) -> io::Result<RawFd> {
        let target = LISTEN_FDS_START + self.moves.len() as RawFd;
        debug_assert!(
            target < self.floor,
            "more descriptors than room was made for"
        );
        let high = rustix::io::fcntl_dupfd_cloexec(fd, self.floor).map_err(io::Error::from)?;
        self.moves.push((high.as_raw_fd(), target));
        self.keep_alive.push(high);
        Ok(target)
    }
}

/// This process's environment for a child, without the variables in
/// `replaced` (ours: the child gets its own values or none) and without
/// those `overridden` says the caller sets.
pub(crate) fn inherited_env(
    replaced: &[&str],
    overridden: impl Fn(&OsStr) -> bool,
) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            !k.to_str().is_some_and(|k| replaced.contains(&k)) && !overridden(k.as_os_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_go_to_three_and_on_and_no_move_overwrites_a_source() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sockets = vec![
            ("web".to_string(), OwnedFd::from(a)),
            ("admin".to_string(), OwnedFd::from(b)),
        ];
        let (pipe, _other) = rustix::pipe::pipe().unwrap();
        let mut passed = Passed::sockets(&sockets, 1).unwrap();
        assert_eq!(passed.add(&pipe).unwrap(), 5);
        assert_eq!(passed.count, "2");
        assert_eq!(passed.names, "web:admin");
        let targets: Vec<RawFd> = passed.moves.iter().map(|&(_, t)| t).collect();
        assert_eq!(targets, [3, 4, 5]);
        for &(source, _) in &passed.moves {
            assert!(source > 5, "source {source} is above every target");
        }
    }
}
