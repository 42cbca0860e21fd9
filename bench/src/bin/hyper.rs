//! "plain hyper": hyper-util's HTTP/1.1 + h2c auto builder on hyper's
//! defaults (no timer, so no header-read timeout), the server a user writes
//! from hyper's examples and checks grace against with wrk and h2load. The
//! other baseline, `grace-bench-baseline`, adds grace's timeouts; see
//! `src/hello.rs` for what both share.

#[path = "../hello.rs"]
mod hello;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

fn main() -> std::process::ExitCode {
    hello::main_with(auto::Builder::new(TokioExecutor::new()))
}
