//! The pid-file fallback: signals to the process named by a pid file. A
//! signal carries no answer: `reload` and `stop` report delivery (and say
//! so); `upgrade` waits for the verdict the server records next to its pid
//! file; `stop --wait` waits for the process to be gone.

use std::path::Path;
use std::time::{Duration, Instant};

use grace::handoff::{read_status, status_path};

use rustix::process::{kill_process, test_kill_process, Pid, Signal};

use super::Action;
use crate::cli::ClientArgs;
use crate::exit;

const NO_VERDICT: &str =
    "a signal carries no verdict: see its log, or use --control-socket for one";

pub fn run(pid_file: &Path, action: Action, args: &ClientArgs) -> u8 {
    let result = match action {
        Action::Status => status(pid_file, args.json),
        Action::Reload => send(pid_file, Signal::HUP, "SIGHUP", args.json),
        Action::Stop { wait } => send(pid_file, Signal::TERM, "SIGTERM", args.json)
            .and_then(|pid| if wait { wait_gone(pid, args) } else { Ok(pid) }),
        Action::Upgrade => return upgrade(pid_file, args.timeout, args.json),
    };
    match result {
        Ok(_) => exit::OK,
        Err(message) => {
            eprintln!("error: {message}");
            exit::FAILURE
        }
    }
}

fn status(pid_file: &Path, json: bool) -> Result<i32, String> {
    let pid = live_pid(pid_file)?;
    if json {
        println!(r#"{{"ok":true,"reply":"running","pid":{pid},"verdict":null}}"#);
    } else {
        println!(
            "grace is running (pid {pid}); for its generation, phase and last reload use --control-socket"
        );
    }
    Ok(pid.as_raw_nonzero().get())
}

fn send(pid_file: &Path, signal: Signal, name: &str, json: bool) -> Result<i32, String> {
    let pid = live_pid(pid_file)?;
    kill_process(pid, signal)
        .map_err(|e| format!("cannot signal process {}: {e}", pid.as_raw_nonzero()))?;
    let pid = pid.as_raw_nonzero().get();
    if json {
        println!(
            r#"{{"ok":true,"reply":"signaled","signal":"{name}","pid":{pid},"verdict":null}}"#
        );
    } else {
        println!("sent {name} to grace (pid {pid}); {NO_VERDICT}");
    }
    Ok(pid)
}

/// The pid of the grace that owns `pid_file`: never whatever process a stale
/// or foreign pid file names.
fn live_pid(pid_file: &Path) -> Result<Pid, String> {
    let raw = grace::pidfile::owner(pid_file).map_err(|e| e.to_string())?;
    i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("pid file {} holds an invalid pid {raw}", pid_file.display()))
}

/// Polls until the process is gone. Without the control socket there is no
/// drain progress to show, only the wait.
fn wait_gone(pid: i32, args: &ClientArgs) -> Result<i32, String> {
    if !args.json {
        println!("waiting for pid {pid} to exit (drain progress needs --control-socket)");
    }
    let deadline = Instant::now() + args.timeout;
    let target = Pid::from_raw(pid).ok_or("invalid pid")?;
    while Instant::now() < deadline {
        if test_kill_process(target) == Err(rustix::io::Errno::SRCH) {
            if !args.json {
                println!("exited: pid {pid} is gone (its exit status is in its log)");
            }
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "pid {pid} still runs after {}",
        humantime::format_duration(args.timeout)
    ))
}

fn upgrade(pid_file: &Path, timeout: Duration, json: bool) -> u8 {
    let status = status_path(pid_file);
    let before = read_status(&status).map_or(0, |s| s.seq);
    let old = match live_pid(pid_file).and_then(|pid| {
        kill_process(pid, Signal::USR2)
            .map(|()| pid)
            .map_err(|e| e.to_string())
    }) {
        Ok(pid) => pid.as_raw_nonzero().get(),
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
                    if json {
                        println!(r#"{{"ok":true,"reply":"upgraded","pid":{new}}}"#);
                    } else {
                        println!("upgraded: pid {new} serves; pid {old} is draining");
                    }
                    exit::OK
                }
                Err(reason) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"ok": false, "reply": "error", "kind": "upgrade_failed", "message": reason})
                        );
                    }
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
