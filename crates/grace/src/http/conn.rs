//! One connection, from accept to close, under the drain rules:
//!
//! * a connection whose first request has not arrived yet is not idle: it
//!   waits up to the idle grace after the drain started for its bytes;
//! * HTTP/1 responses carry `Connection: close` once the drain started, and a
//!   connection left idle for the grace is closed between requests;
//! * HTTP/2 connections get the two-step GOAWAY and finish their streams;
//! * on force, everything is dropped at once.
//!
//! And under the [`Limits`]: a connection idle for the idle timeout is closed
//! the same way (asked first, dropped if it ignores the request for another
//! idle timeout); a write stuck on a client that does not read fails after
//! the write timeout, and an HTTP/2 connection whose responses wait on a
//! client that opens no flow-control window is closed after it too; heads
//! are bounded in time and size, and a request line longer than the head
//! limit gets `414` (see `detect::request_line_fits`).
//!
//! On a TLS listener the handshake comes first, bounded by the handshake
//! timeout and cut on force; a drain lets it finish (the connection was
//! accepted). The decrypted stream then goes through the same rules.
//!
//! Closing is lingering: send FIN, then read and discard what the client
//! still sends for a moment, so unread bytes do not turn the FIN into a RST
//! that could destroy a response still in the client's receive buffer.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, ReadActivity};
use super::admission::Slot;
use super::detect::{detect, request_line_fits, Protocol, Rewind};
use super::http2_io::Http2Io;
use super::limits::Limits;
use super::quiet::Quiet;
use super::reject::{self, Rejections};
use super::tracked::{Tracked, Wire};
use super::write_timeout::WriteTimeout;
use crate::drain::Shutdown;
use crate::error::BoxError;
use crate::metrics::RequestStats;

/// How long a closing connection reads and discards what the client still
/// sends before it is dropped.
const LINGER: Duration = Duration::from_secs(1);

/// A service a connection can serve: hyper's own bounds for its HTTP/1 and
/// HTTP/2 connections, named once for the functions here.
pub(crate) trait Served<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + Sync
    + 'static
{
}

impl<S, B> Served<B> for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
}

/// A response body a connection can send; see [`Served`].
pub(crate) trait ResponseBody:
    Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
}

/// What every connection of one listener is served under.
pub(crate) struct Setup<S> {
    pub(crate) service: Arc<S>,
    pub(crate) shutdown: Shutdown,
    /// The listener's drain: cancelled on shutdown, or when the listener is
    /// removed by a reload.
    pub(crate) drain: CancellationToken,
    /// Set (before `drain` is cancelled) when only this listener is removed.
    pub(crate) listener_stopped: Arc<AtomicBool>,
    pub(crate) limits: Limits,
    pub(crate) stats: Option<Arc<RequestStats>>,
    /// The server's count and log of requests it answers itself.
    pub(crate) rejections: Arc<Rejections>,
    /// Set on TLS listeners: each connection does the handshake first.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

pub(crate) async fn serve<S, B>(stream: TcpStream, peer: SocketAddr, slot: Slot, setup: Setup<S>)
where
    S: Served<B>,
    B: ResponseBody,
{
    // Counted from accept: a connection still in its TLS handshake is an
    // accepted connection, and the drain waits for it.
    let _counted = setup.shutdown.track_connection();
    let _slot = slot;
    // Small responses go out at once instead of waiting for an ACK.
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = setup.tls.clone() {
        let shutdown = setup.shutdown.clone();
        let handshake = tokio::select! {
            biased;
            _ = shutdown.forced() => return,
            accepted = tls.accept(stream) => accepted,
            _ = tokio::time::sleep(setup.limits.tls_handshake_timeout) => {
                tracing::debug!(%peer, "closing connection that did not complete the TLS handshake in time");
                return;
            }
        };
        match handshake {
            Ok(stream) => drive(stream, peer, setup).await,
            Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        }
        return;
    }
    drive(stream, peer, setup).await
}

/// Serves a connection's requests once its bytes are plain HTTP: right after
/// accept, or after the TLS handshake.
async fn drive<IO, S, B>(mut stream: IO, peer: SocketAddr, setup: Setup<S>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Served<B>,
    B: ResponseBody,
{
    let Setup {
        service,
        shutdown,
        drain,
        listener_stopped,
        limits,
        stats,
        rejections,
        ..
    } = setup;
    let mut buf = BytesMut::with_capacity(1024);
    let opening = async {
        let protocol = detect(&mut stream, &mut buf).await?;
        if protocol == Some(Protocol::Http1)
            && !request_line_fits(&mut stream, &mut buf, limits.header_size()).await?
        {
            return Ok(Some(Opening::UriTooLong));
        }
        Ok::<_, std::io::Error>(protocol.map(Opening::Speaks))
    };
    let protocol = {
        let mut idle = pin!(idle_deadline(&shutdown, &drain));
        tokio::select! {
            biased;
            _ = shutdown.forced() => return,
            opened = opening => match opened {
                Ok(Some(Opening::Speaks(protocol))) => protocol,
                Ok(Some(Opening::UriTooLong)) => {
                    let limit = limits.header_size();
                    rejections.record(peer, http::StatusCode::URI_TOO_LONG, format_args!("a request line longer than the head limit ({limit} bytes)"));
                    reject::answer_uri_too_long(&mut stream, limits.write_timeout).await;
                    linger_close(stream, &shutdown).await;
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%peer, "connection failed before a request: {e}");
                    return;
                }
            },
            _ = &mut idle => {
                tracing::debug!(%peer, "closing connection that sent nothing during the drain");
                linger_close(stream, &shutdown).await;
                return;
            }
            _ = tokio::time::sleep(limits.header_read_timeout) => {
                tracing::debug!(%peer, "closing connection that sent no request in time");
                return;
            }
        }
    };
    let activity = Activity::new(shutdown.clone(), listener_stopped, stats);
    let io = WriteTimeout::new(Rewind::new(buf.freeze(), stream), limits.write_timeout);
    let conn = Conn {
        peer,
        shutdown,
        drain,
        limits,
        activity,
        rejections,
    };
    match protocol {
        Protocol::Http1 => serve_http1(io, service, conn).await,
        Protocol::Http2 => serve_http2(io, service, conn).await,
    }
}

/// What an HTTP/1 connection's watch tells.
enum Watch {
    /// Remaining work must be dropped.
    Forced,
    /// Closing between requests, for this reason.
    Close(&'static str),
    /// The client took longer than the header read timeout to send a head.
    HeadLate,
}

/// What an HTTP/2 connection's watch tells.
enum Http2Event {
    /// Remaining work must be dropped.
    Forced,
    /// Its listener began draining: GOAWAY.
    Drained,
    /// No stream for the idle timeout: GOAWAY, or drop if already asked.
    Idle,
    /// Responses waited on the client's flow-control window for the write
    /// timeout.
    Stalled,
}

/// How a connection starts.
enum Opening {
    Speaks(Protocol),
    /// HTTP/1 with a request line longer than the whole head may be.
    UriTooLong,
}

/// What both protocols need to know about their connection.
struct Conn {
    peer: SocketAddr,
    shutdown: Shutdown,
    drain: CancellationToken,
    limits: Limits,
    activity: Arc<Activity>,
    rejections: Arc<Rejections>,
}

async fn serve_http1<IO, S, B>(io: WriteTimeout<Rewind<IO>>, service: Arc<S>, c: Conn)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Served<B>,
    B: ResponseBody,
{
    let Conn {
        peer,
        shutdown,
        limits,
        ..
    } = &c;
    // No timer for hyper: with one, it arms (and allocates) a header read
    // timer for every request. The connection keeps that deadline itself
    // (`Activity::head_late`).
    let mut conn = http1::Builder::new()
        .max_header_size(limits.header_size())
        // A client that shuts down its sending side after the request still
        // wants the response (`nc -N`, some proxies).
        .half_close(true)
        .keep_alive(true)
        // One buffer and one write(2) per response: queueing the body
        // beside the head for writev(2) costs hyper more than copying a
        // small body does (about 400 instructions per request, measured
        // with callgrind), and most responses are small. A large body is
        // copied once more on its way out.
        .writev(false)
        .serve_connection(
            TokioIo::new(ReadActivity::new(io, c.activity.clone())),
            Tracked::new(
                service,
                Wire::Http1 {
                    peer: *peer,
                    rejections: c.rejections.clone(),
                },
                c.activity.clone(),
            ),
        );
    let mut draining = pin!(idle_deadline(shutdown, &c.drain));
    let mut asked = false;
    let result = loop {
        // Everything but the connection itself, in one `Quiet`: polled when
        // one of them fires, not on each of the connection's wake-ups (a few
        // per request).
        let watch = Quiet::new(async {
            tokio::select! {
                biased;
                _ = shutdown.forced() => Watch::Forced,
                _ = &mut draining, if !asked => Watch::Close("draining"),
                _ = c.activity.idle_for(limits.idle_timeout) => Watch::Close("idle timeout"),
                _ = c.activity.head_late(limits.header_read_timeout) => Watch::HeadLate,
            }
        });
        tokio::select! {
            biased;
            // Polled as a future, which needs no `Unpin` service future:
            // hyper sends the FIN when it is done, and the lingering close
            // below reads on.
            result = &mut conn => break Some(result),
            watched = watch => match watched {
                Watch::Forced => return,
                Watch::HeadLate => break None,
                Watch::Close(_) if asked => {
                    tracing::debug!(%peer, "dropping a connection that ignored the request to close");
                    return;
                }
                Watch::Close(reason) => {
                    // hyper closes an idle connection now, and lets one with
                    // a request under way (or not yet started) finish it
                    // first.
                    tracing::debug!(%peer, reason, "closing http/1 connection");
                    asked = true;
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    };
    let parts = conn.into_parts();
    let ended_cleanly = matches!(result, Some(Ok(())));
    match result {
        Some(Ok(())) => {}
        Some(Err(e)) => match reject::hyper_answer(&e, &parts.read_buf) {
            Some(status) => c.rejections.record(*peer, status, e),
            None => tracing::debug!(%peer, "http/1 connection ended with an error: {e}"),
        },
        None => tracing::debug!(
            %peer,
            "closing http/1 connection: no request head within the header read timeout ({} ms)",
            limits.header_read_timeout.as_millis()
        ),
    }
    let mut io = parts.io.into_inner().into_inner().into_inner().into_inner();
    // As nginx's `lingering_close on`: a connection that ended cleanly on
    // its own (the client said `Connection: close`, or closed), with nothing
    // left to read and no request body that may still be arriving, closes at
    // once; hyper has sent the FIN. Lingering costs a timer, a wait on the
    // shared force token and a few system calls on every such connection.
    // One we asked to close (drain, idle timeout) lingers: the client's next
    // request may be on its way, and must meet a FIN, not a reset.
    let clean = ended_cleanly && !asked && parts.read_buf.is_empty();
    if clean && !c.activity.had_body() && !readable_now(&mut io).await {
        return;
    }
    linger_close(io, shutdown).await;
}

/// True when bytes are waiting to be read: closing now would answer them
/// with a reset.
async fn readable_now<IO: AsyncRead + Unpin>(io: &mut IO) -> bool {
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *io).poll_read(cx, &mut buf) {
            std::task::Poll::Ready(Ok(())) => !buf.filled().is_empty(),
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => false,
        })
    })
    .await
}

async fn serve_http2<IO, S, B>(io: WriteTimeout<Rewind<IO>>, service: Arc<S>, c: Conn)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Served<B>,
    B: ResponseBody,
{
    let Conn { peer, limits, .. } = &c;
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.http2_max_pending_reset_streams)
        .max_local_error_reset_streams(limits.http2_max_local_error_reset_streams)
        .max_header_list_size(u32::try_from(limits.header_size()).unwrap_or(u32::MAX))
        .serve_connection(
            TokioIo::new(Http2Io::new(io, c.activity.clone())),
            Tracked::new(service, Wire::Http2, c.activity.clone()),
        );
    let mut conn = pin!(conn);
    let mut drained = pin!(c.drain.cancelled());
    let mut going_away = false;
    let mut idle_asked = false;
    let result = loop {
        // Everything but the connection itself, in one `Quiet`: polled when
        // one of them fires, not on each of the connection's wake-ups
        // (several per stream).
        let events = Quiet::new(async {
            tokio::select! {
                biased;
                _ = c.shutdown.forced() => Http2Event::Forced,
                _ = &mut drained, if !going_away => Http2Event::Drained,
                _ = c.activity.idle_for(limits.idle_timeout) => Http2Event::Idle,
                _ = c.activity.stalled_for(limits.write_timeout) => Http2Event::Stalled,
            }
        });
        tokio::select! {
            biased;
            result = conn.as_mut() => break result,
            event = events => match event {
                Http2Event::Forced => return,
                Http2Event::Drained => {
                    // GOAWAY(2^31-1) and a PING, then the real last stream
                    // id once the PING comes back (h2 does the two steps of
                    // RFC 9113 §6.8).
                    going_away = true;
                    conn.as_mut().graceful_shutdown();
                }
                Http2Event::Idle => {
                    if idle_asked {
                        // Asked to go and still silent (it never answered the
                        // GOAWAY's PING): nothing is in flight, drop it.
                        tracing::debug!(%peer, "dropping an idle http/2 connection that ignored GOAWAY");
                        return;
                    }
                    tracing::debug!(%peer, "closing idle http/2 connection");
                    idle_asked = true;
                    going_away = true;
                    conn.as_mut().graceful_shutdown();
                }
                Http2Event::Stalled => {
                    // Flow control keeps the data here, so no write blocks
                    // and the write timeout never fires: the same rule, told
                    // by the connection. Its streams are cut; the client
                    // read none.
                    tracing::debug!(
                        %peer,
                        "closing http/2 connection: responses waited {} ms on a client that opened no flow-control window (write timeout)",
                        limits.write_timeout.as_millis()
                    );
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "http/2 connection ended with an error: {e}");
    }
}

/// Resolves once a connection with no request in flight should close: the
/// idle grace after its listener began draining (on shutdown, the
/// shutdown's grace; when only its listener was removed, the default).
async fn idle_deadline(shutdown: &Shutdown, drain: &CancellationToken) {
    drain.cancelled().await;
    let grace = shutdown.settings().unwrap_or_default().idle_grace;
    tokio::time::sleep(grace).await
}

async fn linger_close<IO>(mut io: IO, shutdown: &Shutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let linger = async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0u8; 4096];
        while let Ok(n) = io.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = linger => {}
        _ = tokio::time::sleep(LINGER) => {}
        _ = shutdown.forced() => {}
    }
}
