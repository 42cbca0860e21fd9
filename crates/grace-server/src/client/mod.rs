//! `grace status|reload|upgrade|stop`: through the control socket when one
//! is given (with a verdict), else through signals to the pid in the pid file
//! (without one, which the output says).

mod progress;
mod signals;
mod socket;

use crate::cli::ClientArgs;
use crate::exit;

/// What the operator asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    Reload,
    Upgrade,
    Stop { wait: bool },
}

pub fn run(action: Action, args: &ClientArgs) -> u8 {
    match (&args.target.control_socket, &args.target.pid_file) {
        (Some(socket), _) => socket::run(socket, action, args),
        (None, Some(pid_file)) => signals::run(pid_file, action, args),
        (None, None) => {
            // clap's group makes one of them required; kept for safety.
            eprintln!("error: give --control-socket PATH or --pid-file PATH");
            exit::USAGE
        }
    }
}
