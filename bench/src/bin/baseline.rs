//! "hyper with grace's timeouts": hyper-util's HTTP/1.1 + h2c auto builder
//! with a timer, so hyper enforces grace's header read timeout (by arming
//! a timer for every request; grace keeps one deadline per connection),
//! and no lifecycle at all: no drain tracking, no
//! reload, no signals. The second baseline, `grace-bench-hyper`, is hyper
//! on its defaults; see `src/hello.rs` for what both share.

#[path = "../hello.rs"]
mod hello;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

fn main() -> std::process::ExitCode {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    hello::main_with(builder)
}
