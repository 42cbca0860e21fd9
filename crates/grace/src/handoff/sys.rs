//! Every `unsafe` block of grace: taking ownership of inherited descriptors,
//! the few async-signal-safe steps a child runs between fork and exec, the
//! record locks behind the pid file, and the calls that keep reloads from
//! weighing on the rest of the process (thread priority, the allocator).

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, PoisonError};

/// Takes ownership of `raw`, a descriptor this process inherited at exec,
/// and marks it close-on-exec so that it leaks into no later child.
///
/// Safe whatever number it is given, because ownership is checked rather
/// than assumed: a descriptor that crossed exec has close-on-exec clear
/// (else exec would have closed it), while every descriptor Rust code in
/// this process opens (std, tokio, rustix, grace itself) has it set at
/// creation, atomically, and claiming sets it. So a descriptor with the flag
/// clear was inherited and is owned by nobody yet, and a number is claimed
/// at most once. The standard streams, inherited too, belong to std.
///
/// The one way around it is foreign code that opens descriptors without
/// close-on-exec: such a descriptor could be claimed. That code would leak
/// it into every child, a bug of its own.
///
/// # Errors
/// `EBADF` when `raw` is not open or is a standard stream;
/// [`io::ErrorKind::AlreadyExists`] when something in this process owns it.
pub(crate) fn claim_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    // Two threads claiming the same number must not both see the flag clear.
    static CLAIMING: Mutex<()> = Mutex::new(());
    if raw <= libc::STDERR_FILENO {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let _claiming = CLAIMING.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: `raw` is only borrowed for these fcntl calls, which fail with
    // EBADF instead of touching anything when the descriptor is not open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let flags = rustix::io::fcntl_getfd(borrowed)?;
    if flags.contains(rustix::io::FdFlags::CLOEXEC) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "owned in this process already (close-on-exec is set): not an inherited descriptor",
        ));
    }
    rustix::io::fcntl_setfd(borrowed, flags | rustix::io::FdFlags::CLOEXEC)?;
    // SAFETY: the descriptor is open (fcntl succeeded) and nothing in this
    // process owns it: close-on-exec was clear, which no descriptor opened
    // here has, and setting it under the lock makes any later claim fail.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A request for [`set_record_lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordLock {
    Write,
    Unlock,
}

/// Sets or clears a POSIX record lock (`F_SETLK`) on `len` bytes of the file
/// from `start`; `len` 0 reaches past any end. rustix offers only whole-file
/// open-file-description locks, whose holder `F_GETLK` cannot name.
///
/// Record locks belong to the process: they go when it exits, children do
/// not inherit them, and closing *any* descriptor of the file drops them all.
///
/// # Errors
/// [`io::ErrorKind::WouldBlock`] when another process holds a conflicting
/// lock; what the OS said otherwise.
pub(crate) fn set_record_lock(
    fd: BorrowedFd<'_>,
    lock: RecordLock,
    start: u64,
    len: u64,
) -> io::Result<()> {
    let offset =
        |n: u64| libc::off_t::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    // SAFETY: `flock` is plain data (integers only); all zeroes is a valid
    // value, and the fields that matter are set below.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = match lock {
        RecordLock::Write => libc::F_WRLCK,
        RecordLock::Unlock => libc::F_UNLCK,
    } as _;
    request.l_whence = libc::SEEK_SET as _;
    request.l_start = offset(start)?;
    request.l_len = offset(len)?;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow, and
    // F_SETLK only reads the `flock` we pass by pointer, which outlives the
    // call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &request) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // POSIX allows either for "held by another process".
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Err(io::ErrorKind::WouldBlock.into()),
        _ => Err(e),
    }
}

/// What the child does between fork and exec, prepared in the parent so that
/// the child allocates nothing (after fork in a multi-threaded process, only
/// async-signal-safe calls are allowed).
pub(crate) struct ExecPlan {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` followed by room for the pid, filled in by the child.
    listen_pid: Box<[u8; 32]>,
    /// (source, target): dup2 each source onto its target number.
    moves: Vec<(RawFd, RawFd)>,
}

// SAFETY: the raw pointers point into the CStrings and the boxed buffer owned
// by the same plan; moving the plan moves no heap data, so they stay valid,
// and nothing reads them but the single-threaded child after fork.
unsafe impl Send for ExecPlan {}
// SAFETY: as above; the plan is never shared between threads in practice,
// `Sync` is only required by `pre_exec`'s signature.
unsafe impl Sync for ExecPlan {}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl ExecPlan {
    /// `program` runs with `argv` and `env` (plus `LISTEN_PID` set to its own
    /// pid), after each `(source, target)` in `moves` was duplicated onto its
    /// target number. Sources must not be targets.
    pub(crate) fn new(
        program: &OsStr,
        argv: &[&OsStr],
        env: &[(&OsStr, &OsStr)],
        moves: Vec<(RawFd, RawFd)>,
    ) -> io::Result<ExecPlan> {
        let nul = |s: &[u8]| {
            CString::new(s).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NUL byte in an argument or the environment",
                )
            })
        };
        let program = nul(program.as_bytes())?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| nul(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                nul(&kv)
            })
            .collect::<io::Result<_>>()?;
        let mut listen_pid = Box::new([0u8; 32]);
        listen_pid[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(listen_pid.as_ptr().cast());
        envp_ptrs.push(std::ptr::null());
        if moves
            .iter()
            .any(|(src, _)| moves.iter().any(|(_, dst)| src == dst))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a source descriptor is also a target",
            ));
        }
        Ok(ExecPlan {
            program,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            listen_pid,
            moves,
        })
    }

    /// Runs in the child after fork: moves the descriptors into place, writes
    /// our pid into `LISTEN_PID`, and execs. Returns only on failure.
    fn exec(&mut self) -> io::Error {
        for &(src, dst) in &self.moves {
            // SAFETY: dup2 is async-signal-safe; both numbers are plain ints.
            // The target comes out without close-on-exec, which is the point.
            if unsafe { libc::dup2(src, dst) } < 0 {
                return io::Error::last_os_error();
            }
        }
        // SAFETY: getpid is async-signal-safe and cannot fail.
        let pid = unsafe { libc::getpid() };
        write_decimal(&mut self.listen_pid[LISTEN_PID_PREFIX.len()..], pid as u32);
        // SAFETY: execve is async-signal-safe; program, argv and envp are
        // NUL-terminated strings in null-terminated arrays that live in this
        // plan, which outlives the call (on success the image is replaced).
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            );
        }
        io::Error::last_os_error()
    }

    /// Arranges for `command` to run this plan between fork and exec.
    pub(crate) fn install(mut self, command: &mut tokio::process::Command) {
        // SAFETY: the closure only calls async-signal-safe functions (dup2,
        // getpid, execve) and writes into memory allocated before the fork;
        // it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || Err(self.exec()));
        }
    }
}

/// Writes `n` in decimal followed by NUL into `buf`, without allocating.
fn write_decimal(buf: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
}

/// Gives the pages of freed heap memory back to the system, in every malloc
/// arena. glibc keeps freed memory for reuse, and a few live blocks near the
/// top of a heap pin everything below them: a config's parse frees about a
/// hundred times the file's size in temporaries, which would otherwise stay
/// in RSS after every reload. Takes a few milliseconds on a large heap: call
/// it off the async workers.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only rearranges the
    // allocator's own free lists (under its arena locks); it is safe to call
    // from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return freed memory by themselves, or offer no call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

/// Sets the nice value of the calling thread alone (Linux keeps one per
/// thread; POSIX would set the whole process's). Raising it needs no
/// privilege. Threads this one starts inherit it.
///
/// # Errors
/// What the OS said.
#[cfg(target_os = "linux")]
pub(crate) fn lower_thread_priority(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain integers; `PRIO_PROCESS` with a thread id names that
    // thread on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the nice value belongs to the process: leave it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_thread_priority(_nice: i32) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_without_allocation() {
        let mut buf = [0xffu8; 12];
        write_decimal(&mut buf, 4_294_967_295);
        assert_eq!(&buf[..11], b"4294967295\0");
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }

    #[test]
    fn claiming_a_closed_descriptor_fails() {
        assert!(claim_inherited(-1).is_err());
        assert!(claim_inherited(1_000_000).is_err());
    }

    /// Claims `raw` expecting a refusal; a wrongful success is forgotten, not
    /// closed, so that the real owner's descriptor survives the failed test.
    fn refused(raw: RawFd) -> io::Error {
        match claim_inherited(raw) {
            Ok(second_owner) => {
                std::mem::forget(second_owner);
                panic!("descriptor {raw} was claimed while something else owns it");
            }
            Err(e) => e,
        }
    }

    #[test]
    fn a_descriptor_this_process_opened_cannot_be_claimed() {
        let file = std::fs::File::open("/dev/null").unwrap();
        refused(file.as_raw_fd());
        // The owner's descriptor still works.
        rustix::fs::fstat(&file).unwrap();
    }

    #[test]
    fn an_inherited_descriptor_is_claimed_once() {
        // dup(2) leaves close-on-exec clear, as a descriptor that crossed
        // exec has it.
        let file = std::fs::File::open("/dev/null").unwrap();
        let inherited = std::os::fd::IntoRawFd::into_raw_fd(rustix::io::dup(&file).unwrap());
        let owned = claim_inherited(inherited).unwrap();
        let flags = rustix::io::fcntl_getfd(&owned).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        refused(inherited);
    }

    #[test]
    fn the_standard_streams_are_never_claimed() {
        for raw in 0..3 {
            refused(raw);
        }
    }
}
