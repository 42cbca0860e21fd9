//! `[[routes]]`: each route checked where it is written, then all of them
//! packed into a few allocations.
//!
//! Packed because a file near the size cap holds tens of thousands of
//! routes. A `String`, a `Bytes` and a `HeaderMap` per route cost hundreds
//! of bytes each, and, scattered among the blocks the TOML parser had just
//! freed, they kept all of that memory resident too: the allocator gives
//! memory back only from the top of a heap. Here a route is 32 bytes in one
//! array, its path and body are ranges of one buffer, and routes that set
//! the same header fields (or none) share one header map: a config often
//! sets one header on every route.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use toml::Spanned;

use super::raw::RawRoute;
use super::{Checker, ConfigError, Server, METRICS_PATH, RESERVED_PATHS};

/// Exact path → response.
#[derive(Clone)]
pub struct Routes {
    /// Every path and body, back to back.
    text: Bytes,
    /// Sorted by path.
    entries: Box<[Entry]>,
    /// Header sets; the first is the default, shared by every route that
    /// sets none of its own.
    headers: Box<[HeaderMap]>,
}

#[derive(Clone, Copy)]
struct Entry {
    path: Slice,
    body: Slice,
    delay_nanos: u64,
    headers: u32,
    status: StatusCode,
}

/// A range of `Routes::text`: u32 is enough, the text is at most the
/// config file's size.
#[derive(Clone, Copy)]
struct Slice {
    start: u32,
    end: u32,
}

impl Slice {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The most text (paths and bodies) routes are copied for each thread with.
pub const PER_THREAD_COPY: usize = 64 * 1024;

/// One route's answer.
pub struct Route<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub delay: Duration,
}

impl Routes {
    pub fn get(&self, path: &str) -> Option<Route<'_>> {
        let at = self
            .entries
            .binary_search_by(|e| self.text[e.path.range()].cmp(path.as_bytes()))
            .ok()?;
        let entry = &self.entries[at];
        Some(Route {
            status: entry.status,
            headers: &self.headers[entry.headers as usize],
            body: self.text.slice(entry.body.range()),
            delay: Duration::from_nanos(entry.delay_nanos),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The routes for one thread to answer from: routes of up to
    /// [`PER_THREAD_COPY`] bytes of text are copied (see
    /// [`unshared`](Self::unshared)); bigger ones are shared, as a copy per
    /// thread would cost more memory than the shared counts cost time.
    pub fn for_one_thread(&self) -> Routes {
        if self.text.len() <= PER_THREAD_COPY {
            self.unshared()
        } else {
            self.clone()
        }
    }

    /// A copy that shares no reference count with this one: its text and
    /// header values are new buffers. A thread serving from its own copy
    /// clones bodies and header values without writing to a counter that
    /// the other threads write too (see `routes::App`).
    pub fn unshared(&self) -> Routes {
        let copy = |map: &HeaderMap| {
            let mut copied = HeaderMap::with_capacity(map.len());
            for (name, value) in map {
                let name = HeaderName::from_bytes(name.as_str().as_bytes())
                    .expect("invariant: a header name is still valid when copied");
                let mut unshared =
                    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
                        .expect("invariant: a header value is still valid when copied");
                unshared.set_sensitive(value.is_sensitive());
                copied.append(name, unshared);
            }
            copied
        };
        Routes {
            text: Bytes::copy_from_slice(&self.text),
            entries: self.entries.clone(),
            // The default set's values are static: no count to share.
            headers: std::iter::once(self.headers[0].clone())
                .chain(self.headers[1..].iter().map(copy))
                .collect(),
        }
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| {
                (
                    String::from_utf8_lossy(&self.text[e.path.range()]),
                    e.status,
                )
            }))
            .finish()
    }
}

/// The header set of every route that sets none: what `message` always had.
fn text_plain() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    headers
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Fields that are the server's to set (RFC 9110 §7.6.1, RFC 9113 §8.2.2):
/// the framing fields, which hyper derives from the body it is given, and
/// the connection-specific (hop-by-hop) ones. Set by a route, they disagree
/// with what is actually sent: `content-length: 0` before a 5-byte body
/// desynchronises a keep-alive connection, and HTTP/2 treats any
/// connection-specific field as a malformed response. `te` is allowed in
/// HTTP/2 only in requests; `proxy-connection` and `keep-alive` are the
/// pre-standard forms RFC 9113 lists too; `http2-settings` belongs to the
/// HTTP/1.1 upgrade to h2c (RFC 7540 §3.2.1). Pseudo-header fields (`:status`
/// and the others) cannot be written as header names at all; they get their
/// own message.
const SERVER_FIELDS: [(&str, &str); 9] = [
    (
        "content-length",
        "it is derived from `body`, and a different value desynchronises the connection",
    ),
    (
        "transfer-encoding",
        "the body's framing is chosen per connection",
    ),
    ("connection", "it is a hop-by-hop field"),
    ("keep-alive", "it is a hop-by-hop field"),
    ("proxy-connection", "it is a hop-by-hop field"),
    ("upgrade", "it is a hop-by-hop field"),
    ("te", "it is a hop-by-hop field, and a request's"),
    (
        "trailer",
        "it announces trailer fields, and routes send none",
    ),
    ("http2-settings", "it is a hop-by-hop field"),
];

/// A checked route, borrowing from the raw one until it is packed.
struct Checked<'r> {
    path: &'r str,
    status: StatusCode,
    headers: Option<HeaderMap>,
    body: &'r str,
    delay: Duration,
}

impl Checker {
    /// The routes, with `message` as `/` when it is set.
    pub(super) fn routes(
        &self,
        message: Option<&Spanned<String>>,
        raw: &[RawRoute],
        server: &Server,
    ) -> Result<Routes, ConfigError> {
        let duplicate = first_duplicate(message.is_some(), raw);
        let mut packed = Packer::with_capacity(message, raw);
        if let Some(message) = message {
            packed.push(Checked {
                path: "/",
                status: StatusCode::OK,
                headers: None,
                body: message.get_ref(),
                delay: Duration::ZERO,
            });
        }
        for (i, raw_route) in raw.iter().enumerate() {
            let span = raw_route.path.span();
            if server.metrics
                && server.admin_listen.is_none()
                && raw_route.path.get_ref() == METRICS_PATH
            {
                return Err(self.fail(
                    span,
                    format!(
                        "route path \"{METRICS_PATH}\" is reserved for grace's metrics; \
                         set `[server] admin_listen` to serve them elsewhere"
                    ),
                ));
            }
            let route = self.route(raw_route)?;
            if duplicate == Some(i) {
                let why = if message.is_some() && route.path == "/" {
                    "`message` already answers \"/\""
                } else {
                    "another route has the same path"
                };
                return Err(self.fail(span, format!("duplicate route \"{}\": {why}", route.path)));
            }
            packed.push(route);
        }
        Ok(packed.finish())
    }

    fn route<'r>(&self, raw: &'r RawRoute) -> Result<Checked<'r>, ConfigError> {
        let path = raw.path.get_ref();
        if let Some(why) = unmatchable(path) {
            return Err(self.fail(raw.path.span(), why));
        }
        if RESERVED_PATHS.contains(&path.as_str()) {
            return Err(self.fail(
                raw.path.span(),
                format!("route path \"{path}\" is reserved for grace's own probe"),
            ));
        }
        let status = self.status(raw.status.as_ref())?;
        let body = match &raw.body {
            Some(body) if !body.get_ref().is_empty() && !can_have_body(status) => {
                return Err(self.fail(
                    body.span(),
                    format!(
                        "a {} response cannot have a body: remove `body` or choose \
                         another status",
                        status.as_u16()
                    ),
                ))
            }
            Some(body) => body.get_ref().as_str(),
            None => "",
        };
        let headers = match &raw.headers {
            None => None,
            Some(raw_headers) => Some(self.headers(raw_headers)?),
        };
        let delay = self.duration(
            raw.delay.clone(),
            Duration::ZERO,
            Duration::ZERO..=Duration::from_secs(3600),
            "delay",
        )?;
        Ok(Checked {
            path,
            status,
            headers,
            body,
            delay,
        })
    }

    fn status(&self, status: Option<&Spanned<i64>>) -> Result<StatusCode, ConfigError> {
        let Some(status) = status else {
            return Ok(StatusCode::OK);
        };
        let code = *status.get_ref();
        u16::try_from(code)
            .ok()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                let why = if (100..200).contains(&code) {
                    " (1xx responses are interim: they never end an exchange)"
                } else {
                    ""
                };
                self.fail(
                    status.span(),
                    format!("invalid status {code}: expected a number from 200 to 599{why}"),
                )
            })
    }

    fn headers(
        &self,
        raw: &std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
    ) -> Result<HeaderMap, ConfigError> {
        let mut headers = HeaderMap::with_capacity(raw.len() + 1);
        for (name, value) in raw {
            if name.get_ref().starts_with(':') {
                return Err(self.fail(
                    name.span(),
                    format!(
                        "header \"{}\" is an HTTP/2 pseudo-header, the server's to set \
                         (the status comes from `status`)",
                        name.get_ref()
                    ),
                ));
            }
            let header = HeaderName::from_bytes(name.get_ref().as_bytes()).map_err(|_| {
                self.fail(
                    name.span(),
                    format!("invalid header name \"{}\"", name.get_ref()),
                )
            })?;
            if let Some((_, why)) = SERVER_FIELDS.iter().find(|(n, _)| *n == header.as_str()) {
                return Err(self.fail(
                    name.span(),
                    format!(
                        "header \"{}\" is the server's to set: {why}",
                        name.get_ref()
                    ),
                ));
            }
            let header_value = field_value(value.get_ref()).ok_or_else(|| {
                self.fail(
                    value.span(),
                    format!(
                        "invalid value for header \"{}\": only visible ASCII characters, \
                         with spaces and tabs between them, are allowed (no control \
                         characters, no non-ASCII text, no space or tab at either end)",
                        name.get_ref()
                    ),
                )
            })?;
            headers.append(header, header_value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
        }
        Ok(headers)
    }
}

/// RFC 9110 §5.5 field-value, strictly: visible ASCII, with spaces and tabs
/// only between visible characters. `obs-text` (bytes above 0x7F) is left
/// out: its meaning is undefined, and clients decode it differently.
fn field_value(value: &str) -> Option<HeaderValue> {
    let visible = |b: u8| (0x21..=0x7e).contains(&b);
    let bytes = value.as_bytes();
    let ends_ok =
        bytes.first().is_none_or(|b| visible(*b)) && bytes.last().is_none_or(|b| visible(*b));
    let all_ok = bytes.iter().all(|&b| visible(b) || b == b' ' || b == b'\t');
    if !(ends_ok && all_ok) {
        return None;
    }
    HeaderValue::from_str(value).ok()
}

/// RFC 9110 §6.4.1: 204 and 304 never have content, and §15.3.6: a server
/// sends none with 205. (1xx never reach here: no route may answer with
/// one.)
fn can_have_body(status: StatusCode) -> bool {
    !matches!(status.as_u16(), 204 | 205 | 304)
}

/// Why no request can ever carry `path` as its path, when none can.
fn unmatchable(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("route path \"{path}\" must start with \"/\""));
    }
    let invalid = |why: String| {
        Some(format!(
            "route path \"{path}\" is not a valid URL path: {why}"
        ))
    };
    for c in path.chars() {
        match c {
            '?' => {
                return invalid("\"?\" starts the query, and routes match the path alone".into())
            }
            '#' => return invalid("\"#\" starts a fragment, which clients never send".into()),
            ' ' => return invalid("it has a space; write it as %20".into()),
            c if c.is_control() => {
                return invalid(format!(
                    "it has a control character ({}), which requests cannot carry",
                    c.escape_default()
                ))
            }
            c if !c.is_ascii() => {
                return invalid(format!(
                    "it has non-ASCII text, which clients percent-encode: write \"{}\"",
                    percent_encode_non_ascii(path)
                ))
            }
            // What http's request-target parser refuses unencoded in a path
            // (the WHATWG path percent-encode set, less `"`, `{` and `}`,
            // which it lets through).
            '<' | '>' | '`' => {
                return invalid(format!(
                    "\"{c}\" must be percent-encoded: write %{:02X}",
                    c as u32
                ))
            }
            _ => {}
        }
    }
    // Anything else the request parser would refuse.
    if path.parse::<http::uri::PathAndQuery>().is_err() {
        return invalid("a request cannot carry it".into());
    }
    None
}

fn percent_encode_non_ascii(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for &b in path.as_bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The index (among `routes`) of the first route whose path an earlier one
/// (or `message`, which is `/`) already has. Found before the routes are
/// checked one by one, so that a duplicate is reported at the same point a
/// set of the paths seen so far would find it, without keeping that set.
fn first_duplicate(message: bool, routes: &[RawRoute]) -> Option<usize> {
    // (path, position): `message` is position 0, route i is i + 1.
    let mut paths: Vec<(&str, usize)> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.path.get_ref().as_str(), i + 1))
        .chain(message.then_some(("/", 0)))
        .collect();
    paths.sort_unstable();
    paths
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| w[1].1 - 1)
        .min()
}

/// Builds `Routes` in allocations of their final size, made once.
struct Packer {
    text: Vec<u8>,
    entries: Vec<Entry>,
    /// Distinct header sets only: routes that set the same fields share one
    /// map, as the routes that set none share the default.
    headers: Vec<HeaderMap>,
    /// A hash of each distinct set → its index in `headers`.
    header_sets: HashMap<u64, u32>,
}

impl Packer {
    fn with_capacity(message: Option<&Spanned<String>>, raw: &[RawRoute]) -> Packer {
        let text = message.map_or(0, |m| 1 + m.get_ref().len())
            + raw
                .iter()
                .map(|r| r.path.get_ref().len() + r.body.as_ref().map_or(0, |b| b.get_ref().len()))
                .sum::<usize>();
        let default = text_plain();
        let header_sets = HashMap::from([(hash_set(&default), 0)]);
        Packer {
            text: Vec::with_capacity(text),
            entries: Vec::with_capacity(raw.len() + usize::from(message.is_some())),
            headers: vec![default],
            header_sets,
        }
    }

    /// The index of `set` in `headers`, added unless an equal set is there.
    fn header_set(&mut self, set: HeaderMap) -> u32 {
        let hash = hash_set(&set);
        if let Some(&at) = self.header_sets.get(&hash) {
            if self.headers[at as usize] == set {
                return at;
            }
        }
        let at = u32::try_from(self.headers.len()).expect("invariant: fewer routes than 2^32");
        self.headers.push(set);
        // When two different sets hash the same, the first keeps the slot
        // and each route with the second stores its own copy: memory, not
        // correctness.
        self.header_sets.entry(hash).or_insert(at);
        at
    }

    fn slice(&mut self, s: &str) -> Slice {
        let offset =
            |n: usize| u32::try_from(n).expect("invariant: the config text is under 4 GiB");
        let start = offset(self.text.len());
        self.text.extend_from_slice(s.as_bytes());
        Slice {
            start,
            end: offset(self.text.len()),
        }
    }

    fn push(&mut self, route: Checked<'_>) {
        let path = self.slice(route.path);
        let body = self.slice(route.body);
        let headers = match route.headers {
            None => 0,
            Some(own) => self.header_set(own),
        };
        self.entries.push(Entry {
            path,
            body,
            // At most an hour (checked), far below u64::MAX nanoseconds.
            delay_nanos: u64::try_from(route.delay.as_nanos()).unwrap_or(u64::MAX),
            headers,
            status: route.status,
        });
    }

    fn finish(self) -> Routes {
        let Packer {
            text,
            mut entries,
            headers,
            header_sets,
        } = self;
        // Freed before the routes' last allocations are made, not among them.
        drop(header_sets);
        // Paths are unique (duplicates were refused): unstable is exact.
        entries.sort_unstable_by(|a, b| text[a.path.range()].cmp(&text[b.path.range()]));
        Routes {
            text: Bytes::from(text),
            entries: entries.into_boxed_slice(),
            headers: headers.into_boxed_slice(),
        }
    }
}

/// A hash of a header set's fields, in order: equal sets built from
/// equal tables hash the same.
fn hash_set(set: &HeaderMap) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for field in set {
        field.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_no_request_can_carry_are_named() {
        assert_eq!(unmatchable("/a/b;c=d"), None);
        assert_eq!(unmatchable("/%7Ba%7D"), None);
        assert!(unmatchable("a").unwrap().contains("must start with \"/\""));
        assert!(unmatchable("/a#b").unwrap().contains("fragment"));
        assert!(unmatchable("/a?b").unwrap().contains("query"));
        assert!(unmatchable("/a b").unwrap().contains("%20"));
        assert!(unmatchable("/a\u{7f}").unwrap().contains("\\u{7f}"));
        assert!(unmatchable("/a\u{85}")
            .unwrap()
            .contains("control character"));
        assert!(unmatchable("/é").unwrap().contains("\"/%C3%A9\""));
        assert!(unmatchable("/<a>").unwrap().contains("%3C"));
    }

    #[test]
    fn field_values_are_visible_ascii_with_inner_blanks() {
        assert!(field_value("").is_some());
        assert!(field_value("a b\tc").is_some());
        assert!(field_value(" a").is_none());
        assert!(field_value("a\t").is_none());
        assert!(field_value("caf\u{e9}").is_none());
        assert!(field_value("a\u{7f}").is_none());
    }

    #[test]
    fn routes_that_set_the_same_fields_share_one_map() {
        let routes = super::super::parse(
            "[[routes]]\npath = \"/a\"\nheaders = { \"x-v\" = \"1\" }\n\
             [[routes]]\npath = \"/b\"\nheaders = { \"x-v\" = \"2\" }\n\
             [[routes]]\npath = \"/c\"\nheaders = { \"x-v\" = \"1\" }\n\
             [[routes]]\npath = \"/d\"\nheaders = { \"content-type\" = \"text/plain; charset=utf-8\" }\n\
             [[routes]]\npath = \"/e\"\n",
            super::super::Origin::Embedded,
        )
        .unwrap()
        .routes;
        // The default, {x-v: 1} and {x-v: 2}; /d sets exactly the default.
        assert_eq!(routes.headers.len(), 3);
        let fields = |path: &str| {
            let headers = routes.get(path).unwrap().headers;
            let v = headers.get("x-v").map(|v| v.to_str().unwrap().to_owned());
            (v, headers["content-type"].to_str().unwrap().to_owned())
        };
        let plain = "text/plain; charset=utf-8".to_owned();
        assert_eq!(fields("/a"), (Some("1".into()), plain.clone()));
        assert_eq!(fields("/b"), (Some("2".into()), plain.clone()));
        assert_eq!(fields("/c"), (Some("1".into()), plain.clone()));
        assert_eq!(fields("/d"), (None, plain.clone()));
        assert_eq!(fields("/e"), (None, plain));
    }

    #[test]
    fn the_first_duplicate_is_the_earliest_second_copy() {
        let routes = |paths: &[&str]| -> Vec<RawRoute> {
            paths
                .iter()
                .map(|p| RawRoute {
                    path: Spanned::new(0..0, (*p).to_owned()),
                    status: None,
                    body: None,
                    headers: None,
                    delay: None,
                })
                .collect()
        };
        assert_eq!(first_duplicate(false, &routes(&["/a", "/b"])), None);
        assert_eq!(
            first_duplicate(false, &routes(&["/a", "/b", "/b", "/a"])),
            Some(2)
        );
        assert_eq!(first_duplicate(true, &routes(&["/a", "/"])), Some(1));
        assert_eq!(first_duplicate(false, &routes(&["/", "/"])), Some(1));
    }
}
