//! "Did you mean" for unknown keys: serde names the unknown field and lists
//! the expected ones; a near miss (a typo) gets the closest one suggested.

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
    for j in 0..=b.len() {
        d[0][j] = j;
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
        assert_eq!(suggestion("unknown field `Path`, expected `path`"), Some("path"));
    }

    #[test]
    fn far_misses_and_other_errors_get_none() {
        assert_eq!(
            suggestion("unknown field `colour`, expected one of `message`, `server`, `routes`"),
            None
        );
        assert_eq!(suggestion("invalid type: integer `5`, expected a string"), None);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
