//! Counting requests while they are in flight, asking HTTP/1 clients to go
//! once the drain started, and answering HTTP/1.1 requests that do not name
//! exactly one host.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderValue, CONNECTION, HOST};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::service::Service;

use tokio_util::sync::CancellationToken;

use super::activity::{Activity, InFlight};
use super::reject::Rejections;
use crate::drain::{RequestGuard, Shutdown};
use crate::metrics::requests::Timing;
use crate::metrics::RequestStats;

/// What the wrapper does that depends on the protocol.
#[derive(Clone)]
pub(crate) enum Wire {
    /// HTTP/1: the connection's drain decides `Connection: close`; an
    /// HTTP/1.1 request must name one host (RFC 9112 §3.2), or it gets `400`
    /// and the connection closes.
    Http1 {
        drain: CancellationToken,
        peer: SocketAddr,
        rejections: Arc<Rejections>,
    },
    /// HTTP/2: a response with data to send counts on its connection until
    /// it is done, so a client that never opens its flow-control window
    /// shows as a stall (see `Activity::stalled_for`).
    Http2,
}

/// Wraps the user's service: each request is counted from the call until its
/// response body is finished (or dropped), and HTTP/1 responses produced once
/// the drain started carry `Connection: close`, so a keep-alive client learns
/// to reconnect elsewhere instead of having its next request raced by a close.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    shutdown: Shutdown,
    wire: Wire,
    // The connection's own count, for its idle timeout.
    activity: Arc<Activity>,
    stats: Option<Arc<RequestStats>>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(
        inner: S,
        shutdown: Shutdown,
        wire: Wire,
        activity: Arc<Activity>,
        stats: Option<Arc<RequestStats>>,
    ) -> Self {
        Tracked {
            inner,
            shutdown,
            wire,
            activity,
            stats,
        }
    }
}

/// Why an HTTP/1.1 request's `Host` is wrong, if it is.
fn host_problem(headers: &HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Some("an HTTP/1.1 request without a Host header"),
        (Some(_), Some(_)) => Some("an HTTP/1.1 request with more than one Host header"),
        (Some(_), None) => None,
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Tracked<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<TrackedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn call(&self, mut req: Request<ReqB>) -> Self::Future {
        let close = match &self.wire {
            Wire::Http1 {
                drain,
                peer,
                rejections,
            } => {
                if req.version() == Version::HTTP_11 {
                    if let Some(problem) = host_problem(req.headers()) {
                        rejections.record(*peer, StatusCode::BAD_REQUEST, problem);
                        return ResponseFuture {
                            state: State::Rejected,
                        };
                    }
                }
                // Absolute form (`GET http://host/path`): the target names
                // the host, and the Host header is ignored (RFC 9112
                // §3.2.2); the service sees the one the target names.
                if let Some(authority) = req.uri().authority() {
                    if req.headers().get(HOST).map(HeaderValue::as_bytes)
                        != Some(authority.as_str().as_bytes())
                    {
                        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                            req.headers_mut().insert(HOST, host);
                        }
                    }
                }
                Some(drain.clone())
            }
            Wire::Http2 => None,
        };
        let guard = (self.shutdown.track_request(), self.activity.begin_request());
        ResponseFuture {
            state: State::Serving {
                // Boxed so the future is Unpin whatever the user's is:
                // hyper's `poll_without_shutdown`, which the drain needs,
                // requires it.
                inner: Box::pin(self.inner.call(req)),
                guard: Some(guard),
                timing: self.stats.clone().map(Timing::start),
                close,
                http2: matches!(self.wire, Wire::Http2),
            },
        }
    }
}

enum State<F> {
    Serving {
        inner: Pin<Box<F>>,
        guard: Option<(RequestGuard, InFlight)>,
        timing: Option<Timing>,
        // HTTP/1: the drain, which decides `Connection: close`.
        close: Option<CancellationToken>,
        http2: bool,
    },
    /// Answered by grace: `400`, and the connection closes.
    Rejected,
}

pub(crate) struct ResponseFuture<F> {
    state: State<F>,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (inner, guard, timing, close, http2) = match &mut self.get_mut().state {
            State::Rejected => {
                let mut res = Response::new(TrackedBody {
                    inner: Inner::Rejected,
                    _guard: None,
                    timing: None,
                });
                *res.status_mut() = StatusCode::BAD_REQUEST;
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Poll::Ready(Ok(res));
            }
            State::Serving {
                inner,
                guard,
                timing,
                close,
                http2,
            } => (inner, guard, timing, close, *http2),
        };
        let mut res = ready!(inner.as_mut().poll(cx))?;
        if close.as_ref().is_some_and(CancellationToken::is_cancelled) {
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let mut guard = guard.take();
        if http2 {
            if let Some((_, in_flight)) = guard.as_mut() {
                in_flight.begin_sending();
            }
        }
        let mut timing = timing.take();
        if let Some(timing) = timing.as_mut() {
            timing.set_status(res.status());
        }
        Poll::Ready(Ok(res.map(|inner| TrackedBody {
            inner: Inner::Service { body: inner },
            _guard: guard,
            timing,
        })))
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Service { #[pin] body: B },
        // The empty body of a rejection.
        Rejected,
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted until it is done.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: Inner<B>,
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
        let body = match this.inner.project() {
            InnerProj::Service { body } => body,
            InnerProj::Rejected => return Poll::Ready(None),
        };
        let poll = body.poll_frame(cx);
        if let Some((_, in_flight)) = this._guard.as_mut() {
            // Waiting on its own body is the application's doing, not the
            // client's: not a stall.
            in_flight.body_waiting(poll.is_pending());
        }
        let frame = ready!(poll);
        if frame.is_none() {
            // Finished: stop counting now rather than when hyper drops us.
            this.timing.take();
            this._guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Service { body } => body.is_end_stream(),
            Inner::Rejected => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Service { body } => body.size_hint(),
            Inner::Rejected => SizeHint::with_exact(0),
        }
    }
}
