//! The status page on the admin listener: `/status` (HTML, readable
//! without script), `/status.json` (its JSON twin) and `/status/events`
//! (server-sent events, ending when the drain starts). Every other path
//! goes to the admin routes: `grace serve`'s or `grace run`'s.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use grace::status::{EventStream, ListenerStatus, StatusPage};
use grace::{Reloadable, Running};
use http::{header, HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use hyper::service::Service;

use crate::config::Config;

const EVENTS_PATH: &str = "/status/events";

type Body = Either<Full<Bytes>, EventStream>;

/// The admin service: the status page, then the admin routes `routes`.
#[derive(Clone)]
pub struct Admin<R> {
    page: Arc<StatusPage>,
    routes: R,
}

impl<R> Admin<R> {
    pub fn new(page: StatusPage, routes: R) -> Admin<R> {
        Admin {
            page: Arc::new(page),
            routes,
        }
    }

    fn page(&self, path: &str) -> Option<Response<Body>> {
        let (body, content_type) = match path {
            "/status" => (
                Either::Left(Full::new(Bytes::from(self.page.html(EVENTS_PATH)))),
                "text/html; charset=utf-8",
            ),
            "/status.json" => {
                let json = serde_json::to_vec(&self.page.snapshot())
                    .expect("invariant: a snapshot always serialises");
                (
                    Either::Left(Full::new(Bytes::from(json))),
                    "application/json",
                )
            }
            EVENTS_PATH => (Either::Right(self.page.events()), "text/event-stream"),
            _ => return None,
        };
        let mut res = Response::new(body);
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Always the state now, never a cached one.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(res)
    }
}

/// The admin listener's server, once it serves: the page is built before.
pub type AdminServing = Arc<OnceLock<Running>>;

/// The listeners `config` asks for, by kind, with the connections open on
/// each that `main` and `admin` serve.
pub fn listeners(
    config: &Reloadable<Config>,
    main: Running,
    admin: AdminServing,
) -> impl Fn() -> Vec<ListenerStatus> + Send + Sync {
    let config = config.clone();
    move || {
        let c = config.load();
        let open = main.open_connections();
        let kind = |kind: &'static str| {
            let open = &open;
            move |addr: &std::net::SocketAddr| ListenerStatus {
                kind,
                addr: addr.to_string(),
                connections: open_on(open, addr),
            }
        };
        let mut all: Vec<_> = c.server.listen.iter().map(kind("http")).collect();
        if let Some(tls) = &c.tls {
            all.extend(tls.listen.iter().map(kind("tls")));
        }
        all.extend(c.server.admin_listen.iter().map(|addr| ListenerStatus {
            kind: "admin",
            addr: addr.to_string(),
            connections: admin_open(&admin),
        }));
        all
    }
}

/// The connections open on the admin address (its server has that one
/// listener only).
pub fn admin_open(admin: &AdminServing) -> Option<usize> {
    admin
        .get()
        .map(|running| running.open_connections().iter().map(|(_, n)| n).sum())
}

/// The connections open on the listener for `addr`: listeners are named
/// after the address the configuration gives.
fn open_on(open: &[(String, usize)], addr: &std::net::SocketAddr) -> Option<usize> {
    let name = addr.to_string();
    open.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, count)| *count)
}

impl<B, R> Service<Request<B>> for Admin<R>
where
    R: Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible>,
    R::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AdminReply<R::Future>;

    fn call(&self, req: Request<B>) -> AdminReply<R::Future> {
        match self.page(req.uri().path()) {
            Some(res) => AdminReply::Page(Some(res)),
            None => AdminReply::Route(self.routes.call(req)),
        }
    }
}

/// The page's answer, ready at once, or the admin route's.
pub enum AdminReply<F> {
    Page(Option<Response<Body>>),
    Route(F),
}

impl<F> Future for AdminReply<F>
where
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AdminReply::Page(res) => Poll::Ready(Ok(res
                .take()
                .expect("invariant: AdminReply polled after completion"))),
            AdminReply::Route(reply) => Pin::new(reply)
                .poll(cx)
                .map(|res| res.map(|r| r.map(Either::Left))),
        }
    }
}
