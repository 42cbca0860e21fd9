//! `grace run` tests: the programs it supervises (installed once by
//! tests/setup/apps.sh), grace running them, and wrk load against them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use super::{spawn_executable, wait_child, Log, BIN, SOON};

/// The directory of the installed apps: `venv/bin/{gunicorn,uvicorn}` and
/// `goserver`. Runs the setup script once per test binary (it returns at
/// once when everything is in place).
pub fn apps() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("bash")
            .arg(root.join("tests/setup/apps.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running tests/setup/apps.sh");
        assert!(out.status.success(), "tests/setup/apps.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Where the sample apps' sources are (the Python apps are imported from
/// here).
pub fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// gunicorn with `workers` sync workers serving tests/apps/wsgi_app.py. No
/// control socket: two generations at once would share its default path.
pub fn gunicorn(workers: u32) -> Vec<String> {
    let bin = apps().join("venv/bin/gunicorn");
    vec![
        bin.display().to_string(),
        "--no-control-socket".into(),
        "--workers".into(),
        workers.to_string(),
        "--graceful-timeout".into(),
        "20".into(),
        "--chdir".into(),
        sources().display().to_string(),
        "wsgi_app:app".into(),
    ]
}

/// uvicorn on descriptor 3 serving tests/apps/asgi_app.py.
pub fn uvicorn() -> Vec<String> {
    let bin = apps().join("venv/bin/uvicorn");
    vec![
        bin.display().to_string(),
        "--fd".into(),
        "3".into(),
        "--no-access-log".into(),
        "--app-dir".into(),
        sources().display().to_string(),
        "asgi_app:app".into(),
    ]
}

/// The stdlib-only Go server on descriptor 3.
pub fn goserver() -> Vec<String> {
    vec![apps().join("goserver").display().to_string()]
}

/// A running `grace run`, with a control socket in its own directory.
pub struct Run {
    child: Child,
    pub dir: tempfile::TempDir,
    log: Log,
    addr: SocketAddr,
}

impl Run {
    /// Starts `grace run --listen 127.0.0.1:0 ARGS -- COMMAND` and waits
    /// until the first generation is ready.
    pub fn start(args: &[&str], command: &[String]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .args(["--listen", "127.0.0.1:0", "--control-socket"])
            .arg(dir.path().join("control.sock"))
            .arg("--pid-file")
            .arg(dir.path().join("grace.pid"))
            .args(args)
            .arg("--")
            .args(command);
        Run::spawn(cmd, dir)
    }

    /// Starts `cmd` (grace with its arguments), whose control socket is
    /// `dir/control.sock` and pid file `dir/grace.pid`, and waits until the
    /// first generation is ready.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Run {
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_executable(&mut cmd);
        let log = Log::capture(child.stderr.take().unwrap());
        log.wait_for("control socket ready");
        let addr = log
            .text()
            .lines()
            .find_map(|l| l.split("listening for the app addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("a listening line")
            .parse()
            .unwrap();
        Run {
            child,
            dir,
            log,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// `grace ARGS --control-socket ...`: (exit code, stdout, stderr).
    pub fn client(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--control-socket")
            .arg(self.control_socket())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `grace reload`: its exit code and output, and how long it took.
    pub fn reload(&self) -> (i32, String, Duration) {
        let start = Instant::now();
        let (code, out, err) = self.client(&["reload"]);
        (code, format!("{out}{err}"), start.elapsed())
    }

    /// The pid of the app generation serving now, from the log.
    pub fn app_pid(&self, generation: u64) -> u32 {
        let line = self
            .log
            .wait_for(&format!("app generation ready generation={generation} "));
        line.split("pid=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn signal(&self, signal: Signal) {
        kill_process(Pid::from_child(&self.child), signal).unwrap();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_child(&mut self.child, timeout).map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGTERM first: grace stops its app's process group on the way out.
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
            if wait_child(&mut self.child, SOON).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Whether any live (not zombie) process is in process group `group`.
pub fn group_alive(group: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.unwrap().path().join("stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
    })
}

/// A wrk run in the background: `-d` long enough to cover what the test
/// does; stopped with SIGINT (wrk then prints its summary).
pub struct Wrk {
    child: Option<Child>,
}

/// What wrk counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct WrkReport {
    pub requests: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub non_2xx: u64,
}

impl WrkReport {
    pub fn failed(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.non_2xx
    }
}

impl Wrk {
    /// `connections` connections to `addr`; each request on a new
    /// connection when `close`.
    pub fn start(addr: SocketAddr, connections: u32, close: bool) -> Wrk {
        let mut cmd = Command::new("wrk");
        cmd.args([
            "-t",
            "1",
            "-c",
            &connections.to_string(),
            "-d",
            "120s",
            "--timeout",
            "15s",
        ]);
        if close {
            cmd.args(["-H", "Connection: close"]);
        }
        cmd.arg(format!("http://{addr}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Wrk {
            child: Some(cmd.spawn().expect("wrk (installed by tests/setup/apps.sh)")),
        }
    }

    pub fn stop(mut self) -> WrkReport {
        let child = self.child.take().unwrap();
        kill_process(Pid::from_child(&child), Signal::INT).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        parse_wrk(&text).unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"))
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parse_wrk(text: &str) -> Option<WrkReport> {
    let mut report = WrkReport::default();
    let number = |s: &str| s.trim().trim_end_matches(',').parse::<u64>().ok();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            let mut words = rest.split_whitespace();
            while let (Some(kind), Some(n)) = (words.next(), words.next()) {
                let n = number(n)?;
                match kind {
                    "connect" => report.connect = n,
                    "read" => report.read = n,
                    "write" => report.write = n,
                    "timeout" => report.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = number(rest)?;
        } else if line.contains(" requests in ") {
            report.requests = number(line.split_whitespace().next()?)?;
        }
    }
    (report.requests > 0).then_some(report)
}

/// The parent of `pid`, from /proc.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pid in an app's "hello from PID" answer.
pub fn answering_pid(body: &str) -> Option<u32> {
    body.trim().strip_prefix("hello from ")?.parse().ok()
}

/// Polls `/` until it is answered by process `app` or one of its children;
/// returns how long that took.
pub fn until_served_by(addr: SocketAddr, app: u32) -> Duration {
    let start = Instant::now();
    super::eventually(SOON, "an answer from the new generation", || {
        let res = super::http::get(addr, "/").ok()?;
        let pid = answering_pid(&res.body)?;
        (pid == app || parent_of(pid) == Some(app)).then_some(())
    });
    start.elapsed()
}

/// Replaces the app `count` times with `grace reload` (or SIGHUP when
/// `by_signal`), each once the previous one serves; returns, per
/// replacement, the time from the request to the new generation answering.
pub fn replace_times(
    run: &Run,
    first_generation: u64,
    count: u64,
    by_signal: bool,
) -> Vec<Duration> {
    (0..count)
        .map(|i| {
            let generation = first_generation + 1 + i;
            let start = Instant::now();
            if by_signal {
                run.signal(Signal::HUP);
            } else {
                let (code, out, _) = run.reload();
                assert_eq!(code, 0, "reload {i} failed: {out}");
            }
            let pid = run.app_pid(generation);
            until_served_by(run.addr(), pid);
            start.elapsed()
        })
        .collect()
}

/// "min/median/max" of `times`, in milliseconds.
pub fn summary(times: &[Duration]) -> String {
    let mut ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    format!(
        "{}/{}/{} ms (min/median/max)",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    )
}

/// The `flaky.sh` wrapper around `app`, and the file that tells it how to
/// behave (starting as `serve`).
pub fn flaky(dir: &Path, app: Vec<String>) -> (Vec<String>, PathBuf) {
    let mode = dir.join("mode");
    std::fs::write(&mode, "serve").unwrap();
    let mut command = vec![sources().join("flaky.sh").display().to_string()];
    command.extend(app);
    (command, mode)
}

/// The pid in a verdict such as "generation 3 (pid 1234) exited ...".
pub fn pid_in(verdict: &str) -> u32 {
    verdict
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {verdict:?}"))
}
