//! A single HTTP/1.1 keep-alive client for control-plane questions: is the
//! server up, which config version does it serve. Not used for load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub struct Probe {
    addr: SocketAddr,
    sender: Option<http1::SendRequest<Empty<Bytes>>>,
}

impl Probe {
    pub fn new(addr: SocketAddr) -> Self {
        Probe { addr, sender: None }
    }

    /// One GET, on the kept connection if it is still open.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        let reused = match self.sender.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let mut sender = match reused {
            Some(sender) => sender,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        let req = Request::get(path)
            .header(header::HOST, self.addr.to_string())
            .body(Empty::new())?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }

    /// Polls `path` until it answers 200, and returns when it did.
    pub async fn wait_ok(&mut self, path: &str, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((StatusCode::OK, _)) = self.get(path).await {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("{} gave no 200 on {path} within {timeout:?}", self.addr);
            }
            // Short, so start-to-ready is measured to a fraction of a millisecond.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Polls `path` until its body is `expected`; returns when it was.
    pub async fn wait_body(
        &mut self,
        path: &str,
        expected: &[u8],
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self
                .get(path)
                .await
                .with_context(|| format!("GET {path} while waiting for a new config"))?;
            if status == StatusCode::OK && body == expected {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!(
                    "{path} still answers {:?} after {timeout:?}, expected {:?}",
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(expected)
                );
            }
        }
    }
}
