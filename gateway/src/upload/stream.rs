//! The UploadImage request stream: a bounded channel (backpressure) whose receiving end is the
//! gRPC request body, and a codec that can abort it.
//!
//! A stream that simply ends looks like a complete upload to the ingest service, so an upload
//! that fails half-way (client gone, body error, too large) must not just end. The sender
//! marks a clean end explicitly ([`UploadSender::finish`]); if it is dropped without one, the
//! stream yields [`Outgoing::Abort`], which [`UploadCodec`] refuses to encode. tonic then fails
//! the request body and hyper resets the HTTP/2 stream, so the service sees an error, not EOF.

use bytes::Bytes;
use imaging_proto::v1::upload_image_request::Part;
use imaging_proto::v1::{UploadHeader, UploadImageRequest, UploadImageResponse};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Messages buffered between the body reader and the gRPC stream. Two chunks keep the
/// gRPC stream fed while the next body frame is read; each extra one costs `chunk_bytes` of
/// memory per upload in flight.
pub const CHANNEL_CAPACITY: usize = 2;

/// One item of the request stream.
#[derive(Debug)]
pub enum Outgoing {
    /// A message to send.
    Message(Box<UploadImageRequest>),
    /// The upload failed: reset the stream instead of ending it.
    Abort,
}

/// The receiving side has gone: the call already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Writes the header and chunks; dropping it without [`UploadSender::finish`] aborts.
#[derive(Debug)]
pub struct UploadSender {
    tx: mpsc::Sender<Option<UploadImageRequest>>,
}

/// The request stream handed to tonic.
#[derive(Debug)]
pub struct UploadStream {
    rx: mpsc::Receiver<Option<UploadImageRequest>>,
    done: bool,
}

/// A bounded upload channel.
pub fn channel() -> (UploadSender, UploadStream) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    (UploadSender { tx }, UploadStream { rx, done: false })
}

impl UploadSender {
    /// Sends the header (always first).
    pub async fn header(&self, header: UploadHeader) -> Result<(), Closed> {
        self.send(Part::Header(header)).await
    }

    /// Sends one chunk; waits while the channel is full.
    pub async fn chunk(&self, chunk: Bytes) -> Result<(), Closed> {
        // `.into()` keeps this independent of whether prost maps `bytes` to `Vec` or `Bytes`.
        #[allow(clippy::useless_conversion)]
        self.send(Part::Chunk(chunk.into())).await
    }

    /// Ends the stream cleanly: the upload is complete.
    pub async fn finish(self) -> Result<(), Closed> {
        self.tx.send(None).await.map_err(|_| Closed)
    }

    async fn send(&self, part: Part) -> Result<(), Closed> {
        let message = UploadImageRequest { part: Some(part) };
        self.tx.send(Some(message)).await.map_err(|_| Closed)
    }
}

impl futures::Stream for UploadStream {
    type Item = Outgoing;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Some(message))) => {
                Poll::Ready(Some(Outgoing::Message(Box::new(message))))
            }
            Poll::Ready(Some(None)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Outgoing::Abort))
            }
        }
    }
}

/// Protobuf codec for UploadImage whose encoder fails on [`Outgoing::Abort`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadCodec;

/// Encoder of [`UploadCodec`].
#[derive(Debug, Default)]
pub struct UploadEncoder(ProstEncoder<UploadImageRequest>);

impl Encoder for UploadEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outgoing::Message(message) => self.0.encode(*message, dst),
            Outgoing::Abort => Err(Status::cancelled("upload aborted by the gateway")),
        }
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

impl Codec for UploadCodec {
    type Encode = Outgoing;
    type Decode = UploadImageResponse;
    type Encoder = UploadEncoder;
    type Decoder = ProstDecoder<UploadImageResponse>;

    fn encoder(&mut self) -> UploadEncoder {
        UploadEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_finished_upload_ends_the_stream_cleanly() {
        let (sender, mut stream) = channel();
        let task = tokio::spawn(async move {
            sender.header(UploadHeader::default()).await.unwrap();
            sender.chunk(Bytes::from_static(b"abc")).await.unwrap();
            sender.finish().await.unwrap();
        });
        assert!(matches!(stream.next().await, Some(Outgoing::Message(_))));
        match stream.next().await.map(|item| match item {
            Outgoing::Message(message) => message.part,
            Outgoing::Abort => None,
        }) {
            Some(Some(Part::Chunk(chunk))) => assert_eq!(&chunk[..], b"abc"),
            other => panic!("expected a chunk, got {other:?}"),
        }
        assert!(stream.next().await.is_none());
        assert!(stream.next().await.is_none());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_sender_dropped_without_finishing_aborts_the_stream() {
        let (sender, mut stream) = channel();
        sender.header(UploadHeader::default()).await.unwrap();
        drop(sender);
        assert!(matches!(stream.next().await, Some(Outgoing::Message(_))));
        assert!(matches!(stream.next().await, Some(Outgoing::Abort)));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn the_channel_holds_at_most_two_messages() {
        let (sender, _stream) = channel();
        for _ in 0..CHANNEL_CAPACITY {
            sender.chunk(Bytes::from_static(b"x")).await.unwrap();
        }
        let third = sender.chunk(Bytes::from_static(b"x"));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), third)
                .await
                .is_err()
        );
    }
}
