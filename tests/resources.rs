//! Exhausted resources: out of file descriptors, the accept loop backs off
//! (bounded CPU, bounded logs) instead of spinning, keeps serving what it
//! has, and recovers by itself when descriptors free up.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use support::http::{get, Conn};
use support::{config, Grace, BIN, SOON};

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: count fields after its ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    const LIMIT: usize = 64;
    let mut command = Command::new("prlimit");
    command.arg(format!("--nofile={LIMIT}:{LIMIT}")).arg(BIN);
    let mut grace = Grace::start_command(
        command,
        tempfile::tempdir().unwrap(),
        &config("m", "", "[limits]\nheader_read_timeout = \"5m\"\n"),
        &[],
    );
    let pid = grace.pid();
    let mut kept_alive = Conn::open(grace.addr()).unwrap();
    assert_eq!(kept_alive.get("/").unwrap().body, "m");

    // More silent connections than the server has descriptors left.
    let spare = LIMIT - open_fds(pid);
    let held: Vec<TcpStream> = (0..spare + 20)
        .map(|_| TcpStream::connect(grace.addr()).unwrap())
        .collect();
    grace.log().wait_for("accept failed, backing off");
    support::eventually(SOON, "the descriptors to run out", || {
        (open_fds(pid) >= LIMIT - 1).then_some(())
    });

    // A bound, not a benchmark: over a window, a spinning loop would use a
    // whole core; backing off uses next to nothing.
    let window = Duration::from_secs(3);
    let logged_before = grace.log().count("accept failed");
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    let budget = ticks_per_second() * window.as_secs() / 4;
    eprintln!("backing off: {used} ticks of CPU over {window:?}");
    assert!(
        used < budget,
        "{used} ticks of CPU in {window:?} (budget {budget})"
    );
    let logged = grace.log().count("accept failed") - logged_before;
    assert!(
        logged <= 5,
        "{logged} accept error lines in {window:?}: not rate-limited"
    );

    // What was accepted is served; a reload that cannot open its file is
    // rejected, and the process lives on.
    assert_eq!(kept_alive.get("/").unwrap().body, "m");
    grace.signal(Signal::HUP);
    let line = grace.log().wait_for("reload rejected");
    assert!(line.contains("Too many open files"), "{line}");
    assert!(grace.is_running());

    // Descriptors free up: it accepts again by itself, the queued
    // connections included, and new clients are served.
    drop(held);
    grace.log().wait_for("accepting connections again");
    assert_eq!(get(grace.addr(), "/").unwrap().body, "m");
    assert_eq!(kept_alive.get("/").unwrap().body, "m");
    drop(kept_alive);
    grace.signal(Signal::TERM);
    assert_eq!(grace.wait_exit(SOON).code(), Some(0));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Issue 12: a big config's parse frees about a hundred times its size in
/// temporaries; if the allocator keeps those pages, RSS grows by that much
/// with the first reloads and stays there. After 20 reloads it must be back
/// near the one-generation level measured right after start.
#[test]
fn reloading_a_big_config_returns_its_memory() {
    let routes = |version: usize| {
        let mut rest = String::new();
        for i in 0..20_000 {
            rest.push_str(&format!(
                "[[routes]]\npath = \"/r{i}\"\nbody = \"v{version}\"\n"
            ));
        }
        config("big", "", &rest)
    };
    let grace = Grace::start(&routes(0));
    assert_eq!(get(grace.addr(), "/r19999").unwrap().body, "v0");
    let start = rss_kib(grace.pid());
    for version in 1..=20 {
        grace.write_config(&routes(version));
        grace.signal(Signal::HUP);
        grace
            .log()
            .wait_count("reload accepted", version, Duration::from_secs(60));
    }
    assert_eq!(get(grace.addr(), "/r19999").unwrap().body, "v20");
    // The reload thread gives the memory back once the burst is over, a
    // moment after the last verdict.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut after, mut settled) = (0, false);
    while !settled && std::time::Instant::now() < deadline {
        after = rss_kib(grace.pid());
        settled = after * 2 <= start * 3;
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("VmRSS: {start} KiB after start, {after} KiB after 20 reloads");
    assert!(
        settled,
        "RSS grew from {start} KiB after start to {after} KiB after 20 reloads (more than 1.5x)"
    );
}
