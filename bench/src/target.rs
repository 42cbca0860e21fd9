//! Starting, signalling and watching the servers under test: grace, the
//! two baseline hyper servers, nginx, or a process somebody else started (`--target --pid`).
//!
//! Every process the harness starts is killed when its `Server` is dropped
//! (by its own pid), so an aborted scenario leaves nothing behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::grace_config::{GraceConfig, MESSAGE};
use crate::probe::Probe;
use crate::procfs;

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The lines a server wrote on stderr, each with when the harness read it.
#[derive(Clone)]
pub struct Log {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    count: watch::Sender<usize>,
}

impl Log {
    fn new() -> Self {
        Log {
            lines: Arc::default(),
            count: watch::Sender::new(0),
        }
    }

    fn follow(&self, stderr: tokio::process::ChildStderr) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let at = Instant::now();
                if let Ok(mut all) = log.lines.lock() {
                    all.push((at, line));
                }
                log.count.send_modify(|n| *n += 1);
            }
        });
    }

    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Lines from index `from` on that contain `needle`.
    pub fn matching(&self, needle: &str, from: usize) -> Vec<(Instant, String)> {
        self.lines
            .lock()
            .map(|all| {
                all.iter()
                    .skip(from)
                    .filter(|(_, line)| line.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for a line containing `needle` at index `from` or later.
    pub async fn wait_for(
        &self,
        needle: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<(Instant, String)> {
        let mut seen = self.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.matching(needle, from).into_iter().next() {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, seen.changed()).await {
                Ok(Ok(())) => continue,
                _ => bail!("no log line containing {needle:?} within {timeout:?}"),
            }
        }
    }
}

/// What kind of server this is; decides how it is told to reload and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Grace,
    /// `grace-bench-hyper`: hyper on its defaults.
    PlainHyper,
    /// `grace-bench-baseline`: hyper with grace's timeouts.
    Baseline,
    Nginx,
    External,
}

/// Signals one server's process; `Send`, unlike the [`Server`] it came from.
#[derive(Debug, Clone, Copy)]
pub struct Signaller {
    pid: i32,
}

impl Signaller {
    pub fn send(self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(self.pid).ok_or_else(|| anyhow!("invalid pid {}", self.pid))?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("signalling pid {}", self.pid))
    }
}

pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    pid: i32,
    child: Option<Child>,
    pub log: Log,
    /// Just before exec.
    pub spawned_at: Instant,
    /// First 200 on `/`.
    pub ready_at: Instant,
    /// Holds the config, pid file and nginx's prefix while the server runs.
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts grace on an ephemeral loopback port with `config`.
    pub async fn grace(bin: &Path, config: &GraceConfig) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("grace.toml");
        config.write(&config_path)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--pid-file")
            .arg(dir.path().join("grace.pid"));
        let server = Self::spawn(Kind::Grace, cmd, None, Some(dir)).await?;
        server.log.wait_for(" ready", 0, START_TIMEOUT).await?;
        Ok(server)
    }

    /// `grace-bench-baseline`: hyper with grace's timeouts.
    pub async fn baseline(bin: &Path) -> Result<Server> {
        Self::hyper(Kind::Baseline, bin).await
    }

    /// `grace-bench-hyper`: hyper on its defaults.
    pub async fn plain_hyper(bin: &Path) -> Result<Server> {
        Self::hyper(Kind::PlainHyper, bin).await
    }

    async fn hyper(kind: Kind, bin: &Path) -> Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.arg("127.0.0.1:0");
        Self::spawn(kind, cmd, None, None).await
    }

    /// nginx with 2 workers answering `return 200` on a loopback port, and
    /// a rate-limited `/slow` file for the drain drill.
    pub async fn nginx(bin: &Path) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        // Workers drop root and must still read the files here.
        set_mode(dir.path(), 0o755)?;
        let port = free_port()?;
        std::fs::write(dir.path().join("slow"), vec![b's'; NGINX_SLOW_BYTES])?;
        let conf = format!(
            "worker_processes 2;\npid {dir}/nginx.pid;\nerror_log stderr notice;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
             keepalive_requests 1000000;\n\
             server {{\n    listen 127.0.0.1:{port};\n\
             location = /slow {{ alias {dir}/slow; limit_rate {rate}; }}\n\
             location / {{ default_type \"text/plain; charset=utf-8\"; return 200 \"{MESSAGE}\"; }}\n  }}\n}}\n",
            dir = dir.path().display(),
            rate = NGINX_SLOW_BYTES / 2,
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off;");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Self::spawn(Kind::Nginx, cmd, Some(addr), Some(dir)).await
    }

    /// A server somebody else started; the harness only signals it.
    pub async fn external(addr: SocketAddr, pid: i32) -> Result<Server> {
        if !procfs::alive(pid) {
            bail!("--pid {pid}: no such process");
        }
        let now = Instant::now();
        Probe::new(addr).wait_ok("/", START_TIMEOUT).await?;
        Ok(Server {
            kind: Kind::External,
            addr,
            pid,
            child: None,
            log: Log::new(),
            spawned_at: now,
            ready_at: now,
            dir: None,
        })
    }

    async fn spawn(
        kind: Kind,
        mut cmd: Command,
        addr: Option<SocketAddr>,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Server> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {kind:?}"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{kind:?} exited at once"))? as i32;
        let log = Log::new();
        if let Some(stderr) = child.stderr.take() {
            log.follow(stderr);
        }
        let addr = match addr {
            Some(addr) => addr,
            None => {
                let (_, line) = log.wait_for("listening on ", 0, START_TIMEOUT).await?;
                parse_listening(&line)?
            }
        };
        let ready_at = match Probe::new(addr).wait_ok("/", START_TIMEOUT).await {
            Ok(at) => at,
            Err(e) => {
                let tail: Vec<String> = log.matching("", 0).into_iter().map(|(_, l)| l).collect();
                bail!("{kind:?} did not become ready: {e}\n{}", tail.join("\n"));
            }
        };
        Ok(Server {
            kind,
            addr,
            pid,
            child: Some(child),
            log,
            spawned_at,
            ready_at,
            dir,
        })
    }

    pub fn start_to_ready(&self) -> Duration {
        self.ready_at - self.spawned_at
    }

    pub fn config_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("grace.toml"))
    }

    pub fn pid_file(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("grace.pid"))
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.signaller().send(signal)
    }

    /// What sends this server signals from another thread.
    pub fn signaller(&self) -> Signaller {
        Signaller { pid: self.pid }
    }

    /// The signal that starts a graceful shutdown: nginx's is SIGQUIT
    /// (its SIGTERM is a fast shutdown that cuts requests).
    pub fn graceful_stop_signal(&self) -> Signal {
        match self.kind {
            Kind::Nginx => Signal::QUIT,
            _ => Signal::TERM,
        }
    }

    /// After an upgrade the pid file names the new process: follow it.
    pub fn follow_pid_file(&mut self) -> Result<()> {
        let path = self
            .pid_file()
            .ok_or_else(|| anyhow!("no pid file for {:?}", self.kind))?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        self.pid = text
            .trim()
            .parse()
            .with_context(|| format!("pid file {} holds {text:?}", path.display()))?;
        Ok(())
    }

    /// Waits for the process to exit; returns its exit code (None if killed
    /// by a signal, or not our child) and when the exit was seen.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<(Option<i32>, Instant)> {
        match &mut self.child {
            Some(child) if child.id() == Some(self.pid as u32) => {
                let status = tokio::time::timeout(timeout, child.wait())
                    .await
                    .map_err(|_| anyhow!("{:?} still running after {timeout:?}", self.kind))??;
                Ok((status.code(), Instant::now()))
            }
            // Not our child (external, or the new process after an
            // upgrade): poll /proc closely enough for millisecond figures.
            _ => {
                let deadline = Instant::now() + timeout;
                while procfs::alive(self.pid) {
                    if Instant::now() > deadline {
                        bail!("pid {} still running after {timeout:?}", self.pid);
                    }
                    tokio::time::sleep(Duration::from_micros(250)).await;
                }
                Ok((None, Instant::now()))
            }
        }
    }

    /// RSS of the server, workers included (nginx).
    pub fn rss_kib(&self) -> Result<u64> {
        let mut total = procfs::rss_kib(self.pid)?;
        for child in procfs::children(self.pid) {
            total += procfs::rss_kib(child).unwrap_or(0);
        }
        Ok(total)
    }

    pub fn open_fds(&self) -> Result<usize> {
        procfs::open_fds(self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_none() || !procfs::alive(self.pid) {
            return;
        }
        // The server's own children (nginx's workers, old and new; a grace
        // upgrade child) would outlive a killed parent: note them first,
        // kill the parent so it cannot start more, then them. The pid may
        // be a process that replaced our child through an upgrade: it is
        // ours too. Our child itself is also covered by kill_on_drop.
        let children = procfs::children(self.pid);
        for pid in std::iter::once(self.pid).chain(children) {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
}

/// Bytes of nginx's `/slow`, sent at half of that per second: two seconds.
pub const NGINX_SLOW_BYTES: usize = 2048;

fn parse_listening(line: &str) -> Result<SocketAddr> {
    let rest = line
        .split("listening on ")
        .nth(1)
        .ok_or_else(|| anyhow!("no address in {line:?}"))?;
    let addr = rest.split_whitespace().next().unwrap_or_default();
    addr.parse()
        .with_context(|| format!("bad address in {line:?}"))
}

/// A port nothing listens on right now, for servers that cannot report the
/// port they bound (nginx). Another process could take it in between; the
/// start then fails with a clear error rather than measuring the wrong server.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_bound_address_in_the_log_line() {
        let line = "2026-01-01T00:00:00Z  INFO listening on 127.0.0.1:4242 addr=127.0.0.1:4242";
        assert_eq!(
            parse_listening(line).expect("address"),
            SocketAddr::from(([127, 0, 0, 1], 4242))
        );
        assert!(parse_listening("INFO ready").is_err());
    }
}
