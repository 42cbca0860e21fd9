//! `[app]`: the program `grace run` supervises instead of serving routes.
//!
//! ```toml
//! [app]
//! command = ["gunicorn", "--workers", "2", "--no-control-socket", "app:wsgi"]
//! ready = "notify"             # or "delay:2s"
//! ready_timeout = "30s"
//! stop_signal = "TERM"
//! stop_timeout = "30s"
//! restart_backoff = "100ms"    # doubled per crash in a row...
//! restart_backoff_max = "10s"  # ...up to this
//! env = { PYTHONUNBUFFERED = "1" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use grace::supervise::{AppSpec, Backoff, Readiness};

use super::{Checker, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub command: Spanned<Vec<Spanned<String>>>,
    pub ready: Option<Spanned<String>>,
    pub ready_timeout: Option<Spanned<String>>,
    pub stop_signal: Option<Spanned<String>>,
    pub stop_timeout: Option<Spanned<String>>,
    pub restart_backoff: Option<Spanned<String>>,
    pub restart_backoff_max: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// `notify`, or `delay:DURATION`.
pub fn parse_ready(s: &str) -> Result<Readiness, String> {
    match s.split_once(':') {
        None if s == "notify" => Ok(Readiness::Notify),
        Some(("delay", d)) => humantime::parse_duration(d)
            .map(Readiness::Delay)
            .map_err(|e| format!("\"{d}\": {e}")),
        _ => Err("expected \"notify\" or \"delay:DURATION\" (such as \"delay:2s\")".to_owned()),
    }
}

/// A signal's name, with or without `SIG`, as its number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    use rustix::process::Signal;
    let name = s.strip_prefix("SIG").unwrap_or(s);
    let signal = match name.to_ascii_uppercase().as_str() {
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "WINCH" => Signal::WINCH,
        "KILL" => Signal::KILL,
        _ => {
            return Err(
                "expected a signal name: TERM, INT, QUIT, HUP, USR1, USR2, WINCH or KILL"
                    .to_owned(),
            )
        }
    };
    Ok(signal.as_raw())
}

impl Checker {
    pub(super) fn app(&self, raw: Spanned<RawApp>) -> Result<AppSpec, ConfigError> {
        let raw = raw.into_inner();
        let span = raw.command.span();
        let command: Vec<String> = raw
            .command
            .into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect();
        if command.first().is_none_or(String::is_empty) {
            return Err(self.fail(
                span,
                "`command` is empty: give the program and its arguments, such as [\"gunicorn\", \"app:wsgi\"]",
            ));
        }
        let mut spec = AppSpec::new(command);
        if let Some(ready) = raw.ready {
            spec.ready = parse_ready(ready.get_ref())
                .map_err(|e| self.fail(ready.span(), format!("`ready`: {e}")))?;
        }
        let timeouts = Duration::from_millis(100)..=Duration::from_secs(3600);
        spec.ready_timeout = self.duration(
            raw.ready_timeout,
            spec.ready_timeout,
            timeouts.clone(),
            "ready_timeout",
        )?;
        if let Some(signal) = raw.stop_signal {
            spec.stop_signal = parse_signal(signal.get_ref())
                .map_err(|e| self.fail(signal.span(), format!("`stop_signal`: {e}")))?;
        }
        spec.stop_timeout = self.duration(
            raw.stop_timeout,
            spec.stop_timeout,
            timeouts.clone(),
            "stop_timeout",
        )?;
        let default = Backoff::default();
        spec.backoff = Backoff {
            initial: self.duration(
                raw.restart_backoff,
                default.initial,
                Duration::ZERO..=Duration::from_secs(3600),
                "restart_backoff",
            )?,
            max: self.duration(
                raw.restart_backoff_max,
                default.max,
                timeouts,
                "restart_backoff_max",
            )?,
        };
        for (name, value) in raw.env {
            if name.get_ref().is_empty() || name.get_ref().contains('=') {
                return Err(self.fail(
                    name.span(),
                    "an environment variable's name may not be empty or hold `=`",
                ));
            }
            spec.env
                .push((name.into_inner().into(), value.into_inner().into()));
        }
        Ok(spec)
    }
}
