//! Every reload verdict, for a service built on [`Server`] (the controller
//! is [`Started::controller`](super::Started::controller)).

use super::Server;
use crate::reload::{ReloadEvent, Reloader, Verdict};

impl<T: Send + Sync + 'static> Server<T> {
    /// Calls `observe` with the verdict of every reload, however it was
    /// asked for (SIGHUP, file watch, control socket, a [`Controller`](crate::Controller)):
    /// `Ok(generation)` when accepted, `Err` with why when rejected (the
    /// previous configuration keeps serving). Repeat to add more.
    ///
    /// It runs on the reload thread, after the swap: keep it short (log,
    /// count, send on a channel).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::convert::Infallible;
    /// # use bytes::Bytes;
    /// # use http_body_util::Empty;
    /// # use hyper::{service::service_fn, Response};
    /// let (tx, mut verdicts) = tokio::sync::mpsc::unbounded_channel();
    /// let server = grace::Server::new(|| std::fs::read_to_string("greeting.txt"))
    ///     .on_reload(move |verdict| {
    ///         let _ = tx.send(verdict.clone()); // Ok(generation) or Err(why)
    ///     });
    /// # drop((server, verdicts.try_recv()));
    /// ```
    pub fn on_reload(mut self, observe: impl Fn(&Verdict) + Send + Sync + 'static) -> Self {
        self.on_reload.push(Box::new(observe));
        self
    }

    pub(super) fn observe_verdicts(&mut self, reloader: &Reloader<T>) {
        for observe in self.on_reload.drain(..) {
            reloader.observe(move |event| {
                if let ReloadEvent::Finished(verdict) = event {
                    observe(verdict);
                }
            });
        }
    }
}
