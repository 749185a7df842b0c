//! Listeners that hold up against hostile clients, for both processes: every accepted connection
//! counts against a cap (with headroom below the file-descriptor limit, which is raised at
//! start), and is closed once it has moved no byte for an idle timeout, so silent and half-sent
//! connections cannot pile up. [`serve_http`] serves an axum router over such a listener with
//! HTTP/1 header-read timeouts and HTTP/2 stream limits and keep-alive; [`incoming`] feeds a
//! tonic server.

mod idle;
mod serve;

pub use idle::IdleTimeout;
pub use serve::serve_http;

use futures::Stream;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Connections open at once; more wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// A connection that moves no byte (either way) for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/1: the whole request head must arrive within this.
    pub header_read_timeout: Duration,
    /// HTTP/2: streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// HTTP/2: the server pings a quiet connection this often...
    pub keepalive_interval: Duration,
    /// ...and closes it if the ping is not answered within this.
    pub keepalive_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_streams: 100,
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept free for everything but accepted connections (storage and Redis
/// clients, files, the other listeners).
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection cap to use: the configured one, lowered to leave `RESERVED_DESCRIPTORS` free
/// below `open_files` when several listeners (`listeners`) share the process.
pub fn connection_cap(configured: usize, open_files: u64, listeners: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_DESCRIPTORS) / listeners.max(1);
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// One client address may hold at most this share of a listener's connections (1/N): a client
/// opening connections until the cap only fills its own share, and others still get in.
pub const ADDRESS_SHARE_DIVISOR: usize = 4;

/// A listener's connection slots: the cap, and what each client address holds of it.
#[derive(Debug, Clone)]
pub struct Slots {
    all: Arc<Semaphore>,
    per_address: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    share: usize,
}

impl Slots {
    /// `cap` connections at once, at most `cap / ADDRESS_SHARE_DIVISOR` (and at least one) per
    /// client address.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Slots {
            all: Arc::new(Semaphore::new(cap)),
            per_address: Arc::default(),
            share: (cap / ADDRESS_SHARE_DIVISOR).max(1),
        }
    }

    /// Takes a place for `address`; `None` if it holds its share already.
    fn take(&self, address: std::net::IpAddr) -> Option<AddressSlot> {
        let mut held = self
            .per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(address).or_insert(0);
        if *count >= self.share {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            address,
        })
    }
}

/// A connection's place in its address's share; dropping it gives the place back.
#[derive(Debug)]
struct AddressSlot {
    slots: Slots,
    address: std::net::IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

/// An accepted connection: idle-timed, holding its place under the connection cap and in its
/// client address's share.
#[derive(Debug)]
pub struct Guarded {
    io: IdleTimeout<TcpStream>,
    _permit: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

impl Guarded {
    fn inner(&mut self) -> std::pin::Pin<&mut IdleTimeout<TcpStream>> {
        std::pin::Pin::new(&mut self.io)
    }
}

impl tokio::io::AsyncRead for Guarded {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get_mut().inner().poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Guarded {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().inner().poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get_mut().inner().poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get_mut().inner().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().inner().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.get_ref().connect_info()
    }
}

/// Accepts connections from `listener` while fewer than `limits.max_connections` are open; a
/// connection from an address that holds its share already is closed at once.
pub async fn accept(
    listener: &TcpListener,
    slots: &Slots,
    limits: &ListenerLimits,
) -> std::io::Result<Guarded> {
    let permit = slots
        .all
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("listener closed"))?;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(address) = slots.take(peer.ip()) else {
                    tracing::debug!(%peer, "connection refused: its address holds its share");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                return Ok(Guarded {
                    io: IdleTimeout::new(stream, limits.idle_timeout),
                    _permit: permit,
                    _address: Some(address),
                });
            }
            // Out of descriptors or a connection reset before accept: wait, then go on.
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The connections of `listener`, guarded, as a stream for `tonic`'s `serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    limits: ListenerLimits,
) -> impl Stream<Item = std::io::Result<Guarded>> + Send + 'static {
    let slots = Slots::new(limits.max_connections);
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        let next = accept(&listener, &slots, &limits).await;
        Some((next, (listener, slots)))
    })
}

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn the_cap_leaves_room_below_the_descriptor_limit() {
        assert_eq!(connection_cap(1024, 1024, 1), 768);
        assert_eq!(connection_cap(1024, 1_048_576, 2), 1024);
        assert_eq!(connection_cap(1024, 1280, 2), 512);
        assert_eq!(connection_cap(1024, 10, 1), 1);
    }
}
