//! Every way a request can fail, and how an error becomes one of them.
//!
//! The drills exist to show lost requests, so the classification must say
//! *how* each was lost: a refused connect means the listener was gone, a
//! reset or an EOF before the response means a connection was cut under a
//! request, a torn response means two config generations were mixed.

use std::error::Error as StdError;
use std::io;

/// One kind of failed request. The order is the order of the report's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The TCP connect was refused: nobody listened.
    ConnectRefused,
    /// The peer reset the connection (RST, or an HTTP/2 stream/connection reset).
    Reset,
    /// The connection closed before a whole response arrived.
    Eof,
    /// No whole response within the request timeout.
    Timeout,
    /// A response whose status is not 2xx.
    Non2xx,
    /// A 2xx response whose body is not the expected one.
    WrongBody,
    /// Body and `x-version` header from different config generations.
    Torn,
    /// Anything else (connect errors other than refusal, protocol errors).
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 8] = [
        FailureKind::ConnectRefused,
        FailureKind::Reset,
        FailureKind::Eof,
        FailureKind::Timeout,
        FailureKind::Non2xx,
        FailureKind::WrongBody,
        FailureKind::Torn,
        FailureKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::ConnectRefused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Eof => "eof",
            FailureKind::Timeout => "timeout",
            FailureKind::Non2xx => "non-2xx",
            FailureKind::WrongBody => "wrong-body",
            FailureKind::Torn => "torn",
            FailureKind::Other => "other",
        }
    }

    /// Classifies an error from connecting.
    pub fn of_connect(e: &io::Error) -> FailureKind {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::ConnectRefused,
            kind => of_io_kind(kind),
        }
    }

    /// Classifies an error from hyper (handshake, request, or body).
    pub fn of_hyper(e: &hyper::Error) -> FailureKind {
        if e.is_incomplete_message() || e.is_canceled() {
            // Canceled: the connection went away with our request queued on
            // it, which for the client is the same loss as an early EOF.
            return FailureKind::Eof;
        }
        if e.is_timeout() {
            return FailureKind::Timeout;
        }
        let mut source: Option<&(dyn StdError + 'static)> = e.source();
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                return of_io_kind(io.kind());
            }
            if let Some(h2) = err.downcast_ref::<h2::Error>() {
                if let Some(io) = h2.get_io() {
                    return of_io_kind(io.kind());
                }
                // RST_STREAM, or a GOAWAY that excluded our stream: the peer
                // refused or cut it; h2 clients do not retry those either.
                return FailureKind::Reset;
            }
            source = err.source();
        }
        FailureKind::Other
    }
}

fn of_io_kind(kind: io::ErrorKind) -> FailureKind {
    match kind {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => FailureKind::Reset,
        io::ErrorKind::UnexpectedEof => FailureKind::Eof,
        io::ErrorKind::TimedOut => FailureKind::Timeout,
        io::ErrorKind::ConnectionRefused => FailureKind::ConnectRefused,
        _ => FailureKind::Other,
    }
}

/// Failure counts, one per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures([u64; FailureKind::ALL.len()]);

impl Failures {
    pub fn add(&mut self, kind: FailureKind) {
        self.0[kind as usize] += 1;
    }

    /// Adds `count` failures of one kind, as a tool that only counts reports them.
    pub fn add_n(&mut self, kind: FailureKind, count: u64) {
        self.0[kind as usize] += count;
    }

    pub fn get(&self, kind: FailureKind) -> u64 {
        self.0[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn merge(&mut self, other: &Failures) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// "none", or the non-zero kinds as `reset=3 eof=1`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = FailureKind::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| format!("{}={}", k.name(), self.get(*k)))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_refusal_is_its_own_kind() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(FailureKind::of_connect(&e), FailureKind::ConnectRefused);
        let e = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(FailureKind::of_connect(&e), FailureKind::Reset);
    }

    #[test]
    fn counts_merge_and_describe_only_what_happened() {
        let mut a = Failures::default();
        assert_eq!(a.describe(), "none");
        a.add(FailureKind::Reset);
        let mut b = Failures::default();
        b.add(FailureKind::Reset);
        b.add(FailureKind::Torn);
        a.merge(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.describe(), "reset=2 torn=1");
    }
}
