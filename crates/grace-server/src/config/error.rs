//! Configuration errors a person can act on: which file, where in it, what
//! is wrong.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Embedded => f.write_str("<embedded default config>"),
        }
    }
}

/// A configuration that cannot be used.
///
/// `{}` gives one line, `path:line:column: message`, fit for a log line;
/// `{:#}` adds the offending line with a caret under the spot, for a terminal.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    origin: Origin,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Read(io::Error),
    TooLarge { len: u64, limit: u64 },
    NotUtf8 { offset: usize },
    NotAFile { kind: &'static str },
    Empty,
    Invalid(Invalid),
}

#[derive(Debug)]
struct Invalid {
    message: String,
    span: Option<Range<usize>>,
    text: Arc<str>,
}

impl ConfigError {
    pub fn read(origin: Origin, source: io::Error) -> Self {
        ConfigError {
            origin,
            kind: Kind::Read(source),
        }
    }

    pub fn too_large(origin: Origin, len: u64, limit: u64) -> Self {
        ConfigError {
            origin,
            kind: Kind::TooLarge { len, limit },
        }
    }

    pub fn not_utf8(origin: Origin, offset: usize) -> Self {
        ConfigError {
            origin,
            kind: Kind::NotUtf8 { offset },
        }
    }

    pub fn not_a_file(origin: Origin, kind: &'static str) -> Self {
        ConfigError {
            origin,
            kind: Kind::NotAFile { kind },
        }
    }

    pub fn empty(origin: Origin) -> Self {
        ConfigError {
            origin,
            kind: Kind::Empty,
        }
    }

    pub fn invalid(
        origin: Origin,
        text: Arc<str>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            origin,
            kind: Kind::Invalid(Invalid {
                message: message.into(),
                span,
                text,
            }),
        }
    }

    /// 1-based line and column of the error, when it has a place in the file.
    pub fn position(&self) -> Option<(usize, usize)> {
        match &self.kind {
            Kind::Invalid(Invalid {
                span: Some(span),
                text,
                ..
            }) => Some(line_col(text, span.start)),
            _ => None,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Read(e) => write!(f, "{}: cannot read the config file: {e}", self.origin),
            Kind::TooLarge { len, limit } => write!(
                f,
                "{}: the config file is {len} bytes, more than the limit of {limit} bytes",
                self.origin
            ),
            Kind::NotUtf8 { offset } => write!(
                f,
                "{}: the config file is not valid UTF-8 (first bad byte at offset {offset})",
                self.origin
            ),
            Kind::NotAFile { kind } => write!(
                f,
                "{}: cannot read the config file: it is {kind}, not a regular file",
                self.origin
            ),
            Kind::Empty => write!(
                f,
                "{}: the config file is empty (nothing but blank lines and comments); \
                 refusing to run on defaults by accident",
                self.origin
            ),
            Kind::Invalid(inv) => {
                match self.position() {
                    Some((line, col)) => {
                        write!(f, "{}:{line}:{col}: {}", self.origin, inv.message)?
                    }
                    None => write!(f, "{}: {}", self.origin, inv.message)?,
                }
                if f.alternate() {
                    if let Some(span) = &inv.span {
                        write_snippet(f, &inv.text, span)?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn write_snippet(f: &mut fmt::Formatter<'_>, text: &str, span: &Range<usize>) -> fmt::Result {
    let (line, col) = line_col(text, span.start);
    let Some(source_line) = text.lines().nth(line - 1) else {
        return Ok(());
    };
    let width = text
        .get(span.clone())
        .map_or(1, |s| s.lines().next().unwrap_or("").chars().count().max(1));
    let gutter = line.to_string().len();
    write!(
        f,
        "\n{:gutter$} |\n{line} | {source_line}\n{:gutter$} | {:pad$}{}",
        "",
        "",
        "",
        "^".repeat(width),
        pad = col - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        assert_eq!(line_col("a\nbé c", 6), (2, 4));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn alternate_form_points_at_the_value() {
        let text: Arc<str> = Arc::from("message = \"hi\"\nstatus = 99\n");
        let err = ConfigError::invalid(Origin::Embedded, text, Some(24..26), "bad status");
        assert_eq!(
            err.to_string(),
            "<embedded default config>:2:10: bad status"
        );
        let long = format!("{err:#}");
        assert!(long.ends_with("2 | status = 99\n  |          ^^"), "{long}");
    }
}
