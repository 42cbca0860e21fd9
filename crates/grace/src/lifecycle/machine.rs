//! The lifecycle as one state machine: every rule that keeps reloads,
//! upgrades and the shutdown apart is a cell of the table below, and
//! [`on`] is that table. It is pure (no I/O, no clock, no tokio): the driver
//! in the parent module feeds it events, then carries out the [`Action`].
//!
//! Each cell reads `next state, action`; `-` is no action. Rows are events,
//! columns the state they arrive in. A unit test parses this table and checks
//! [`on`] against every cell, so the two cannot drift apart.
//!
//! | event \ state | running | reloading | upgrading | draining | forcing | exited |
//! |---|---|---|---|---|---|---|
//! | reload requested | running, reload | reloading, reload | upgrading, reload | draining, ignore reload | forcing, ignore reload | exited, ignore reload |
//! | reload started | reloading, - | reloading, - | upgrading, - | draining, - | forcing, - | exited, - |
//! | reload accepted | running, - | running, - | upgrading, - | draining, - | forcing, - | exited, - |
//! | reload rejected | running, - | running, - | upgrading, - | draining, - | forcing, - | exited, - |
//! | upgrade requested | upgrading, upgrade | upgrading, upgrade | upgrading, refuse: in progress | draining, refuse: shutting down | forcing, refuse: shutting down | exited, refuse: shutting down |
//! | upgrade requested as PID 1 | running, refuse: PID 1 | reloading, refuse: PID 1 | upgrading, refuse: PID 1 | draining, refuse: PID 1 | forcing, refuse: PID 1 | exited, refuse: PID 1 |
//! | upgrade succeeded | running, - | reloading, - | draining, hand over | draining, hand over | forcing, hand over | exited, hand over |
//! | upgrade failed | running, - | reloading, - | running, - | draining, - | forcing, - | exited, - |
//! | stop signal | draining, drain | draining, drain | draining, drain | forcing, force | forcing, force | exited, - |
//! | stop request | draining, drain | draining, drain | draining, drain | draining, already stopping | forcing, already stopping | exited, already stopping |
//! | force request | forcing, force | forcing, force | forcing, force | forcing, force | forcing, force | exited, - |
//! | drain finished | exited, - | exited, - | exited, - | exited, - | exited, - | exited, - |
//!
//! Why the cells are what they are:
//!
//! * A reload asked for during a shutdown is ignored (a signal: logged) or
//!   refused (a caller: [`ReloadError::ShuttingDown`](crate::ReloadError));
//!   one in flight when the stop comes finishes, and its verdict is logged,
//!   but the reloader takes no more.
//! * "reloading" is a load running, not a request waiting: requests merge
//!   (see [`Reloader`](crate::Reloader)), so only a load's start and end
//!   move the state.
//! * One upgrade at a time, none while draining, none as PID 1 (its exit
//!   would end the container). PID 1 is checked first, in every state, so
//!   the operator learns the reason that will not go away.
//! * An upgrade and a reload may overlap: nothing in either depends on the
//!   other. "upgrading" then wins, since only it carries a rule (the next
//!   upgrade is refused); a reload's end leaves it alone.
//! * A stop during an upgrade drains at once; the upgrade sees the shutdown
//!   begin, gives up and stops its new process. If the new process got ready
//!   in that same moment, it serves: this one hands over all the same (the
//!   drain is already under way).
//! * A second stop signal forces; a second stop request does not (a
//!   retrying script must not cut requests): forcing is asked for by name.
//! * The drain finishing ends everything, whatever the state.
//!
//! "forcing" is the operator's force. The drain's own deadline forces too,
//! but that happens inside [`Shutdown`](crate::Shutdown): the lifecycle stays
//! "draining" until the drain is over, and the shutdown's
//! [`Phase`](crate::Phase) says which.

/// Where the lifecycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Serving; nothing under way.
    Running,
    /// Serving; a configuration load is running.
    Reloading,
    /// Serving; a new process is starting and may take over.
    Upgrading,
    /// A shutdown began (its delay, then the drain).
    Draining,
    /// The operator asked to cut what is left.
    Forcing,
    /// The drain is over.
    Exited,
}

/// Who asked for a stop: a second signal forces, a second request does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum By {
    Signal,
    Request,
}

/// What happened, as the lifecycle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    ReloadRequested,
    ReloadStarted,
    ReloadFinished { accepted: bool },
    UpgradeRequested { pid1: bool },
    UpgradeFinished { ok: bool },
    Stop(By),
    Force,
    DrainFinished,
}

/// Why an upgrade was refused before anything started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    InProgress,
    ShuttingDown,
    Pid1,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    None,
    Reload,
    IgnoreReload,
    Upgrade,
    RefuseUpgrade(Refusal),
    /// The new process serves: stop telling systemd about us, and drain at
    /// once (no delay: nothing needs to notice us going).
    HandOver,
    /// Begin the shutdown with the drain settings of the configuration now.
    Drain,
    Force,
    /// Tell the caller a shutdown had already begun.
    AlreadyStopping,
}

/// The transition function: the state `input` leads to from `state`, and
/// what to do about it. The module documentation is its table.
pub(crate) fn on(state: State, input: Input) -> (State, Action) {
    use Action as A;
    use State::*;
    let serving = matches!(state, Running | Reloading | Upgrading);
    match input {
        Input::ReloadRequested if serving => (state, A::Reload),
        Input::ReloadRequested => (state, A::IgnoreReload),
        Input::ReloadStarted if state == Running => (Reloading, A::None),
        Input::ReloadFinished { .. } if state == Reloading => (Running, A::None),
        Input::ReloadStarted | Input::ReloadFinished { .. } => (state, A::None),
        Input::UpgradeRequested { pid1: true } => (state, A::RefuseUpgrade(Refusal::Pid1)),
        Input::UpgradeRequested { pid1: false } => match state {
            Running | Reloading => (Upgrading, A::Upgrade),
            Upgrading => (state, A::RefuseUpgrade(Refusal::InProgress)),
            Draining | Forcing | Exited => (state, A::RefuseUpgrade(Refusal::ShuttingDown)),
        },
        Input::UpgradeFinished { ok: true } => match state {
            Running | Reloading => (state, A::None),
            Upgrading => (Draining, A::HandOver),
            Draining | Forcing | Exited => (state, A::HandOver),
        },
        Input::UpgradeFinished { ok: false } if state == Upgrading => (Running, A::None),
        Input::UpgradeFinished { ok: false } => (state, A::None),
        Input::Stop(_) if serving => (Draining, A::Drain),
        Input::Stop(By::Signal) if state == Exited => (state, A::None),
        Input::Stop(By::Signal) => (Forcing, A::Force),
        Input::Stop(By::Request) => (state, A::AlreadyStopping),
        Input::Force if state == Exited => (state, A::None),
        Input::Force => (Forcing, A::Force),
        Input::DrainFinished => (Exited, A::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [State; 6] = [
        State::Running,
        State::Reloading,
        State::Upgrading,
        State::Draining,
        State::Forcing,
        State::Exited,
    ];

    fn state(name: &str) -> State {
        match name {
            "running" => State::Running,
            "reloading" => State::Reloading,
            "upgrading" => State::Upgrading,
            "draining" => State::Draining,
            "forcing" => State::Forcing,
            "exited" => State::Exited,
            _ => panic!("no state named {name:?}"),
        }
    }

    fn input(name: &str) -> Input {
        match name {
            "reload requested" => Input::ReloadRequested,
            "reload started" => Input::ReloadStarted,
            "reload accepted" => Input::ReloadFinished { accepted: true },
            "reload rejected" => Input::ReloadFinished { accepted: false },
            "upgrade requested" => Input::UpgradeRequested { pid1: false },
            "upgrade requested as PID 1" => Input::UpgradeRequested { pid1: true },
            "upgrade succeeded" => Input::UpgradeFinished { ok: true },
            "upgrade failed" => Input::UpgradeFinished { ok: false },
            "stop signal" => Input::Stop(By::Signal),
            "stop request" => Input::Stop(By::Request),
            "force request" => Input::Force,
            "drain finished" => Input::DrainFinished,
            _ => panic!("no event named {name:?}"),
        }
    }

    fn action(name: &str) -> Action {
        match name {
            "-" => Action::None,
            "reload" => Action::Reload,
            "ignore reload" => Action::IgnoreReload,
            "upgrade" => Action::Upgrade,
            "refuse: in progress" => Action::RefuseUpgrade(Refusal::InProgress),
            "refuse: shutting down" => Action::RefuseUpgrade(Refusal::ShuttingDown),
            "refuse: PID 1" => Action::RefuseUpgrade(Refusal::Pid1),
            "hand over" => Action::HandOver,
            "drain" => Action::Drain,
            "force" => Action::Force,
            "already stopping" => Action::AlreadyStopping,
            _ => panic!("no action named {name:?}"),
        }
    }

    /// The table of the module documentation, cell by cell.
    #[test]
    fn every_cell_of_the_documented_table() {
        let doc = include_str!("machine.rs");
        let mut rows = doc
            .lines()
            .filter_map(|l| l.strip_prefix("//! |"))
            .map(|l| l.trim_end_matches('|').split('|').map(str::trim));
        let header: Vec<State> = rows.next().unwrap().skip(1).map(state).collect();
        assert_eq!(header, STATES, "one column per state, in order");
        let mut checked = 0;
        for mut row in rows.skip(1) {
            let event = input(row.next().unwrap());
            for (&from, cell) in STATES.iter().zip(row) {
                let (next, act) = cell.split_once(", ").unwrap();
                assert_eq!(
                    on(from, event),
                    (state(next), action(act)),
                    "{event:?} in {from:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 12 * STATES.len(), "every event in every state");
    }
}
