//! Log output: one line per event, for people (`text`) or machines (`json`).
//!
//! Lines go through a bounded queue to a thread of their own, never written
//! from the threads that serve: a stderr nobody reads (a full pipe, a stuck
//! terminal, a slow log shipper) must not stop the server. When the queue is
//! full, lines are dropped and counted, and the count is logged once the
//! output moves again.
//!
//! One event is one line in both formats: JSON escapes what it quotes, and
//! the text format escapes control characters in every field (see
//! [`EscapedFields`]).

use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Lines queued for stderr before new ones are dropped.
const QUEUE_LINES: usize = 4096;

/// The log writer; flushes what is queued (waiting at most a second) when
/// dropped, so keep it until exit.
pub struct Log {
    _flush: WorkerGuard,
    dropped: ErrorCounter,
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat) -> Log {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, flush) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("grace-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.fmt_fields(EscapedFields::default()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Log {
        _flush: flush,
        dropped,
    }
}

impl Log {
    /// Reports dropped lines, at most every few seconds, from a task on the
    /// current runtime.
    pub fn report_dropped(&self) {
        let dropped = self.dropped.clone();
        tokio::spawn(async move {
            let mut reported = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                reported = report(&dropped, reported);
            }
        });
    }

    /// Reports the lines dropped since start, one last time, before exit.
    ///
    /// The report goes through the same queue: right after a burst the
    /// queue may still be full, and the report would be dropped with the
    /// rest. It is tried again while the writer drains the queue, for up to
    /// a second (the time the writer gets to flush at exit anyway).
    pub fn report_final(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut own = 0;
        loop {
            let total = self.dropped.dropped_lines();
            if total == own {
                return;
            }
            warn_dropped(total - own);
            if self.dropped.dropped_lines() == total || Instant::now() >= deadline {
                return;
            }
            // That line was dropped too: it does not count as the server's.
            own += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn report(dropped: &ErrorCounter, reported: usize) -> usize {
    let total = dropped.dropped_lines();
    if total > reported {
        warn_dropped(total);
    }
    total
}

fn warn_dropped(total: usize) {
    tracing::warn!(
        dropped_lines = total,
        "log lines dropped: stderr did not keep up (the server kept serving)"
    );
}

/// The text format's fields, with control characters escaped as Rust
/// writes them (`\n`, `\r`, `\u{1b}`).
///
/// Values come from outside the server: a config file (a listen address
/// quoted in a rejected reload), a peer, a path. A line break in one would
/// start a line the reader takes for an event of its own; a carriage return
/// or an escape sequence would hide text on a terminal. The default
/// formatter escapes only ANSI escapes, and only in the message.
///
/// The escaping sits under the default formatter, whose own styling would be
/// escaped with the rest, so field names lose their italics on a terminal
/// (levels and timestamps keep their colours: the event format draws them).
#[derive(Default)]
struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut escaped = Escaped(&mut writer);
        self.0.format_fields(Writer::new(&mut escaped), fields)
    }
}

/// Writes through to `W`, escaping control characters.
struct Escaped<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let mut out = String::new();
        write!(Escaped(&mut out), "a\nb\r\u{1b}[2K\u{85}é\t\"q\"").unwrap();
        assert_eq!(out, "a\\nb\\r\\u{1b}[2K\\u{85}é\\t\"q\"");
    }
}
