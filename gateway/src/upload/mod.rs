//! Streaming an HTTP body into an UploadImage call without buffering it: the body is read
//! frame by frame, re-cut into chunks, counted against the limit and pushed through a bounded
//! channel while the gRPC call runs alongside.

pub mod body;
pub mod form;
pub mod rechunk;
pub mod stream;

pub use body::{Accepts, MULTIPART_ENVELOPE_BYTES, UploadBody};

use crate::error::Failure;
use crate::ingest::Ingest;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use imaging_proto::v1::{UploadHeader, UploadImageResponse};
use rechunk::Rechunker;
use stream::{Closed, UploadSender};
use tonic::Status;
use tracing::Instrument;

/// How much to forward, and in what pieces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest upload in bytes.
    pub max_upload_bytes: u64,
    /// Chunk size of the gRPC stream.
    pub chunk_bytes: usize,
}

/// Why reading the body stopped early.
#[derive(Debug)]
enum PumpError<E> {
    /// More than `max_upload_bytes` arrived.
    TooLarge,
    /// The body could not be read.
    Body(E),
    /// The call ended before the body did.
    Closed,
}

impl<E> From<Closed> for PumpError<E> {
    fn from(_: Closed) -> Self {
        PumpError::Closed
    }
}

/// Uploads `body` to the ingest service, with `header` first. `body_error` turns a body read
/// error into a client-facing failure. If the service answers before the body is read (a
/// refused token, a full quota), that answer is returned at once and the rest is not read.
///
/// The call runs in its own task so that it is never dropped half-way: dropping a tonic call
/// resets the stream with `CANCEL`, which a tonic server reads as a *clean* end of the request
/// stream, i.e. a complete (truncated) upload. Instead, every early stop (too large, body
/// error, deadline, or this future being dropped because the client went away) drops the
/// sender, and the stream is reset with an error the service cannot mistake for EOF.
pub(crate) async fn forward<S, E>(
    ingest: &Ingest,
    token: Option<&str>,
    header: UploadHeader,
    body: S,
    limits: Limits,
    body_error: impl FnOnce(E) -> Failure,
) -> Result<UploadImageResponse, Failure>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    forward_as(ingest, token, header, body, (limits, false), body_error).await
}

/// [`forward`] for a write to a resumable upload: every body frame goes on at once (split if it
/// is over a chunk), so that what the client sent before it stalled or vanished has reached the
/// service, which keeps it.
pub(crate) async fn forward_write<S, E>(
    ingest: &Ingest,
    token: Option<&str>,
    header: UploadHeader,
    body: S,
    limits: Limits,
    body_error: impl FnOnce(E) -> Failure,
) -> Result<UploadImageResponse, Failure>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    forward_as(ingest, token, header, body, (limits, true), body_error).await
}

async fn forward_as<S, E>(
    ingest: &Ingest,
    token: Option<&str>,
    header: UploadHeader,
    body: S,
    (limits, eager): (Limits, bool),
    body_error: impl FnOnce(E) -> Failure,
) -> Result<UploadImageResponse, Failure>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let deadline = tokio::time::Instant::now() + ingest.timeout();
    let (sender, upload) = stream::channel();
    let mut call = tokio::spawn({
        let ingest = ingest.clone();
        let token = token.map(str::to_owned);
        async move { ingest.upload(token.as_deref(), upload).await }.in_current_span()
    });
    let pump = tokio::time::timeout_at(deadline, pump(header, body, sender, limits, eager));
    let pumped = tokio::select! {
        answered = &mut call => return answer(answered),
        pumped = pump => pumped,
    };
    match pumped {
        Ok(Ok(bytes)) => tracing::debug!(bytes, "upload body forwarded"),
        // The service stopped reading: its answer says why.
        Ok(Err(PumpError::Closed)) => {}
        Ok(Err(PumpError::TooLarge)) => return Err(Failure::too_large(limits.max_upload_bytes)),
        Ok(Err(PumpError::Body(error))) => return Err(body_error(error)),
        Err(_) => return Err(Failure::from(Status::deadline_exceeded("upload timed out"))),
    }
    // The stream is complete (or the service already ended it), so cancelling is safe now.
    match tokio::time::timeout_at(deadline, &mut call).await {
        Ok(answered) => answer(answered),
        Err(_) => {
            call.abort();
            Err(Failure::from(Status::deadline_exceeded(
                "the ingest service did not answer in time",
            )))
        }
    }
}

/// The call task's result as a failure or response.
fn answer(
    joined: Result<Result<UploadImageResponse, Status>, tokio::task::JoinError>,
) -> Result<UploadImageResponse, Failure> {
    match joined {
        Ok(answered) => answered.map_err(Failure::from),
        Err(error) => Err(Failure::from(Status::internal("upload task failed")).with_detail(error)),
    }
}

/// Sends the header, then the body as chunks; finishes the stream only if all went well.
async fn pump<S, E>(
    header: UploadHeader,
    body: S,
    sender: UploadSender,
    limits: Limits,
    eager: bool,
) -> Result<u64, PumpError<E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut body = std::pin::pin!(body);
    sender.header(header).await?;
    let mut rechunker = Rechunker::new(limits.chunk_bytes);
    let mut total: u64 = 0;
    while let Some(frame) = body.next().await {
        let frame = frame.map_err(PumpError::Body)?;
        total = total.saturating_add(frame.len() as u64);
        if total > limits.max_upload_bytes {
            return Err(PumpError::TooLarge);
        }
        for chunk in rechunker.push(frame) {
            sender.chunk(chunk).await?;
        }
        if eager && let Some(rest) = rechunker.flush() {
            sender.chunk(rest).await?;
        }
    }
    if let Some(last) = rechunker.finish() {
        sender.chunk(last).await?;
    }
    sender.finish().await?;
    Ok(total)
}

#[cfg(test)]
mod tests;
