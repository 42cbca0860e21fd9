//! Test support: run the real `grace` binary, read its log, talk HTTP to it.
//!
//! Everything synchronises on events (a log line, a connection result, the
//! process exiting), each bounded by a timeout; nothing sleeps for a fixed
//! time hoping the server got there.

#![allow(dead_code)] // each test binary uses a different part

pub mod app;
pub mod h2;
pub mod http;
pub mod load;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// Generous bound for anything that should happen "soon": a loaded 2-core
/// CI machine can stall a process for a long time.
pub const SOON: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_grace");

/// A running grace with its own directory, config file and pid file.
pub struct Grace {
    child: Child,
    pub dir: tempfile::TempDir,
    log: Log,
    addrs: Vec<SocketAddr>,
}

#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Log {
    pub fn capture(stream: impl std::io::Read + Send + 'static) -> Log {
        let log = Log::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("GRACE_TEST_ECHO").is_some() {
                    eprintln!("[grace] {line}");
                }
                let (lines, cv) = &*sink.lines;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        log
    }

    /// Waits until `count` lines contain `needle`; returns the last of them.
    pub fn wait_count(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.lines;
        let mut guard = lines.lock().unwrap();
        loop {
            let found: Vec<&String> = guard.iter().filter(|l| l.contains(needle)).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {count} log line(s) containing {needle:?}; log:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_count(needle, 1, SOON)
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn text(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }
}

impl Grace {
    /// Starts grace on `config` (TOML) and waits until it is ready.
    pub fn start(config: &str) -> Grace {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &str, extra_args: &[&str]) -> Grace {
        let dir = tempfile::tempdir().unwrap();
        Self::start_program(Path::new(BIN), dir, config, extra_args, &[])
    }

    /// Starts grace with extra environment variables.
    pub fn start_env(config: &str, env: &[(&str, &str)]) -> Grace {
        let dir = tempfile::tempdir().unwrap();
        Self::start_program(Path::new(BIN), dir, config, &[], env)
    }

    /// Starts `program` (a copy of grace, say) with its files in `dir`.
    pub fn start_program(
        program: &Path,
        dir: tempfile::TempDir,
        config: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Grace {
        let mut command = Command::new(program);
        command.envs(env.iter().copied());
        Self::start_command(command, dir, config, extra_args)
    }

    /// Starts `command` (grace, or a wrapper that execs it, such as
    /// `setpriv ... grace`) with `--config` and `--pid-file` in `dir`
    /// appended, and waits until it is ready.
    pub fn start_command(
        mut command: Command,
        dir: tempfile::TempDir,
        config: &str,
        extra_args: &[&str],
    ) -> Grace {
        std::fs::write(dir.path().join("grace.toml"), config).unwrap();
        let own_config = !extra_args.contains(&"--config");
        if own_config {
            command.arg("--config").arg(dir.path().join("grace.toml"));
        }
        command
            .arg("--pid-file")
            .arg(dir.path().join("grace.pid"))
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_executable(&mut command);
        let log = Log::capture(child.stderr.take().unwrap());
        let mut grace = Grace {
            child,
            dir,
            log,
            addrs: Vec::new(),
        };
        grace.log.wait_for(" ready");
        grace.addrs = grace
            .log
            .text()
            .lines()
            .filter_map(|l| l.split("listening on ").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert!(
            !grace.addrs.is_empty(),
            "no listening line:\n{}",
            grace.log.text()
        );
        grace
    }

    /// Starts grace with a control socket at `control_socket()`.
    pub fn start_controlled(config: &str) -> Grace {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        Self::start_program(
            Path::new(BIN),
            dir,
            config,
            &["--control-socket", socket.to_str().unwrap()],
            &[],
        )
    }

    /// Where `start_controlled` put the control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// Sends one raw request line on the control socket; returns the reply
    /// lines, read until the server closes.
    pub fn control(&self, request: &str) -> Vec<serde_json::Value> {
        control_lines(&self.control_socket(), request)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("grace.toml")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("grace.pid")
    }

    /// Replaces the config file atomically (write a temporary file, then
    /// rename), as deploy tools and Kubernetes do: a reload never reads a
    /// half-written file. A truncated file can be valid TOML with other
    /// meaning (a missing `[server]` table means the default listen address).
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join(".grace.toml.tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child(&mut self.child, timeout).unwrap_or_else(|| {
            panic!(
                "grace did not exit in {timeout:?}; log:\n{}",
                self.log.text()
            )
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The pid the pid file names: after upgrades, a descendant of ours.
    pub fn live_pid(&self) -> u32 {
        grace::pidfile::read(&self.pid_file()).unwrap()
    }

    /// Signals the process the pid file names.
    pub fn signal_live(&self, signal: Signal) {
        let pid = Pid::from_raw(self.live_pid() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }
}

impl Drop for Grace {
    fn drop(&mut self) {
        // After upgrades the live server is a descendant we started: stop it
        // too, by the pid it wrote.
        if let Ok(pid) = grace::pidfile::read(&self.pid_file()) {
            if pid != self.child.id() {
                if let Some(pid) = Pid::from_raw(pid as i32) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `command`, retrying while its program is "text file busy": a
/// binary the test just copied can be held open for writing by a child
/// another test thread forked meanwhile (until that child's exec closes it).
pub fn spawn_executable(command: &mut Command) -> Child {
    const ETXTBSY: i32 = 26;
    let deadline = Instant::now() + SOON;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            spawned => return spawned.unwrap(),
        }
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `grace ARGS` to completion; returns (exit code, stdout, stderr).
pub fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("GRACE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A config listening on an ephemeral loopback port, with `extra` appended.
pub fn config(message: &str, server_extra: &str, rest: &str) -> String {
    format!("message = {message:?}\n[server]\nlisten = [\"127.0.0.1:0\"]\n{server_extra}\n{rest}\n")
}

/// Sends `request` (a newline is added) on the control socket at `path` and
/// returns every reply line, parsed, until the server closes the connection.
pub fn control_lines(path: &Path, request: &str) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    writeln!(stream, "{request}").unwrap();
    BufReader::new(stream)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// Parses a Prometheus/OpenMetrics text scrape into `name{labels}` → value.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A loopback address with a port that was free a moment ago (bound and
/// released): for servers whose log the test cannot read to learn the port.
pub fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// Polls until `addr` answers `GET /` with 200.
pub fn wait_serving(addr: SocketAddr) {
    eventually(SOON, "the server to answer", || {
        http::get(addr, "/").ok().filter(|r| r.status == 200)
    });
}
