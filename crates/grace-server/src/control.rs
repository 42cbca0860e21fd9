//! `grace reload`, `grace stop` and `grace upgrade`: signals to the process
//! named by a pid file. A signal carries no answer: `reload` and `stop`
//! report delivery; `upgrade` waits for the verdict the server records next
//! to its pid file.

use std::path::Path;
use std::time::{Duration, Instant};

use grace::handoff::{read_status, status_path};

use rustix::process::{kill_process, test_kill_process, Pid, Signal};

use crate::exit;

pub fn send(pid_file: &Path, signal: Signal, name: &str) -> u8 {
    match deliver(pid_file, signal) {
        Ok(pid) => {
            println!("sent {name} to grace (pid {pid}); see its log for the outcome");
            exit::OK
        }
        Err(message) => {
            eprintln!("error: {message}");
            exit::FAILURE
        }
    }
}

fn deliver(pid_file: &Path, signal: Signal) -> Result<i32, String> {
    let raw = grace::pidfile::read(pid_file)
        .map_err(|e| format!("cannot read pid file {}: {e}", pid_file.display()))?;
    let pid = i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("pid file {} holds an invalid pid {raw}", pid_file.display()))?;
    test_kill_process(pid).map_err(|e| {
        if e == rustix::io::Errno::SRCH {
            format!(
                "stale pid file {}: no process {raw} is running",
                pid_file.display()
            )
        } else {
            format!("cannot signal process {raw}: {e}")
        }
    })?;
    kill_process(pid, signal).map_err(|e| format!("cannot signal process {raw}: {e}"))?;
    Ok(pid.as_raw_nonzero().get())
}

pub fn upgrade(pid_file: &Path, timeout: Duration) -> u8 {
    let status = status_path(pid_file);
    let before = read_status(&status).map_or(0, |s| s.seq);
    let old = match deliver(pid_file, Signal::USR2) {
        Ok(pid) => pid,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::FAILURE;
        }
    };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(verdict) = read_status(&status).filter(|s| s.seq > before) {
            return match verdict.result {
                Ok(new) => {
                    println!("upgraded: pid {new} serves; pid {old} is draining");
                    exit::OK
                }
                Err(reason) => {
                    eprintln!("error: upgrade failed: {reason}; pid {old} keeps serving");
                    exit::FAILURE
                }
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "error: no upgrade verdict from pid {old} within {}; see its log",
        humantime::format_duration(timeout)
    );
    exit::FAILURE
}
