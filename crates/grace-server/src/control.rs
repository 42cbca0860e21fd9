//! `grace reload` and `grace stop`: signals to the process named by a pid
//! file. A signal carries no answer, so these report delivery, not outcome.

use std::path::Path;

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
