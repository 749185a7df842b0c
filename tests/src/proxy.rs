//! A TCP proxy the test controls, to lose a connection mid-upload: connections go to the first
//! upstream until the clients have sent `cut_after` bytes through the proxy in all, then that
//! connection is dropped on both sides (as a phone losing its network would), and every later
//! connection goes to the last upstream (the same server, or another replica).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running proxy; stops when dropped.
pub struct CutProxy {
    /// `http://127.0.0.1:port`.
    pub base: String,
    sent: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutProxy {
    /// Proxies to `first` (`host:port`) until the cut, then to `then`.
    pub async fn start(first: &str, then: &str, cut_after: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let (first, then) = (first.to_owned(), then.to_owned());
        let task = tokio::spawn({
            let (sent, cut) = (sent.clone(), cut.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let upstream = if cut.load(Ordering::SeqCst) {
                        &then
                    } else {
                        &first
                    };
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, sent.clone(), cut.clone(), cut_after));
                }
            }
        });
        CutProxy {
            base,
            sent,
            cut,
            task,
        }
    }

    /// Bytes the clients sent through the proxy.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// True once a connection was cut.
    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// Copies both ways; the client's bytes are counted, and the connection that takes the count
/// past `cut_after` (before any was cut) is dropped there.
async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    sent: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    cut_after: u64,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let before = sent.fetch_add(n as u64, Ordering::SeqCst);
            if before + n as u64 > cut_after && !cut.swap(true, Ordering::SeqCst) {
                // Half of what crosses the line goes through, then the line goes dead.
                let _ = server_write.write_all(&buffer[..n / 2]).await;
                return;
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let downward = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    // Whichever way ends first ends the connection.
    tokio::select! {
        () = upward => {}
        () = downward => {}
    }
}
