//! The server's configuration: read, parsed as written (`raw`), then checked
//! and settled into a [`Config`] that the request path uses as is.

mod app;
mod check;
mod error;
mod hints;
mod listen;
#[cfg(test)]
mod proptests;
mod raw;
mod routes;
mod tls;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use app::{parse_ready, parse_signal};
use check::Checker;
pub use error::{ConfigError, Origin};
use grace::Limits;
use raw::RawConfig;
pub use routes::Routes;
pub use tls::TlsSettings;

/// The embedded default: the seed article's server.
const DEFAULT: &str = include_str!("default.toml");

/// Config files larger than this are refused before parsing.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Paths grace answers itself; routes may not take them.
pub const RESERVED_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Where metrics are served: on the main listeners unless `admin_listen` is
/// set, and then reserved there too.
pub const METRICS_PATH: &str = "/metrics";

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    /// Exact path → response. `/` comes from `message` when it is set.
    pub routes: Routes,
    /// What one client may cost: `[limits]`.
    pub limits: Limits,
    /// `[server.tls]`, with its certificates loaded and checked.
    pub tls: Option<TlsSettings>,
    /// `[app]`: a program to supervise (`grace run`) instead of serving
    /// routes.
    pub app: Option<grace::supervise::AppSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub shutdown_timeout: Duration,
    pub shutdown_delay: Duration,
    pub idle_grace: Duration,
    pub upgrade_timeout: Duration,
    /// Reload when the config file changes.
    pub watch: bool,
    pub watch_debounce: Duration,
    /// The control socket's path; taken at start only.
    pub control_socket: Option<PathBuf>,
    /// Where `/metrics` is served instead of the main listeners; taken at
    /// start only.
    pub admin_listen: Option<SocketAddr>,
    /// Whether `/metrics` is served and requests are tallied; taken at start
    /// only.
    pub metrics: bool,
}

/// Where to read the configuration from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl Source {
    pub fn origin(&self) -> Origin {
        match self {
            Source::File(path) => Origin::File(path.clone()),
            Source::Embedded => Origin::Embedded,
        }
    }

    /// Reads and checks the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let text = match self {
            Source::Embedded => DEFAULT.to_owned(),
            Source::File(path) => read_file(path, &self.origin())?,
        };
        parse(&text, self.origin())
    }
}

fn read_file(path: &PathBuf, origin: &Origin) -> Result<String, ConfigError> {
    // Before opening: opening a FIFO blocks until someone writes to it, and
    // a directory opens fine only to fail on read with a vaguer message.
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::read(origin.clone(), e))?;
    if !meta.is_file() {
        return Err(ConfigError::not_a_file(origin.clone(), file_kind(&meta)));
    }
    let file = std::fs::File::open(path).map_err(|e| ConfigError::read(origin.clone(), e))?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough to know it is too large, without
    // reading a huge file into memory.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::read(origin.clone(), e))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(ConfigError::too_large(origin.clone(), len, MAX_FILE_SIZE));
    }
    String::from_utf8(bytes)
        .map_err(|e| ConfigError::not_utf8(origin.clone(), e.utf8_error().valid_up_to()))
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// True when `text` has nothing but blank lines and comments: a file
/// truncated by a failed deploy must not silently mean "all defaults".
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#'))
}

/// Parses and checks `text`.
pub fn parse(text: &str, origin: Origin) -> Result<Config, ConfigError> {
    // Files are refused over this before they are read; text given here
    // directly is held to the same, which keeps offsets into it small.
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(ConfigError::too_large(
            origin,
            text.len() as u64,
            MAX_FILE_SIZE,
        ));
    }
    if is_blank(text) {
        return Err(ConfigError::empty(origin));
    }
    let text: Arc<str> = Arc::from(text);
    let raw: RawConfig = toml::from_str(&text).map_err(|e| {
        ConfigError::invalid(
            origin.clone(),
            text.clone(),
            e.span(),
            hints::name_the_key(
                &text,
                e.span().as_ref(),
                // One line: the message ends up in a log line.
                hints::did_you_mean(&e.message().trim_end().replace('\n', ": ")),
            ),
        )
    })?;
    Checker::new(origin, text).config(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Origin::File("c.toml".into()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_embedded_default_is_the_articles_server() {
        let config = Source::Embedded.load().unwrap();
        assert_eq!(config.routes.get("/").unwrap().body, "Before hot reload");
        assert_eq!(config.server.listen, vec!["0.0.0.0:8080".parse().unwrap()]);
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.server.shutdown_delay, Duration::ZERO);
    }

    #[test]
    fn a_full_config_is_settled() {
        let config = parse(
            r#"
message = "hi"
[server]
listen = "127.0.0.1:0"
shutdown_delay = "2s"
[[routes]]
path = "/slow"
status = 201
body = "done"
delay = "250ms"
headers = { "x-app" = "grace", "content-type" = "application/json" }
"#,
            Origin::Embedded,
        )
        .unwrap();
        assert_eq!(config.server.listen, vec!["127.0.0.1:0".parse().unwrap()]);
        let slow = config.routes.get("/slow").unwrap();
        assert_eq!(slow.status, 201);
        assert_eq!(slow.delay, Duration::from_millis(250));
        assert_eq!(slow.headers["x-app"], "grace");
        assert_eq!(slow.headers["content-type"], "application/json");
        assert_eq!(
            config.routes.get("/").unwrap().headers["content-type"],
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn an_unshared_copy_answers_the_same_from_buffers_of_its_own() {
        let config = parse(
            "message = \"hi\"\n[[routes]]\npath = \"/a\"\nstatus = 201\nbody = \"a\"\n\
             headers = { \"x-app\" = \"grace\", \"content-type\" = \"application/json\" }\n",
            Origin::Embedded,
        )
        .unwrap();
        let copy = config.routes.unshared();
        for path in ["/", "/a"] {
            let (original, copied) = (config.routes.get(path).unwrap(), copy.get(path).unwrap());
            assert_eq!(copied.status, original.status);
            assert_eq!(copied.body, original.body);
            assert_eq!(copied.headers, original.headers);
            assert_ne!(
                copied.body.as_ptr(),
                original.body.as_ptr(),
                "{path}: body shared"
            );
        }
        let value = |routes: &Routes| {
            routes.get("/a").unwrap().headers["x-app"]
                .as_bytes()
                .as_ptr()
        };
        assert_ne!(
            value(&copy),
            value(&config.routes),
            "a header value is shared"
        );
        assert!(copy.get("/b").is_none());
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        assert_eq!(
            err("message = \"a\"\nbogus = 1\n"),
            "c.toml:2:1: unknown field `bogus`, expected one of `message`, `server`, `routes`, `limits`, `app`"
        );
        assert_eq!(
            err("[server]\nlisten = [\"127.0.0.1\"]\n"),
            "c.toml:2:11: invalid listen address \"127.0.0.1\" (it has no port): expected IP:PORT, \
             such as \"0.0.0.0:8080\" or \"[::1]:8080\""
        );
        assert!(err("[[routes]]\npath = \"/a\"\nstatus = 99\n")
            .starts_with("c.toml:3:10: invalid status 99"));
        assert!(err("[[routes]]\npath = \"/a\"\nstatus = \"x\"\n")
            .starts_with("c.toml:3:10: invalid type"));
        assert!(err("[server]\nshutdown_timeout = \"soon\"\n")
            .starts_with("c.toml:2:20: invalid duration \"soon\""));
        assert!(err("[server]\nshutdown_timeout = \"0s\"\n").contains("out of range"));
        assert!(err("[server]\nlisten = []\n").contains("`listen` is empty"));
        assert!(
            err("[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n").contains("given twice")
        );
        assert!(err("[[routes]]\npath = \"x\"\n").contains("must start with \"/\""));
        assert!(err("[[routes]]\npath = \"/healthz\"\n").contains("reserved"));
        assert!(err("[[routes]]\npath = \"/metrics\"\n").contains("admin_listen"));
        assert!(parse(
            "[server]\nadmin_listen = \"127.0.0.1:9\"\n[[routes]]\npath = \"/metrics\"\n",
            Origin::Embedded
        )
        .is_ok());
        assert!(err("[server]\nadmin_listen = \"nope\"\n")
            .starts_with("c.toml:2:16: invalid admin_listen"));
        assert!(err("[server]\ncontrol_socket = \"\"\n").contains("`control_socket` is empty"));
        let long = format!("[server]\ncontrol_socket = \"/{}\"\n", "s".repeat(107));
        assert!(err(&long).contains("`control_socket` is 108 bytes long"));
        assert!(
            err("[[routes]]\npath = \"/a\"\nheaders = { \"bad name\" = \"v\" }\n")
                .starts_with("c.toml:3:13: invalid header name")
        );
        assert!(
            err("[[routes]]\npath = \"/a\"\nheaders = { \"x\" = \"a\\u0001\" }\n")
                .contains("invalid value for header")
        );
        assert!(err("message = \"m\"\n[[routes]]\npath = \"/\"\n")
            .starts_with("c.toml:3:8: duplicate route \"/\""));
        assert!(
            err("[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/a\"\n")
                .starts_with("c.toml:4:8: duplicate route")
        );
        assert!(err("message = \n").starts_with("c.toml:1:"));
    }
}
