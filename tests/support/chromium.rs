//! A headless Chromium driven over the Chrome DevTools Protocol, with std
//! pipes and serde_json only: `--remote-debugging-pipe` reads commands on
//! its fd 3 and writes replies and events on its fd 4, each message one
//! JSON object ended by a NUL byte. No network beyond loopback, no other
//! runtime.
//!
//! fds 3 and 4 are wired by `sh` (`exec 3<&0 4>&1`) from the child's stdin
//! and stdout, which std can pipe without `unsafe`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one protocol call may take on a loaded machine.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    commands: ChildStdin,
    replies: Receiver<Value>,
    next_id: u64,
    session: String,
    // Console errors, uncaught exceptions and error log entries (a failed
    // resource load among them), as text.
    errors: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and opens one blank
    /// page. Panics with the fix when Chromium is not installed.
    pub fn launch() -> Browser {
        let program = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|p| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {p}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("Chromium not found: apt-get install chromium (.ci/run does)");
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("exec 3<&0 4>&1 </dev/null >/dev/null; exec \"$0\" \"$@\"")
            .arg(program)
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--disable-gpu",
                // /dev/shm is small in containers: a full one crashes tabs.
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1000,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()));
        // Chromium refuses to start its sandbox as root.
        if rustix::process::geteuid().is_root() {
            command.arg("--no-sandbox");
        }
        command
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(profile.path().join("stderr.log")).unwrap(),
            ));
        let mut child = command.spawn().unwrap();
        let commands = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut message = Vec::new();
            while out.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                let Ok(value) = serde_json::from_slice(&message) else {
                    break;
                };
                if tx.send(value).is_err() {
                    break;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            replies,
            next_id: 0,
            session: String::new(),
            errors: Arc::default(),
            _profile: profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Page.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    /// Opens `url` and waits until the document finished loading.
    pub fn open(&mut self, url: &str) {
        let nav = self.call("Page.navigate", json!({"url": url}));
        assert!(nav.get("errorText").is_none(), "navigating to {url}: {nav}");
        self.wait_for("document.readyState === 'complete'", CALL_TIMEOUT);
    }

    /// Evaluates `expression` in the page; returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            reply.get("exceptionDetails").is_none(),
            "{expression}: {reply}"
        );
        reply["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (a string: non-empty), then
    /// returns its value; panics after `timeout` with the last value.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{expression}` (last: {value})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Errors the page reported so far: console errors, uncaught
    /// exceptions, failed loads.
    pub fn errors(&mut self) -> Vec<String> {
        // A round trip: events sent before it are collected by now.
        self.eval("1");
        self.errors.lock().unwrap().clone()
    }

    /// Writes a PNG of the whole page, `width` pixels wide.
    pub fn screenshot(&mut self, path: &Path, width: u32) {
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .as_u64()
            .unwrap();
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64(shot["data"].as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(path, png).unwrap();
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.replies.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => panic!("no reply to {method} in time"),
                Err(RecvTimeoutError::Disconnected) => panic!("Chromium exited during {method}"),
            };
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            self.event(&message);
        }
    }

    fn event(&self, message: &Value) {
        let params = &message["params"];
        let error = match message["method"].as_str() {
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                Some(params["args"].to_string())
            }
            Some("Runtime.exceptionThrown") => Some(params["exceptionDetails"].to_string()),
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                Some(params["entry"].to_string())
            }
            _ => None,
        };
        if let Some(error) = error {
            self.errors.lock().unwrap().push(error);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing its command pipe makes Chromium exit; kill it (ours, by
        // its handle) if it does not.
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len() - 1)
        })
        .collect()
}
