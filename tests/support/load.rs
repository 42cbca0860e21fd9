//! Continuous load from the test itself: connection-per-request clients and
//! keep-alive clients sending back-to-back requests. No retries: every error
//! a client sees is counted, by kind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::http::Conn;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn fail(&self, kind: String) {
        *self.failures.lock().unwrap().entry(kind).or_default() += 1;
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<()>>,
}

pub struct Report {
    pub ok: u64,
    pub failures: BTreeMap<String, u64>,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

impl Load {
    /// Starts `per_request` connection-per-request clients and `keep_alive`
    /// keep-alive clients against `addr`, each expecting `body` from `/`.
    pub fn start(addr: SocketAddr, per_request: usize, keep_alive: usize, body: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut threads = Vec::new();
        for i in 0..per_request + keep_alive {
            let (stop, tally, body) = (stop.clone(), tally.clone(), body.to_owned());
            let reuse = i >= per_request;
            threads.push(std::thread::spawn(move || {
                client(addr, reuse, &body, &stop, &tally)
            }));
        }
        Load {
            stop,
            tally,
            threads,
        }
    }

    pub fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Report {
            ok: self.tally.ok.load(Ordering::Relaxed),
            failures: self.tally.failures.lock().unwrap().clone(),
        }
    }
}

fn client(addr: SocketAddr, reuse: bool, body: &str, stop: &AtomicBool, tally: &Tally) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(addr) {
                Ok(c) => c,
                Err(e) => {
                    tally.fail(format!("connect: {:?}", e.kind()));
                    continue;
                }
            },
        };
        let mut c = c;
        match c.get("/") {
            Ok(res) if res.status == 200 && res.body == body => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                // A keep-alive client honours `Connection: close` by opening
                // a new connection for its next request: protocol, not retry.
                if reuse && !res.closes() {
                    conn = Some(c);
                }
            }
            Ok(res) => tally.fail(format!("status {} body {:?}", res.status, res.body)),
            Err(e) => tally.fail(format!("request: {:?} ({e})", e.kind())),
        }
    }
}
