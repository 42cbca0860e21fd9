//! The loader never panics: whatever the bytes or the TOML, it either accepts
//! or returns an error, and the error formats (both forms) without panicking.

use proptest::prelude::*;

use super::*;

fn check(result: Result<Config, ConfigError>) {
    if let Err(e) = result {
        let short = e.to_string();
        let long = format!("{e:#}");
        assert!(!short.is_empty() && long.starts_with(&short));
    }
}

/// Keys grace knows, so generated documents get past "unknown field" often
/// and reach the checks behind it.
const KEYS: &[&str] = &[
    "message",
    "server",
    "routes",
    "limits",
    "listen",
    "shutdown_timeout",
    "shutdown_delay",
    "idle_grace",
    "upgrade_timeout",
    "path",
    "status",
    "body",
    "headers",
    "delay",
    "header_read_timeout",
    "idle_timeout",
    "write_timeout",
    "max_header_size",
    "max_connections",
    "http2_max_concurrent_streams",
    "http2_max_pending_reset_streams",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
        1 => ".{0,6}",
    ]
}

fn scalar() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        (-2000i64..70000).prop_map(toml::Value::Integer),
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<f64>().prop_map(toml::Value::Float),
        ".{0,12}".prop_map(toml::Value::String),
        "[0-9]{1,5}(ms|s|m|h|d|x)?".prop_map(toml::Value::String),
        "(/|[a-z])[a-z/?# ]{0,8}".prop_map(toml::Value::String),
        "(\\[::1\\]|127\\.0\\.0\\.1|0\\.0\\.0\\.0|[a-z]{1,5})(:[0-9]{0,6})?"
            .prop_map(toml::Value::String),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(toml::Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = toml::Table> {
    proptest::collection::btree_map(key(), value(), 0..6).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &bytes).unwrap();
        check(Source::File(path).load());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(.|\n){0,300}") {
        check(parse(&text, Origin::Embedded));
    }

    #[test]
    fn arbitrary_toml_never_panics(doc in document()) {
        if let Ok(text) = toml::to_string(&doc) {
            check(parse(&text, Origin::Embedded));
        }
    }
}
