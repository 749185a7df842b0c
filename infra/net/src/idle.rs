//! A connection that fails once it has moved no request or answer byte, in either direction, for
//! a while: a client that sends half a request and goes silent, or never reads its answer, is
//! cut off. On an HTTP/2 connection only frames that carry requests and answers (HEADERS,
//! CONTINUATION, non-empty DATA) count: a client that only answers the server's keep-alive
//! PINGs, or trades SETTINGS and WINDOW_UPDATEs, is idle.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The HTTP/2 client connection preface (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where a reader of one direction of a connection is.
#[derive(Debug, Clone, Copy)]
enum Frames {
    /// Inbound, before the protocol is known: how much of the HTTP/2 preface has matched.
    Preface(usize),
    /// Outbound, before the inbound side has told the protocol.
    Undecided,
    /// Not HTTP/2: every byte counts.
    Bytes,
    /// HTTP/2, in a frame header: its bytes so far.
    Header([u8; 9], usize),
    /// HTTP/2, in a frame's payload: bytes left, and whether the frame counts.
    Payload(usize, bool),
}

impl Frames {
    /// Reads `bytes`; true if any of them belong to a request or an answer.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut counted = false;
        while !bytes.is_empty() {
            match *self {
                Frames::Bytes | Frames::Undecided => return true,
                Frames::Preface(matched) => {
                    let take = bytes.len().min(PREFACE.len() - matched);
                    if bytes[..take] != PREFACE[matched..matched + take] {
                        *self = Frames::Bytes;
                        return true;
                    }
                    bytes = &bytes[take..];
                    *self = if matched + take == PREFACE.len() {
                        Frames::Header([0; 9], 0)
                    } else {
                        Frames::Preface(matched + take)
                    };
                }
                Frames::Header(mut header, have) => {
                    let take = bytes.len().min(9 - have);
                    header[have..have + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if have + take < 9 {
                        *self = Frames::Header(header, have + take);
                        continue;
                    }
                    let length = (usize::from(header[0]) << 16)
                        | (usize::from(header[1]) << 8)
                        | usize::from(header[2]);
                    // DATA with a payload, HEADERS, CONTINUATION.
                    let counts = match header[3] {
                        0x0 => length > 0,
                        0x1 | 0x9 => true,
                        _ => false,
                    };
                    counted |= counts;
                    *self = Frames::Payload(length, counts);
                }
                Frames::Payload(left, counts) => {
                    let take = bytes.len().min(left);
                    counted |= counts && take > 0;
                    bytes = &bytes[take..];
                    *self = if left == take {
                        Frames::Header([0; 9], 0)
                    } else {
                        Frames::Payload(left - take, counts)
                    };
                }
            }
        }
        counted
    }

    fn is_http2(&self) -> Option<bool> {
        match self {
            Frames::Preface(_) | Frames::Undecided => None,
            Frames::Bytes => Some(false),
            Frames::Header(..) | Frames::Payload(..) => Some(true),
        }
    }
}

/// `io` with an idle timeout: any request or answer byte read or written pushes the deadline
/// back (HTTP/2 control frames do not).
#[derive(Debug)]
pub struct IdleTimeout<IO> {
    io: IO,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    inbound: Frames,
    outbound: Frames,
}

impl<IO> IdleTimeout<IO> {
    /// Wraps `io`; it fails with `TimedOut` after `idle` without progress.
    pub fn new(io: IO, idle: Duration) -> Self {
        IdleTimeout {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            inbound: Frames::Preface(0),
            outbound: Frames::Undecided,
        }
    }

    fn read_bytes(&mut self, bytes: &[u8]) {
        let undecided = self.inbound.is_http2().is_none();
        if self.inbound.feed(bytes) {
            self.progressed();
        }
        if undecided {
            match self.inbound.is_http2() {
                Some(true) => self.outbound = Frames::Header([0; 9], 0),
                Some(false) => self.outbound = Frames::Bytes,
                None => {}
            }
        }
    }

    fn wrote_bytes(&mut self, bytes: &[u8]) {
        if self.outbound.feed(bytes) {
            self.progressed();
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// A write's result: written bytes push the deadline back; a write that cannot go on fails
    /// once the deadline has passed.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(written)) => {
                let mut left = written;
                for buf in bufs {
                    if left == 0 {
                        break;
                    }
                    let take = left.min(buf.len());
                    self.wrote_bytes(&buf[..take]);
                    left -= take;
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    /// `Pending` as long as the deadline has not passed; a timeout error once it has.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read_bytes(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, &[io::IoSlice::new(buf)], polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, bufs, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleTimeout::new(server, Duration::from_millis(100));
        let mut client = client;
        let mut buf = [0u8; 8];
        for _ in 0..4 {
            client.write_all(b"x").await.unwrap();
            assert_eq!(server.read(&mut buf).await.unwrap(), 1);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let started = std::time::Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn http2_control_frames_are_not_activity_and_requests_are() {
        let mut inbound = Frames::Preface(0);
        assert!(!inbound.feed(&PREFACE[..10]));
        assert!(!inbound.feed(&PREFACE[10..]));
        assert_eq!(inbound.is_http2(), Some(true));
        // SETTINGS, PING (ACK), WINDOW_UPDATE, an empty DATA: control only.
        let mut control = frame(0x4, &[]);
        control.extend(frame(0x6, &[0; 8]));
        control.extend(frame(0x8, &[0, 0, 1, 0]));
        control.extend(frame(0x0, &[]));
        // Fed a byte at a time too: frame headers split across reads.
        for byte in &control {
            assert!(!inbound.feed(std::slice::from_ref(byte)));
        }
        assert!(inbound.feed(&frame(0x1, &[0x82])));
        assert!(inbound.feed(&frame(0x0, b"chunk")));
        let mut http1 = Frames::Preface(0);
        assert!(http1.feed(b"GET / HTTP/1.1\r\n"));
        assert_eq!(http1.is_http2(), Some(false));
    }
}
