//! The `NOTIFY_SOCKET` of one generation: where it, or any process it
//! starts, sends `READY=1` (the sd_notify protocol: datagrams of
//! newline-separated `KEY=VALUE` lines).
//!
//! One socket per generation, so that a message can never be taken for
//! another generation's. It is read for the generation's whole life, not
//! only until ready: an app that keeps sending (`STATUS=`, `WATCHDOG=1`)
//! must never block on a full socket buffer.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Datagrams longer than this are cut: sd_notify messages are a few lines.
const MAX_DATAGRAM: usize = 4096;

pub(super) struct NotifySocket {
    path: PathBuf,
    ready: watch::Receiver<bool>,
    reader: JoinHandle<()>,
}

impl NotifySocket {
    /// Binds `dir/notify-GENERATION`, and reads it from now on.
    pub(super) fn bind(dir: &Path, generation: u64) -> io::Result<NotifySocket> {
        let path = dir.join(format!("notify-{generation}"));
        // Left behind by a generation of a grace that was killed.
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        let (tell, ready) = watch::channel(false);
        let reader = tokio::spawn(read(socket, tell, generation));
        Ok(NotifySocket {
            path,
            ready,
            reader,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves once `READY=1` arrived.
    ///
    /// # Cancel safety
    /// Cancel safe: a `READY=1` that arrives meanwhile is remembered.
    pub(super) async fn ready(&mut self) {
        if self.ready.wait_for(|ready| *ready).await.is_err() {
            // The reader ended (the socket failed): it logged why; never ready.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn read(socket: UnixDatagram, tell: watch::Sender<bool>, generation: u64) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(generation, "cannot read the app's notify socket: {e}");
                return;
            }
        };
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            match line.split_once('=') {
                Some(("READY", "1")) => {
                    if !*tell.borrow() {
                        tracing::debug!(generation, "the app sent READY=1");
                    }
                    tell.send_replace(true);
                }
                Some(("STATUS", status)) => tracing::debug!(generation, status, "app status"),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_among_other_lines_and_datagrams() {
        let dir = std::env::temp_dir().join(format!("grace-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut socket = NotifySocket::bind(&dir, 7).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.send_to(b"STATUS=booting", socket.path()).unwrap();
        client
            .send_to(b"STATUS=booted\nREADY=1\n", socket.path())
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(20), socket.ready())
            .await
            .expect("READY=1 was sent");
        let path = socket.path().to_owned();
        drop(socket);
        assert!(!path.exists(), "the socket file is removed with it");
        let _ = std::fs::remove_dir(&dir);
    }
}
