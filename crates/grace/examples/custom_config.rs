//! A configuration type of your own, with its own validation: a rejected
//! reload keeps the previous configuration serving, and says why.
//!
//! ```sh
//! printf 'greeting = "hello"\nmax_len = 16\nshutdown_timeout_secs = 10\n' > app.toml
//! cargo run --example custom_config -- app.toml 127.0.0.1:3000
//! ```

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{service::service_fn, Response};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConfig {
    greeting: String,
    max_len: usize,
    shutdown_timeout_secs: u64,
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    #[error("greeting is {len} bytes, more than max_len = {max}")]
    TooLong { len: usize, max: usize },
}

fn load(path: &str) -> Result<AppConfig, ConfigError> {
    let config: AppConfig = toml::from_str(&std::fs::read_to_string(path)?)?;
    if config.greeting.len() > config.max_len {
        return Err(ConfigError::TooLong {
            len: config.greeting.len(),
            max: config.max_len,
        });
    }
    Ok(config)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "app.toml".into());
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()?;

    let outcome = grace::Server::new(move || load(&path))
        .listen(addr)
        .drain_settings(|config: &AppConfig| grace::DrainSettings {
            timeout: Duration::from_secs(config.shutdown_timeout_secs),
            ..Default::default()
        })
        .run_blocking(|config, _shutdown| {
            service_fn(move |_request| {
                let body = Bytes::from(config.load().greeting.clone());
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            })
        })?;
    std::process::exit(if outcome.is_clean() { 0 } else { 75 });
}
