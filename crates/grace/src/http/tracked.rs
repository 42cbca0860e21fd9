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

use super::activity::{Activity, InFlight};
use super::reject::Rejections;

/// What the wrapper does that depends on the protocol.
#[derive(Clone)]
pub(crate) enum Wire {
    /// HTTP/1: the connection's drain decides `Connection: close`; an
    /// HTTP/1.1 request must name one host (RFC 9112 §3.2), or it gets `400`
    /// and the connection closes.
    Http1 {
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
///
/// Per request it touches only the connection's own state (see
/// [`Activity`]): no lock, and no write to a line other connections write.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    wire: Wire,
    // The connection: its request count (idle timeout, drain), drain flag
    // and tallies.
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, wire: Wire, activity: Arc<Activity>) -> Self {
        Tracked {
            inner,
            wire,
            activity,
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
    ReqB: Body,
{
    type Response = Response<TrackedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn call(&self, mut req: Request<ReqB>) -> Self::Future {
        let http1 = match &self.wire {
            Wire::Http1 { peer, rejections } => {
                if req.version() == Version::HTTP_11 {
                    if let Some(problem) = host_problem(req.headers()) {
                        rejections.record(*peer, StatusCode::BAD_REQUEST, problem);
                        return ResponseFuture {
                            state: State::Rejected,
                        };
                    }
                }
                self.activity.set_body(!req.body().is_end_stream());
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
                true
            }
            Wire::Http2 => false,
        };
        // Counted before the service is called: what it does at once
        // (a metrics scrape, say) sees its own request in flight.
        let guard = Some(self.activity.begin_request());
        ResponseFuture {
            state: State::Serving {
                inner: self.inner.call(req),
                guard,
                http1,
            },
        }
    }
}

pin_project_lite::pin_project! {
    // Not boxed: hyper keeps the in-flight future in an allocation of its
    // own, made once per connection.
    #[project = StateProj]
    enum State<F> {
        Serving {
            #[pin]
            inner: F,
            // Counts the request (drain, idle timeout, tallies) until its
            // body is done.
            guard: Option<InFlight>,
            // HTTP/1: the drain decides `Connection: close`.
            http1: bool,
        },
        // Answered by grace: `400`, and the connection closes.
        Rejected,
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (inner, guard, http1) = match self.project().state.project() {
            StateProj::Rejected => {
                let mut res = Response::new(TrackedBody {
                    inner: Inner::Rejected,
                    _guard: None,
                });
                *res.status_mut() = StatusCode::BAD_REQUEST;
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Poll::Ready(Ok(res));
            }
            StateProj::Serving {
                inner,
                guard,
                http1,
            } => (inner, guard, *http1),
        };
        let mut res = ready!(inner.poll(cx))?;
        let mut guard = guard.take();
        if let Some(in_flight) = guard.as_mut() {
            if http1 {
                if in_flight.draining() {
                    res.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
            } else {
                in_flight.begin_sending();
            }
            in_flight.set_status(res.status());
        }
        Poll::Ready(Ok(res.map(|inner| TrackedBody {
            inner: Inner::Service { body: inner },
            _guard: guard,
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
    /// A response body that keeps its request counted until it is done;
    /// the guard records the request (status, duration) when it goes.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: Inner<B>,
        _guard: Option<InFlight>,
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
        if let Some(in_flight) = this._guard.as_mut() {
            // Waiting on its own body is the application's doing, not the
            // client's: not a stall.
            in_flight.body_waiting(poll.is_pending());
        }
        let frame = ready!(poll);
        if frame.is_none() {
            // Finished: stop counting now rather than when hyper drops us.
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
