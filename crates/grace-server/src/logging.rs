//! Log output: one line per event, for people (`text`) or machines (`json`).
//!
//! Lines go through a bounded queue to a thread of their own, never written
//! from the threads that serve: a stderr nobody reads (a full pipe, a stuck
//! terminal, a slow log shipper) must not stop the server. When the queue is
//! full, lines are dropped and counted, and the count is logged once the
//! output moves again.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
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
        LogFormat::Text => builder.init(),
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
