//! One upload body for every dialect: what a request's headers say of its file (type, name,
//! declared size, idempotency key, digest, token), its size checked against the limit before a
//! byte is read, and the file itself (the raw body, or one field of a multipart form) ready to be
//! streamed to the ingest service with [`UploadBody::forward`].

use super::form::Form;
use super::{Limits, forward};
use crate::error::Failure;
use crate::headers;
use crate::ingest::Ingest;
use axum::body::BodyDataStream;
use axum::extract::Request;
use imaging_proto::v1::{Target, UploadHeader, UploadImageResponse};
use multer::Field;

/// Room for the multipart envelope (boundaries, part headers, small extra fields) on top of
/// the file itself.
pub const MULTIPART_ENVELOPE_BYTES: u64 = 64 * 1024;

/// The bodies a route takes.
#[derive(Debug, Clone, Copy)]
pub enum Accepts {
    /// The file's bytes, their type in `Content-Type`.
    Raw,
    /// `multipart/form-data` with the file in the named field.
    Form(&'static str),
    /// Either, by `Content-Type`.
    RawOrForm(&'static str),
}

/// Where the file's bytes come from.
enum File {
    Raw(BodyDataStream),
    Part {
        field: Box<Field<'static>>,
        failure: Box<dyn FnOnce(multer::Error) -> Failure + Send>,
    },
}

/// An upload read from a request, not yet sent.
pub struct UploadBody {
    header: UploadHeader,
    token: Option<String>,
    file: File,
    limits: Limits,
}

impl std::fmt::Debug for UploadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadBody")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl UploadBody {
    /// Reads what the request says of its file, and for a form, the parts before the file.
    /// Refused before the body is read: a declared size over the limit (413), malformed
    /// headers (400) and, for a form, a missing token (401).
    pub async fn read(
        request: Request,
        accepts: Accepts,
        limits: Limits,
    ) -> Result<UploadBody, Failure> {
        let headers = request.headers();
        let is_form = headers::media_type(&headers::content_type(headers)) == "multipart/form-data";
        let field = match accepts {
            Accepts::Raw => None,
            Accepts::Form(field) => Some(field),
            Accepts::RawOrForm(field) => is_form.then_some(field),
        };
        let declared_size = headers::content_length(headers)?;
        let envelope = if field.is_some() {
            MULTIPART_ENVELOPE_BYTES
        } else {
            0
        };
        if declared_size.is_some_and(|size| size > limits.max_upload_bytes.saturating_add(envelope))
        {
            return Err(Failure::too_large(limits.max_upload_bytes));
        }
        let mut header = UploadHeader {
            target: None,
            content_type: headers::content_type(headers),
            file_name: String::new(),
            declared_size: declared_size.unwrap_or(0),
            idempotency_key: headers::idempotency_key(headers)?,
            sha256: headers::client_sha256(headers)?,
            owner: String::new(),
            ..UploadHeader::default()
        };
        let Some(field) = field else {
            let token = headers::bearer_token(headers).map(str::to_owned);
            return Ok(UploadBody {
                header,
                token,
                file: File::Raw(request.into_body().into_data_stream()),
                limits,
            });
        };
        // No byte of a form is read for a caller without a token.
        let token = headers::required_token(headers)?.to_owned();
        let mut form = Form::from_request(request)?;
        let failure = Box::new(form.failure_fn(limits));
        let field = form.file(field, limits).await?;
        header.file_name = field.file_name().unwrap_or_default().to_owned();
        header.content_type = part_type(field.content_type().map(AsRef::as_ref), &header.file_name);
        // The form's length is not the file's.
        header.declared_size = 0;
        Ok(UploadBody {
            header,
            token: Some(token),
            file: File::Part {
                field: Box::new(field),
                failure,
            },
            limits,
        })
    }

    /// The declared type of the file (lower case, without parameters).
    pub fn content_type(&self) -> String {
        headers::media_type(&self.header.content_type)
    }

    /// Has the service process the file later (a new receipt, `process_async`): the answer
    /// comes once the file is stored and queued.
    pub fn processed_later(mut self) -> Self {
        self.header.process_async = true;
        self
    }

    /// The caller's token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Streams the file to `target`, for `owner` (empty: the caller), and returns the service's
    /// answer.
    pub async fn forward(
        self,
        ingest: &Ingest,
        target: Target,
        owner: String,
    ) -> Result<UploadImageResponse, Failure> {
        let header = UploadHeader {
            target: Some(target),
            owner,
            ..self.header
        };
        let token = self.token.as_deref();
        match self.file {
            File::Raw(body) => {
                forward(ingest, token, header, body, self.limits, |error| {
                    Failure::invalid_request("The request body could not be read.")
                        .with_detail(error)
                })
                .await
            }
            File::Part { field, failure } => {
                forward(ingest, token, header, *field, self.limits, failure).await
            }
        }
    }
}

/// The declared type of a file part; a missing or generic one is guessed from the name.
pub fn part_type(declared: Option<&str>, file_name: &str) -> String {
    let declared = declared.map(headers::media_type).unwrap_or_default();
    let generic = declared.is_empty() || declared == "application/octet-stream";
    match headers::guess_media_type(file_name) {
        Some(guessed) if generic => guessed.to_owned(),
        _ => declared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_type_is_taken_as_declared_or_guessed_from_the_name() {
        assert_eq!(part_type(Some("image/PNG"), "x.jpg"), "image/png");
        assert_eq!(
            part_type(Some("application/octet-stream"), "x.jpg"),
            "image/jpeg"
        );
        assert_eq!(part_type(None, "scan.webp"), "image/webp");
        assert_eq!(part_type(None, "scan"), "");
        assert_eq!(
            part_type(Some("application/octet-stream"), "x.bin"),
            "application/octet-stream"
        );
    }
}
