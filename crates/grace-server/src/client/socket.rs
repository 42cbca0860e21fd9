//! The control-socket client: one request, then the server's reply lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use grace::control::protocol::{ErrorKind, Line, Outcome, ReloadResult, Reply, Request, Status};

use super::progress::Progress;
use super::Action;
use crate::cli::ClientArgs;
use crate::exit;

pub fn run(path: &Path, action: Action, args: &ClientArgs) -> u8 {
    match talk(path, action, args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            exit::FAILURE
        }
    }
}

fn talk(path: &Path, action: Action, args: &ClientArgs) -> Result<u8, String> {
    // Else connect(2) fails with a bare "path must be shorter than SUN_LEN".
    grace::control::check_path(path).map_err(|e| e.to_string())?;
    let stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the control socket {}: {e} (is grace running with --control-socket {}?)",
            path.display(),
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(args.timeout))
        .and_then(|()| stream.set_write_timeout(Some(args.timeout)))
        .map_err(|e| format!("control socket: {e}"))?;
    let request = match action {
        Action::Status => Request::Status {},
        Action::Reload => Request::Reload {},
        Action::Upgrade => Request::Upgrade {},
        Action::Stop { wait } => Request::Stop { wait },
    };
    let mut text = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    text.push('\n');
    (&stream)
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;

    let waiting = matches!(action, Action::Stop { wait: true });
    let mut progress = Progress::new(args.json);
    let mut code = None;
    let mut exited = false;
    for raw in BufReader::new(&stream).lines() {
        let raw = raw.map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "no answer from the server within {}",
                humantime::format_duration(args.timeout)
            ),
            _ => format!("control socket: {e}"),
        })?;
        let line: Line = serde_json::from_str(&raw)
            .map_err(|e| format!("unexpected reply from the server ({e}): {raw}"))?;
        if args.json {
            println!("{raw}");
        }
        let done = match line.reply {
            Reply::Progress(p) => {
                progress.show(&p);
                false
            }
            Reply::Stopping(p) => {
                progress.stopping(&p);
                code = Some(exit::OK);
                !waiting
            }
            Reply::Exited(e) => {
                exited = true;
                progress.finish();
                if !args.json {
                    if e.outcome == Outcome::Drained {
                        println!("exited: drained in {:.1}s", e.elapsed_secs);
                    } else {
                        println!(
                            "exited: forced after {:.1}s; {} request(s) cut",
                            e.elapsed_secs, e.requests_cut
                        );
                    }
                }
                code = Some(if line.ok { exit::OK } else { exit::FAILURE });
                true
            }
            Reply::Error { kind, message } => {
                progress.finish();
                if !args.json {
                    print_error(action, kind, &message);
                }
                code = Some(match kind {
                    ErrorKind::ConfigRejected => exit::CONFIG,
                    _ => exit::FAILURE,
                });
                true
            }
            reply => {
                if !args.json {
                    print_reply(&reply);
                }
                code = Some(exit::OK);
                true
            }
        };
        if done {
            break;
        }
    }
    progress.finish();
    match code {
        None => Err("the server closed the connection without answering; see its log".into()),
        // Waiting, and no exit line: the connection ended without saying how
        // the process ended.
        Some(exit::OK) if waiting && !exited => Err(
            "the server closed the connection before reporting how it exited; see its log".into(),
        ),
        Some(code) => Ok(code),
    }
}

fn print_error(action: Action, kind: ErrorKind, message: &str) {
    match kind {
        ErrorKind::ConfigRejected => eprintln!(
            "error: reload rejected; the previous configuration keeps serving:\n{message}"
        ),
        ErrorKind::ApplyFailed => {
            eprintln!("error: reload not applied; nothing changed: {message}")
        }
        ErrorKind::UpgradeFailed => {
            eprintln!("error: upgrade failed; this process keeps serving: {message}")
        }
        _ => eprintln!("error: {action:?} refused: {message}", action = action),
    }
}

fn print_reply(reply: &Reply) {
    match reply {
        Reply::Status(status) => print_status(status),
        Reply::Reloaded { generation } => {
            println!("reload accepted: generation {generation} serves")
        }
        Reply::Upgraded { pid, elapsed_secs } => println!(
            "upgraded: pid {pid} serves (ready after {elapsed_secs:.1}s); the old process is draining"
        ),
        other => println!("{other:?}"),
    }
}

fn print_status(s: &Status) {
    let uptime = std::time::Duration::from_secs(s.uptime_secs as u64);
    println!(
        "grace pid {}: {}, generation {}, up {}",
        s.pid,
        s.phase,
        s.generation,
        humantime::format_duration(uptime)
    );
    if let Some(path) = &s.config_path {
        println!("config: {path}");
    }
    if let Some(app) = &s.app {
        let pid = app.pid.map_or("none".to_owned(), |p| p.to_string());
        println!(
            "app: pid {pid}, generation {}, {} restarts ({} replaced, {} after a crash), {} failed starts",
            app.generation, app.restarts, app.replaced, app.crash_restarts, app.failed_starts
        );
        if let Some(exit) = &app.last_exit {
            println!("app last exit: {exit}");
        }
    }
    println!(
        "connections: {}, requests in flight: {}",
        s.connections, s.requests
    );
    match &s.last_reload {
        None => println!("last reload: none since start"),
        Some(last) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(last.at.max(0.0));
            let at = humantime::format_rfc3339_seconds(at);
            match (last.result, &last.generation, &last.error) {
                (ReloadResult::Accepted, Some(generation), _) => {
                    println!("last reload: accepted at {at} (generation {generation})")
                }
                (ReloadResult::Accepted, None, _) => println!("last reload: accepted at {at}"),
                (ReloadResult::Rejected, _, Some(error)) => {
                    println!("last reload: rejected at {at}: {error}")
                }
                (ReloadResult::Rejected, _, None) => println!("last reload: rejected at {at}"),
            }
        }
    }
    for cert in &s.certificates {
        let expires = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(cert.not_after).unwrap_or(0));
        println!(
            "certificate {}: {} serial {} expires {}",
            cert.name,
            cert.subject,
            cert.serial,
            humantime::format_rfc3339_seconds(expires)
        );
    }
}
