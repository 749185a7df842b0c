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

/// Reading the first part's headers (or later ones').
const READING: u8 = 0;
/// In the file part: the limits no longer apply.
const IN_FILE: u8 = 1;
const TOO_LONG: u8 = 2;
const TOO_SLOW: u8 = 3;

/// A request body that gives the parser at most [`PREAMBLE_BYTES`] (and one frame) and
/// [`PREAMBLE_TIME`] before the file part is found. The parser reads ahead of what it parses,
/// so the file part's headers may already be among those bytes: past the limit the body
/// withholds the rest (and says so through `withheld`) while the parser works on what it has;
/// if that is not enough to reach the file part, [`Form::file`] refuses the form at once. Past
/// the time limit the body fails.
struct Preamble<S> {
    body: S,
    seen: u64,
    state: Arc<AtomicU8>,
    withheld: Arc<tokio::sync::Notify>,
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
        match state {
            IN_FILE => {}
            READING => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.state.store(TOO_SLOW, Ordering::Release);
                    return Poll::Ready(Some(Err(axum::Error::new("form preamble too slow"))));
                }
                if this.seen > PREAMBLE_BYTES {
                    // The deadline's timer wakes this; the parser goes on with what it has.
                    this.withheld.notify_one();
                    return Poll::Pending;
                }
            }
            _ => return Poll::Ready(Some(Err(axum::Error::new("form preamble refused")))),
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
    withheld: Arc<tokio::sync::Notify>,
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
        let withheld = Arc::new(tokio::sync::Notify::new());
        let guarded = Preamble {
            body: request.into_body().into_data_stream(),
            seen: 0,
            state: flag.clone(),
            withheld: withheld.clone(),
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + PREAMBLE_TIME)),
        };
        Ok(Form {
            multipart: Multipart::new(guarded, boundary),
            state: flag,
            withheld,
        })
    }

    /// The part named `name`, skipping the others; `MISSING_FILE` if the form has none.
    pub async fn file(&mut self, name: &str, limits: Limits) -> Result<Field<'static>, Failure> {
        let state = self.state.clone();
        loop {
            // Polled first: the parser may find the part in what it has read ahead. Only if it
            // cannot go on without the bytes withheld is the form over its preamble limit (once
            // the limit is passed, every wait of the parser is such a wait).
            let next = tokio::select! {
                biased;
                next = self.multipart.next_field() => next,
                () = self.withheld.notified() => {
                    state.store(TOO_LONG, Ordering::Release);
                    return Err(too_long());
                }
            };
            match next {
                Err(error) => return Err(failure(&state, error, limits)),
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
                // Another part: skipped, its bytes counted with the preamble's.
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
            TOO_LONG => too_long(),
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

fn too_long() -> Failure {
    Failure::invalid_request(format!(
        "The form sends more than {PREAMBLE_BYTES} bytes before its file."
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use proptest::prelude::*;

    /// A form: parts before the file (each with `headers` extra headers of `header_len`
    /// bytes and `size` bytes of data), then the file, sent in `frame`-byte frames.
    fn form(before: &[(usize, usize, usize)], file: &[u8]) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        for (n, &(headers, header_len, size)) in before.iter().enumerate() {
            body.extend_from_slice(
                format!("--B\r\nContent-Disposition: form-data; name=\"f{n}\"\r\n").as_bytes(),
            );
            for h in 0..headers {
                body.extend_from_slice(format!("X-{h}: ").as_bytes());
                body.extend(std::iter::repeat_n(b'h', header_len));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"\r\n");
            body.extend(std::iter::repeat_n(b'd', size));
            body.extend_from_slice(b"\r\n");
        }
        let preamble = body.len();
        body.extend_from_slice(
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n",
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--B--\r\n");
        (body, preamble)
    }

    fn request(body: Vec<u8>, frame: usize) -> Request {
        let frames: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(frame)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Request::post("/")
            .header("content-type", "multipart/form-data; boundary=B")
            .body(axum::body::Body::from_stream(futures::stream::iter(frames)))
            .unwrap()
    }

    async fn read_file(body: Vec<u8>, frame: usize) -> Result<Vec<u8>, Failure> {
        let limits = Limits {
            max_upload_bytes: 10 << 20,
            chunk_bytes: 256 << 10,
        };
        let mut form = Form::from_request(request(body, frame))?;
        let mut field = form.file("file", limits).await?;
        let mut out = Vec::new();
        while let Some(chunk) = field.next().await {
            out.extend_from_slice(&chunk.map_err(|e| multipart_failure(e, limits))?);
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Many parts, many and long headers, any framing: a form whose file part starts
        /// within the preamble limit gives its file byte for byte; one whose file starts well
        /// past it (more than the limit and two frames), or with a part of more than 32
        /// headers, is refused.
        #[test]
        fn the_file_is_found_within_the_preamble_limit_and_refused_past_it(
            before in proptest::collection::vec((0usize..40, 0usize..2000, 0usize..20_000), 0..12),
            file in proptest::collection::vec(any::<u8>(), 0..5000),
            frame in 1usize..70_000,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let (body, preamble) = form(&before, &file);
            let read = runtime.block_on(read_file(body, frame));
            // The parser takes at most 32 headers a part: more is a malformed form.
            let too_many_headers = before.iter().any(|&(headers, _, _)| headers + 1 > 32);
            if too_many_headers {
                let refused = read.unwrap_err();
                prop_assert_eq!(refused.reason(), Some(imaging_proto::v1::ErrorReason::InvalidRequest));
            } else if (preamble as u64) <= PREAMBLE_BYTES {
                let read = read.map_err(|failure| format!("{failure:?}"));
                prop_assert_eq!(read, Ok(file), "preamble {}, frame {}", preamble, frame);
            } else if preamble as u64 > PREAMBLE_BYTES + 2 * frame as u64 {
                let refused = read.unwrap_err();
                prop_assert_eq!(refused.reason(), Some(imaging_proto::v1::ErrorReason::InvalidRequest));
            } else {
                // Within a frame of the limit: either, as long as a file read is exact.
                if let Ok(read) = read {
                    prop_assert_eq!(read, file);
                }
            }
        }
    }
}
