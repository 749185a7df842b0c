//! Streamed PUTs: one object written from bytes as they arrive, in `aws-chunked` encoding. With
//! `storage.payload = "signed"` every chunk carries a signature over its SHA-256, chained from
//! the request's (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`); with `"checksum"` the chunks are bare
//! and a CRC32C trailer covers them all (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`). Either way the
//! server checks every byte, and the last chunk is only sent once the caller says the bytes are
//! accepted ([`Streamed::End`]): an upload that fails or is refused before then leaves the PUT
//! short of its announced length, and S3 stores nothing.

use super::super::{StorageError, Streamed, StreamedBody, validate_key};
use super::request::{Resource, status};
use super::sigv4::ChunkSigner;
use super::{S3Store, crc32c_header};
use crate::configuration::PayloadCheck;
use bytes::Bytes;
use reqwest::Method;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::time::Duration;

/// Bytes of every chunk but the last data chunk.
const CHUNK_BYTES: usize = 128 * 1024;

const SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
const CRC32C_TRAILER: &str = "x-amz-checksum-crc32c";

/// `;chunk-signature=` and the 64 hex digits after it.
const SIGNATURE_LEN: u64 = 17 + 64;

/// The length of `size` bytes in `aws-chunked` encoding, chunks of [`CHUNK_BYTES`].
fn encoded_len(size: u64, signed: bool) -> u64 {
    let frame = |len: u64| -> u64 {
        let digits = format!("{len:x}").len() as u64;
        let signature = if signed { SIGNATURE_LEN } else { 0 };
        // "{len:x}[;chunk-signature=...]\r\n" + data + "\r\n"
        digits + signature + 2 + len + 2
    };
    let chunk = CHUNK_BYTES as u64;
    let (full, rest) = (size / chunk, size % chunk);
    let data = full * frame(chunk) + if rest > 0 { frame(rest) } else { 0 };
    let last = if signed {
        // "0;chunk-signature=...\r\n\r\n"
        frame(0)
    } else {
        // "0\r\n" "x-amz-checksum-crc32c:{8 base64 digits}\r\n" "\r\n"
        3 + (CRC32C_TRAILER.len() as u64 + 1 + 8 + 2) + 2
    };
    data + last
}

/// How the chunks are proven.
enum Proof {
    Signed(ChunkSigner),
    Trailer { crc: u32 },
}

/// Turns the caller's bytes into `aws-chunked` frames: whole chunks as soon as they fill, the
/// last one and the end only after [`Streamed::End`]. The caller's `Bytes` are sent as they are,
/// between frame headers: nothing is copied.
struct Encoder {
    body: StreamedBody,
    proof: Proof,
    size: u64,
    taken: u64,
    pending: Vec<Bytes>,
    pending_len: usize,
    out: VecDeque<Bytes>,
    done: bool,
}

impl Encoder {
    fn new(body: StreamedBody, proof: Proof, size: u64) -> Self {
        Encoder {
            body,
            proof,
            size,
            taken: 0,
            pending: Vec::new(),
            pending_len: 0,
            out: VecDeque::new(),
            done: false,
        }
    }

    /// The pending bytes as one chunk.
    fn frame(&mut self) {
        let len = std::mem::take(&mut self.pending_len);
        let pieces = std::mem::take(&mut self.pending);
        let header = match &mut self.proof {
            Proof::Signed(signer) => {
                let mut sha = Sha256::new();
                for piece in &pieces {
                    sha.update(piece);
                }
                format!(
                    "{len:x};chunk-signature={}\r\n",
                    signer.sign(&sha.finalize())
                )
            }
            Proof::Trailer { crc } => {
                for piece in &pieces {
                    *crc = crc32c::crc32c_append(*crc, piece);
                }
                format!("{len:x}\r\n")
            }
        };
        self.out.push_back(Bytes::from(header));
        self.out.extend(pieces);
        self.out.push_back(Bytes::from_static(b"\r\n"));
    }

    fn take(&mut self, mut bytes: Bytes) -> std::io::Result<()> {
        self.taken += bytes.len() as u64;
        if self.taken > self.size {
            return Err(std::io::Error::other("more bytes than announced"));
        }
        while !bytes.is_empty() {
            let room = CHUNK_BYTES - self.pending_len;
            let piece = bytes.split_to(room.min(bytes.len()));
            self.pending_len += piece.len();
            self.pending.push(piece);
            if self.pending_len == CHUNK_BYTES {
                self.frame();
            }
        }
        Ok(())
    }

    fn end(&mut self) {
        if self.pending_len > 0 {
            self.frame();
        }
        let last = match &mut self.proof {
            Proof::Signed(signer) => format!(
                "0;chunk-signature={}\r\n\r\n",
                signer.sign(&Sha256::digest([]))
            ),
            Proof::Trailer { crc } => {
                format!("0\r\n{CRC32C_TRAILER}:{}\r\n\r\n", crc32c_header(*crc))
            }
        };
        self.out.push_back(Bytes::from(last));
    }

    /// The next bytes to send; an error ends the request short (nothing is stored).
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if let Some(bytes) = self.out.pop_front() {
                return Some(Ok(bytes));
            }
            if self.done {
                return None;
            }
            let failed = match self.body.recv().await {
                Some(Streamed::Data(bytes)) => self.take(bytes).err(),
                Some(Streamed::End) if self.taken == self.size => {
                    self.end();
                    self.done = true;
                    None
                }
                _ => Some(std::io::Error::other("the write ended before its end")),
            };
            if let Some(err) = failed {
                self.done = true;
                return Some(Err(err));
            }
        }
    }
}

impl S3Store {
    /// [`crate::storage::ObjectStore::put_streamed`] on S3: one PUT in `aws-chunked` encoding.
    pub(super) async fn stream_put(
        &self,
        key: &str,
        size: u64,
        content_type: &str,
        body: StreamedBody,
        within: Duration,
    ) -> Result<(), StorageError> {
        validate_key(key)?;
        let signed = self.payload != PayloadCheck::Checksum;
        let decoded = size.to_string();
        let mut headers = vec![
            ("content-type", content_type),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", decoded.as_str()),
        ];
        if !signed {
            headers.push(("x-amz-trailer", CRC32C_TRAILER));
            headers.push(("x-amz-sdk-checksum-algorithm", "CRC32C"));
        }
        let payload = if signed { SIGNED } else { UNSIGNED_TRAILER };
        let (request, seed) =
            self.signed(Method::PUT, Resource::Object(key), &[], &headers, payload)?;
        let proof = if signed {
            Proof::Signed(self.signer.chunk_signer(&seed.amz_date, seed.signature))
        } else {
            Proof::Trailer { crc: 0 }
        };
        let encoder = Encoder::new(body, proof, size);
        let chunks = futures::stream::unfold(encoder, |mut encoder| async move {
            encoder.next().await.map(|item| (item, encoder))
        });
        let response = request
            .header(http::header::CONTENT_LENGTH, encoded_len(size, signed))
            .timeout(within)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .map_err(|err| StorageError::Unavailable(format!("PUT {key} (streamed): {err}")))?;
        let code = response.status().as_u16();
        let _ = response.bytes().await;
        match code {
            200..=299 => Ok(()),
            code => Err(status("PUT", key, code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `size` bytes sent as `sends`-byte messages, then `End`.
    async fn encode(size: usize, sends: usize, proof: Proof) -> Vec<u8> {
        let (sender, body) = tokio::sync::mpsc::channel(4);
        let feeder = tokio::spawn(async move {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            for piece in data.chunks(sends) {
                sender
                    .send(Streamed::Data(Bytes::copy_from_slice(piece)))
                    .await
                    .unwrap();
            }
            sender.send(Streamed::End).await.unwrap();
        });
        let mut encoder = Encoder::new(body, proof, size as u64);
        let mut out = Vec::new();
        while let Some(bytes) = encoder.next().await {
            out.extend_from_slice(&bytes.unwrap());
        }
        feeder.await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_announced_length_is_the_length_sent() {
        for size in [
            1,
            1000,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            3 * CHUNK_BYTES + 17,
        ] {
            for sends in [1000, 65_536, CHUNK_BYTES + 3] {
                let signer = super::super::sigv4::Signer::new("a", "b", "us-east-1");
                let proof = Proof::Signed(signer.chunk_signer("20261203T000000Z", "0".repeat(64)));
                let signed = encode(size, sends, proof).await;
                assert_eq!(
                    signed.len() as u64,
                    encoded_len(size as u64, true),
                    "{size}"
                );
                let unsigned = encode(size, sends, Proof::Trailer { crc: 0 }).await;
                assert_eq!(unsigned.len() as u64, encoded_len(size as u64, false));
            }
        }
    }

    #[tokio::test]
    async fn unsigned_chunks_carry_the_bytes_and_their_crc32c_in_the_trailer() {
        let out = encode(CHUNK_BYTES + 5, 7000, Proof::Trailer { crc: 0 }).await;
        let data: Vec<u8> = (0..CHUNK_BYTES + 5).map(|i| (i % 251) as u8).collect();
        let mut expected = format!("{CHUNK_BYTES:x}\r\n").into_bytes();
        expected.extend_from_slice(&data[..CHUNK_BYTES]);
        expected.extend_from_slice(b"\r\n5\r\n");
        expected.extend_from_slice(&data[CHUNK_BYTES..]);
        expected.extend_from_slice(
            format!(
                "\r\n0\r\nx-amz-checksum-crc32c:{}\r\n\r\n",
                crc32c_header(crc32c::crc32c(&data))
            )
            .as_bytes(),
        );
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn nothing_past_the_whole_chunks_is_sent_until_the_end_and_a_closed_body_fails() {
        let (sender, body) = tokio::sync::mpsc::channel(4);
        let mut encoder = Encoder::new(body, Proof::Trailer { crc: 0 }, 10);
        sender
            .send(Streamed::Data(Bytes::from_static(b"0123456789")))
            .await
            .unwrap();
        drop(sender);
        let next = encoder.next().await.expect("an item");
        assert!(next.is_err(), "all bytes but no End: the request fails");
        assert!(encoder.next().await.is_none());

        let (sender, body) = tokio::sync::mpsc::channel(4);
        let mut encoder = Encoder::new(body, Proof::Trailer { crc: 0 }, 4);
        sender
            .send(Streamed::Data(Bytes::from_static(b"01234")))
            .await
            .unwrap();
        assert!(
            encoder.next().await.expect("an item").is_err(),
            "more than announced"
        );
    }
}
