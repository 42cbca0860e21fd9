//! Exit statuses, after sysexits(3) where one fits. Start-up failures
//! other than the configuration take theirs from
//! [`grace::StartError::exit_code`]: 69 address, pid file or control socket
//! in use, 71 the OS refused, 73 cannot create the pid file or control
//! socket.

/// Clean exit: shutdown drained every request, or a command succeeded.
pub const OK: u8 = 0;
/// A client command failed (no such process, unreadable pid file).
pub const FAILURE: u8 = 1;
/// EX_USAGE: the command line is wrong.
pub const USAGE: u8 = 64;
/// EX_SOFTWARE (`grace run`): the app's first generation did not become
/// ready, or it exited with a failure status when stopped.
pub const APP_FAILED: u8 = 70;
/// EX_TEMPFAIL: the shutdown was forced (deadline or second signal) and
/// requests in flight were cut; or (`grace run`) the app had to be
/// killed after its stop timeout.
pub const FORCED: u8 = 75;
/// EX_CONFIG: the configuration is invalid.
pub const CONFIG: u8 = 78;
