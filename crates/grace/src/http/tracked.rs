//! Counting requests while they are in flight, and asking HTTP/1 clients to
//! go once the drain started.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::service::Service;

use tokio_util::sync::CancellationToken;

use super::activity::{Activity, InFlight};
use crate::drain::{RequestGuard, Shutdown};
use crate::metrics::requests::Timing;
use crate::metrics::RequestStats;

/// Wraps the user's service: each request is counted from the call until its
/// response body is finished (or dropped), and HTTP/1 responses produced once
/// the drain started carry `Connection: close`, so a keep-alive client learns
/// to reconnect elsewhere instead of having its next request raced by a close.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    shutdown: Shutdown,
    // HTTP/1 only: the connection's drain, which decides `Connection: close`.
    close_on: Option<CancellationToken>,
    // The connection's own count, for its idle timeout.
    activity: Arc<Activity>,
    stats: Option<Arc<RequestStats>>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(
        inner: S,
        shutdown: Shutdown,
        close_on: Option<CancellationToken>,
        activity: Arc<Activity>,
        stats: Option<Arc<RequestStats>>,
    ) -> Self {
        Tracked {
            inner,
            shutdown,
            close_on,
            activity,
            stats,
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Tracked<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<TrackedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn call(&self, req: Request<ReqB>) -> Self::Future {
        let guard = (self.shutdown.track_request(), self.activity.begin_request());
        ResponseFuture {
            // Boxed so the future is Unpin whatever the user's is: hyper's
            // `poll_without_shutdown`, which the drain needs, requires it.
            inner: Box::pin(self.inner.call(req)),
            guard: Some(guard),
            timing: self.stats.clone().map(Timing::start),
            close: self.close_on.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct ResponseFuture<F> {
        inner: Pin<Box<F>>,
        guard: Option<(RequestGuard, InFlight)>,
        timing: Option<Timing>,
        close: Option<CancellationToken>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.as_mut().poll(cx))?;
        if this
            .close
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
        {
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let guard = this.guard.take();
        let mut timing = this.timing.take();
        if let Some(timing) = timing.as_mut() {
            timing.set_status(res.status());
        }
        Poll::Ready(Ok(res.map(|inner| TrackedBody {
            inner,
            _guard: guard,
            timing,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted until it is done.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<(RequestGuard, InFlight)>,
        // Records the request (status, duration) when the body is done.
        timing: Option<Timing>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            // Finished: stop counting now rather than when hyper drops us.
            this.timing.take();
            this._guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
