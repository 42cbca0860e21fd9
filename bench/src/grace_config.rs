//! The configuration files the harness gives grace, and how it changes them.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// The body of `/`, the same as the baseline's and nginx's.
pub const MESSAGE: &str = "Before hot reload";

/// One version of grace's configuration.
#[derive(Debug, Clone)]
pub struct GraceConfig {
    /// Served as both the body and the `x-version` header of `/v`, so a
    /// response mixing two generations shows.
    pub version: u64,
    /// Delay of `/slow`.
    pub slow: Duration,
    /// Extra routes, to make a reload parse and build a realistic table.
    pub filler_routes: usize,
    pub shutdown_timeout: Duration,
}

impl GraceConfig {
    pub fn new(version: u64) -> Self {
        GraceConfig {
            version,
            slow: Duration::from_secs(1),
            filler_routes: 0,
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    pub fn version_body(&self) -> String {
        format!("v{}", self.version)
    }

    pub fn render(&self) -> String {
        let mut toml = format!(
            "message = \"{MESSAGE}\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n\
             shutdown_timeout = \"{}ms\"\nshutdown_delay = \"0s\"\nidle_grace = \"500ms\"\n\n\
             [[routes]]\npath = \"/v\"\nbody = \"{v}\"\nheaders = {{ \"x-version\" = \"{v}\" }}\n\n\
             [[routes]]\npath = \"/slow\"\nbody = \"slow\"\ndelay = \"{}ms\"\n",
            self.shutdown_timeout.as_millis(),
            self.slow.as_millis(),
            v = self.version_body(),
        );
        for i in 0..self.filler_routes {
            toml.push_str(&format!(
                "\n[[routes]]\npath = \"/r{i}\"\nbody = \"route {i} {v}\"\nheaders = {{ \"x-version\" = \"{v}\" }}\n",
                v = self.version_body()
            ));
        }
        toml
    }

    /// Replaces the file atomically (write, then rename), so a reload never
    /// reads a half-written file and every reload sees a whole new version.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, self.render())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_header_carry_the_same_version() {
        let mut config = GraceConfig::new(7);
        config.filler_routes = 2;
        let toml = config.render();
        assert!(toml.contains("body = \"v7\"\nheaders = { \"x-version\" = \"v7\" }"));
        assert!(toml.contains("path = \"/r1\""));
        assert!(!toml.contains("path = \"/r2\""));
    }
}
