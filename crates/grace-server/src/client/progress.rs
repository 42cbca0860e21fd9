//! Showing a drain: one live line on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};

use grace::control::protocol::{Phase, Progress as Report};

pub struct Progress {
    tty: bool,
    quiet: bool,
    live: bool,
    last: Option<(Phase, usize, usize)>,
}

impl Progress {
    pub fn new(json: bool) -> Progress {
        Progress {
            tty: std::io::stdout().is_terminal(),
            quiet: json,
            live: false,
            last: None,
        }
    }

    /// The answer to `stop`: the drain started.
    pub fn stopping(&mut self, p: &Report) {
        if self.quiet {
            return;
        }
        println!(
            "stopping: drain started; {} connection(s), {} request(s) in flight, {:.1}s before the rest is cut",
            p.connections, p.requests, p.deadline_secs
        );
        self.last = Some(key(p));
    }

    pub fn show(&mut self, p: &Report) {
        if self.quiet {
            return;
        }
        let text = format!(
            "{}: {} connection(s), {} request(s) remaining, {:.1}s left before the deadline",
            p.phase, p.connections, p.requests, p.deadline_secs
        );
        let mut out = std::io::stdout().lock();
        if self.tty {
            // Rewrite the same line: carriage return, clear to end of line.
            let _ = write!(out, "\r\x1b[2K{text}");
            let _ = out.flush();
            self.live = true;
        } else if self.last.as_ref() != Some(&key(p)) {
            // Plain lines only when something changed: a log, not a ticker.
            let _ = writeln!(out, "{text}");
        }
        self.last = Some(key(p));
    }

    /// Ends the live line, if one is shown.
    pub fn finish(&mut self) {
        if self.live {
            println!();
            self.live = false;
        }
    }
}

fn key(p: &Report) -> (Phase, usize, usize) {
    (p.phase, p.connections, p.requests)
}
