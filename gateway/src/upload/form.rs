//! The file part of a `multipart/form-data` upload, found under limits that hold whatever the
//! form looks like: everything before the file part (other fields, part headers, preamble) may
//! take at most [`PREAMBLE_BYTES`] and [`PREAMBLE_TIME`]. The limits are enforced on the body
//! stream itself, under the multipart parser, so a part header that never ends, a large field
//! before the file or a preamble sent a byte at a time are all stopped the same way. The file
//! part itself is then counted exactly by [`crate::upload::forward`].

use crate::error::Failure;
use crate::upload::Limits;
use axum::extract::Request;
use bytes::Bytes;
use futures::Stream;
use imaging_proto::v1::ErrorReason;
use multer::{Field, Multipart};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Bytes a form may send before its file part.
pub const PREAMBLE_BYTES: u64 = 64 * 1024;
/// Time a form may take before its file part.
pub const PREAMBLE_TIME: Duration = Duration::from_secs(5);

const READING: u8 = 0;
const IN_FILE: u8 = 1;
const TOO_LONG: u8 = 2;
const TOO_SLOW: u8 = 3;

/// A request body that fails once more than [`PREAMBLE_BYTES`] or [`PREAMBLE_TIME`] have gone
/// by without the file part being found.
struct Preamble<S> {
    body: S,
    seen: u64,
    state: Arc<AtomicU8>,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Stream for Preamble<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let state = this.state.load(Ordering::Acquire);
        if state != IN_FILE {
            if state != READING {
                return Poll::Ready(Some(Err(axum::Error::new("form preamble refused"))));
            }
            if this.seen > PREAMBLE_BYTES {
                this.state.store(TOO_LONG, Ordering::Release);
                return Poll::Ready(Some(Err(axum::Error::new("form preamble too long"))));
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                this.state.store(TOO_SLOW, Ordering::Release);
                return Poll::Ready(Some(Err(axum::Error::new("form preamble too slow"))));
            }
        }
        let polled = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            this.seen = this.seen.saturating_add(bytes.len() as u64);
        }
        polled
    }
}

/// A multipart form read under the preamble limits.
pub struct Form {
    multipart: Multipart<'static>,
    state: Arc<AtomicU8>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form").finish_non_exhaustive()
    }
}

impl Form {
    /// The form of `request` (a 400 if it is not `multipart/form-data` with a boundary).
    pub fn from_request(request: Request) -> Result<Form, Failure> {
        let boundary = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| multer::parse_boundary(value).ok())
            .ok_or_else(|| Failure::invalid_request("Expected a multipart/form-data body."))?;
        let flag = Arc::new(AtomicU8::new(READING));
        let guarded = Preamble {
            body: request.into_body().into_data_stream(),
            seen: 0,
            state: flag.clone(),
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + PREAMBLE_TIME)),
        };
        Ok(Form {
            multipart: Multipart::new(guarded, boundary),
            state: flag,
        })
    }

    /// The part named `name`, skipping the others; `MISSING_FILE` if the form has none.
    pub async fn file(&mut self, name: &str, limits: Limits) -> Result<Field<'static>, Failure> {
        let state = self.state.clone();
        loop {
            match self.multipart.next_field().await {
                Err(error) => return Err(self.failure(error, limits)),
                Ok(None) => {
                    return Err(Failure::local(
                        ErrorReason::MissingFile,
                        format!("The form has no `{name}` field."),
                    ));
                }
                Ok(Some(field)) if field.name() == Some(name) => {
                    state.store(IN_FILE, Ordering::Release);
                    return Ok(field);
                }
                Ok(Some(_)) => {}
            }
        }
    }

    /// [`Form::failure`] as a function that outlives the borrow of the form (for the file
    /// part's own read errors).
    pub fn failure_fn(&self, limits: Limits) -> impl FnOnce(multer::Error) -> Failure + use<> {
        let state = self.state.clone();
        move |error| failure(&state, error, limits)
    }

    /// The failure a multipart error is: the preamble's own limits, the size limit, or a
    /// malformed body.
    pub fn failure(&self, error: multer::Error, limits: Limits) -> Failure {
        failure(&self.state, error, limits)
    }
}

fn failure(state: &AtomicU8, error: multer::Error, limits: Limits) -> Failure {
    {
        match state.load(Ordering::Acquire) {
            TOO_LONG => Failure::invalid_request(format!(
                "The form sends more than {PREAMBLE_BYTES} bytes before its file."
            )),
            TOO_SLOW => Failure::local(
                ErrorReason::UploadTimeout,
                format!(
                    "The form took more than {} seconds to reach its file.",
                    PREAMBLE_TIME.as_secs()
                ),
            ),
            _ => multipart_failure(error, limits),
        }
    }
}

/// A multipart error as a failure: the size limit, or a malformed body.
pub fn multipart_failure(error: multer::Error, limits: Limits) -> Failure {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            Failure::too_large(limits.max_upload_bytes)
        }
        error => Failure::invalid_request("The multipart body is malformed.").with_detail(error),
    }
}
