//! Exit statuses, after sysexits(3) where one fits.

/// Clean exit: shutdown drained every request, or a command succeeded.
pub const OK: u8 = 0;
/// A client command failed (no such process, unreadable pid file).
pub const FAILURE: u8 = 1;
/// EX_USAGE: the command line is wrong.
pub const USAGE: u8 = 64;
/// EX_UNAVAILABLE: a listening socket could not be set up.
pub const UNAVAILABLE: u8 = 69;
/// EX_OSERR: the OS refused something the server needs (signal handlers,
/// threads).
pub const OSERR: u8 = 71;
/// EX_CANTCREAT: the pid file could not be written.
pub const CANTCREAT: u8 = 73;
/// EX_TEMPFAIL: the shutdown was forced (deadline or second signal) and
/// requests in flight were cut.
pub const FORCED: u8 = 75;
/// EX_CONFIG: the configuration is invalid.
pub const CONFIG: u8 = 78;
