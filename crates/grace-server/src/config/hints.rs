//! Making serde's messages actionable: "did you mean" for unknown keys (serde
//! names the unknown field and lists the expected ones; a near miss gets the
//! closest suggested), and the key a wrongly typed value belongs to (serde
//! says only "invalid type: integer `5`, expected a string").

use std::ops::Range;

/// `message` with the dotted key of the value at `span` appended, when the
/// message is about a value and does not say whose.
pub fn name_the_key(text: &str, span: Option<&Range<usize>>, message: String) -> String {
    let about_a_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|p| message.starts_with(p));
    if !about_a_value {
        return message;
    }
    match span.and_then(|s| key_at(text, s.start)) {
        Some(key) => format!("{message} (key `{key}`)"),
        None => message,
    }
}

/// The dotted key (`server.shutdown_timeout`) whose value starts at
/// `offset`, read off the line and the nearest table header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = before[line_start..].split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '{' || c == '[') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|line| {
        let line = line.trim();
        let name = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
        name.or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
            .map(str::trim)
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// `message` with a suggestion appended when it is serde's unknown-field
/// error and one expected key is close to the unknown one.
pub fn did_you_mean(message: &str) -> String {
    match suggestion(message) {
        Some(key) => format!("{message}; did you mean `{key}`?"),
        None => message.to_owned(),
    }
}

fn suggestion(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    // "expected one of `a`, `b`", "expected `a` or `b`", "expected `a`".
    let (_, expected) = rest.split_once("expected")?;
    let candidates = expected.split('`').skip(1).step_by(2);
    candidates
        .map(|key| (distance(unknown, key), key))
        .filter(|(d, key)| *d > 0 && *d <= max_distance(key))
        .min_by_key(|(d, _)| *d)
        .map(|(_, key)| key)
}

/// A third of the key's length, at least one: `mesage` → `message`, but
/// `foo` suggests nothing for `body`.
fn max_distance(key: &str) -> usize {
    (key.chars().count() / 3).max(1)
}

/// Optimal string alignment distance: Levenshtein plus swapped neighbours
/// (`shutdown_tiemout`), the commonest typo.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_the_closest_key() {
        assert_eq!(
            did_you_mean(
                "unknown field `shutdown_timout`, expected one of `listen`, `shutdown_timeout`, `shutdown_delay`"
            ),
            "unknown field `shutdown_timout`, expected one of `listen`, `shutdown_timeout`, \
             `shutdown_delay`; did you mean `shutdown_timeout`?"
        );
        assert_eq!(
            suggestion("unknown field `sever`, expected one of `message`, `server`, `routes`"),
            Some("server")
        );
        assert_eq!(
            suggestion("unknown field `shutdown_tiemout`, expected `shutdown_timeout` or `x`"),
            Some("shutdown_timeout")
        );
        assert_eq!(
            suggestion("unknown field `Path`, expected `path`"),
            Some("path")
        );
    }

    #[test]
    fn wrong_types_name_their_key() {
        let text = "message = \"m\"\n[server]\nshutdown_timeout = 5\n";
        let at = text.find('5').unwrap();
        assert_eq!(
            name_the_key(
                text,
                Some(&(at..at + 1)),
                "invalid type: integer `5`, expected a string".into()
            ),
            "invalid type: integer `5`, expected a string (key `server.shutdown_timeout`)"
        );
        assert_eq!(
            name_the_key(
                "message = 42\n",
                Some(&(10..12)),
                "invalid type: integer `42`".into()
            ),
            "invalid type: integer `42` (key `message`)"
        );
        assert_eq!(
            name_the_key("x", None, "unknown field `x`".into()),
            "unknown field `x`"
        );
    }

    #[test]
    fn far_misses_and_other_errors_get_none() {
        assert_eq!(
            suggestion("unknown field `colour`, expected one of `message`, `server`, `routes`"),
            None
        );
        assert_eq!(
            suggestion("invalid type: integer `5`, expected a string"),
            None
        );
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
