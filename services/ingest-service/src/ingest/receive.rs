//! Receiving an upload's bytes as they stream in: counted, hashed and sniffed chunk by chunk, so
//! an oversize, oversized-chunk or wrongly typed upload is refused the moment it shows.

use crate::error::IngestError;
use bytes::Bytes;
use imaging_pipeline::{MediaType, sniff};
use sha2::{Digest, Sha256};

/// Enough bytes to sniff every accepted type (PDF may carry leading junk, so it is decided later).
const SNIFF_BYTES: usize = 16;

/// Uploads declared at least this large are received into a pooled buffer.
const POOLED_FROM: usize = 1 << 20;
/// Buffers the pool keeps, at most, and the largest it keeps.
const POOLED_BUFFERS: usize = 2;
const POOLED_MAX: usize = 32 << 20;

/// Buffers of finished uploads, kept for the next ones: a fresh 9 MB buffer costs the kernel
/// some 2,300 page faults and as many zeroed pages, a reused one nothing. At most
/// [`POOLED_BUFFERS`] of at most [`POOLED_MAX`] bytes are kept while idle; a buffer comes back
/// when the last `Bytes` of its upload is dropped (the object written, the checks done).
#[derive(Debug, Default)]
pub struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer of at least `capacity` bytes: a kept one if one is large enough.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let kept = {
            let mut free = self
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let fits = free.iter().position(|b| b.capacity() >= capacity);
            fits.map(|at| free.swap_remove(at))
        };
        kept.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > POOLED_MAX {
            return;
        }
        buffer.clear();
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < POOLED_BUFFERS {
            free.push(buffer);
        } else if let Some(smallest) = free.iter_mut().min_by_key(|b| b.capacity())
            && smallest.capacity() < buffer.capacity()
        {
            *smallest = buffer;
        }
    }

    /// Buffers kept now.
    pub fn kept(&self) -> usize {
        self.free.lock().map_or(0, |free| free.len())
    }
}

/// A pooled buffer behind a `Bytes`: back to its pool when dropped.
struct Pooled {
    buffer: Vec<u8>,
    pool: std::sync::Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

/// Collects (or only hashes) one upload's bytes under the limits.
#[derive(Debug)]
pub struct Receiver {
    buffer: Vec<u8>,
    /// Bytes received so far (kept or not).
    received: u64,
    /// False: only count and hash (an idempotent replay stores nothing).
    keep: bool,
    /// The first bytes, for sniffing when the bytes are not kept.
    head: Vec<u8>,
    hasher: Sha256,
    /// CRC32C of the bytes so far, if asked for.
    crc32c: Option<u32>,
    max_bytes: u64,
    max_chunk: usize,
    declared: MediaType,
    sniffed: bool,
    /// Where the buffer goes back to, if it came from a pool.
    pool: Option<std::sync::Arc<BufferPool>>,
}

/// A complete upload.
#[derive(Debug)]
pub struct Received {
    /// The bytes (empty if they were not kept).
    pub bytes: Bytes,
    /// How many bytes arrived.
    pub size: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
    /// Their CRC32C, if asked for (what an S3 PUT with `storage.payload = "checksum"` is checked
    /// against).
    pub crc32c: Option<u32>,
    /// The same bytes being written to storage, if they were forwarded as they arrived.
    pub(crate) forwarded: Option<super::forward::Forward>,
    /// The check of the bytes run as they arrived, if one ran.
    pub(crate) early: Option<super::early_check::EarlyCheck>,
}

impl Receiver {
    /// A receiver for an upload declared as `declared` of about `declared_size` bytes; with
    /// `keep` false the bytes are only counted, hashed and sniffed.
    pub fn new(
        declared: MediaType,
        declared_size: u64,
        max_bytes: u64,
        max_chunk: usize,
        keep: bool,
    ) -> Self {
        let capacity = if keep {
            usize::try_from(declared_size.min(max_bytes)).unwrap_or(0)
        } else {
            0
        };
        Self {
            buffer: Vec::with_capacity(capacity),
            received: 0,
            keep,
            head: Vec::new(),
            hasher: Sha256::new(),
            crc32c: None,
            max_bytes,
            max_chunk,
            declared,
            sniffed: false,
            pool: None,
        }
    }

    /// Receives into a buffer of `pool` (if the upload is declared large enough to gain by it),
    /// which goes back once the upload's bytes are dropped.
    pub fn pooled(mut self, pool: &std::sync::Arc<BufferPool>) -> Self {
        let capacity = self.buffer.capacity();
        if self.keep && capacity >= POOLED_FROM {
            self.buffer = pool.take(capacity);
            self.pool = Some(pool.clone());
        }
        self
    }

    /// Also computes the bytes' CRC32C.
    pub fn with_crc32c(mut self) -> Self {
        self.crc32c = Some(0);
        self
    }

    /// The bytes kept so far (empty if they are not kept).
    pub fn kept(&self) -> &[u8] {
        &self.buffer
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.received
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Takes one chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        if chunk.len() > self.max_chunk {
            return Err(IngestError::ChunkTooLarge {
                size: chunk.len(),
                limit: self.max_chunk,
            });
        }
        if self.len() + chunk.len() as u64 > self.max_bytes {
            return Err(IngestError::FileTooLarge {
                limit: self.max_bytes,
            });
        }
        self.hasher.update(chunk);
        if let Some(crc) = &mut self.crc32c {
            *crc = crc32c::crc32c_append(*crc, chunk);
        }
        self.received += chunk.len() as u64;
        let head = if self.keep {
            self.buffer.extend_from_slice(chunk);
            &self.buffer
        } else {
            if self.head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
                self.head.extend_from_slice(&chunk[..take]);
            }
            &self.head
        };
        if !self.sniffed && head.len() >= SNIFF_BYTES {
            self.sniffed = true;
            // A PDF may start with junk, so only a positive sniff of another type is decisive.
            if let Some(found) = sniff(head)
                && found != self.declared
            {
                return Err(IngestError::ContentTypeMismatch {
                    declared: self.declared.mime(),
                });
            }
        }
        Ok(())
    }

    /// Ends the upload.
    pub fn finish(self) -> Result<Received, IngestError> {
        if self.received == 0 {
            return Err(IngestError::MissingFile);
        }
        Ok(Received {
            size: self.received,
            sha256: self.hasher.finalize().into(),
            crc32c: self.crc32c,
            forwarded: None,
            early: None,
            bytes: match self.pool {
                Some(pool) => Bytes::from_owner(Pooled {
                    buffer: self.buffer,
                    pool,
                }),
                None => Bytes::from(self.buffer),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG_HEAD: [u8; 16] = [
        0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1,
    ];

    #[test]
    fn the_byte_past_the_limit_ends_the_upload() {
        let mut receiver = Receiver::new(MediaType::Jpeg, 0, 20, 16, true);
        receiver.push(&JPEG_HEAD).unwrap();
        receiver.push(&[0; 4]).unwrap();
        assert!(matches!(
            receiver.push(&[0]),
            Err(IngestError::FileTooLarge { limit: 20 })
        ));
    }

    #[test]
    fn oversized_chunks_are_refused() {
        let mut receiver = Receiver::new(MediaType::Jpeg, 0, 100, 8, true);
        assert!(matches!(
            receiver.push(&[0; 9]),
            Err(IngestError::ChunkTooLarge { .. })
        ));
    }

    #[test]
    fn a_png_declared_as_jpeg_is_refused_as_soon_as_it_shows() {
        let mut receiver = Receiver::new(MediaType::Jpeg, 0, 100, 100, true);
        let png = [
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
        ];
        assert!(matches!(
            receiver.push(&png),
            Err(IngestError::ContentTypeMismatch { .. })
        ));
    }

    #[test]
    fn the_hash_covers_every_chunk_in_order() {
        let mut receiver = Receiver::new(MediaType::Jpeg, 0, 100, 100, true);
        receiver.push(&JPEG_HEAD[..5]).unwrap();
        receiver.push(&JPEG_HEAD[5..]).unwrap();
        let received = receiver.finish().unwrap();
        assert_eq!(received.bytes.as_ref(), &JPEG_HEAD);
        assert_eq!(received.sha256.to_vec(), Sha256::digest(JPEG_HEAD).to_vec());
    }

    #[test]
    fn a_receiver_that_keeps_nothing_still_counts_hashes_and_sniffs() {
        let mut receiver = Receiver::new(MediaType::Png, 0, 100, 100, false);
        assert!(matches!(
            receiver.push(&JPEG_HEAD),
            Err(IngestError::ContentTypeMismatch { .. })
        ));
        let mut receiver = Receiver::new(MediaType::Jpeg, 0, 100, 100, false);
        receiver.push(&JPEG_HEAD[..3]).unwrap();
        receiver.push(&JPEG_HEAD[3..]).unwrap();
        let received = receiver.finish().unwrap();
        assert!(received.bytes.is_empty());
        assert_eq!(received.size, 16);
        assert_eq!(received.sha256.to_vec(), Sha256::digest(JPEG_HEAD).to_vec());
    }

    #[test]
    fn a_large_upload_reuses_the_buffer_of_the_last_one_once_its_bytes_are_dropped() {
        let pool = std::sync::Arc::new(BufferPool::default());
        let size = 3 << 20;
        let receive = |fill: u8| {
            let mut receiver =
                Receiver::new(MediaType::Jpeg, size as u64, 8 << 20, 1 << 20, true).pooled(&pool);
            receiver.push(&JPEG_HEAD).unwrap();
            for _ in 0..3 {
                receiver.push(&vec![fill; (1 << 20) - 6]).unwrap();
            }
            receiver.finish().unwrap()
        };
        let first = receive(1);
        let address = first.bytes.as_ptr();
        let copy = first.bytes.clone();
        drop(first);
        assert_eq!(pool.kept(), 0, "a clone still holds the bytes");
        drop(copy);
        assert_eq!(pool.kept(), 1);
        let second = receive(2);
        assert_eq!(second.bytes.as_ptr(), address, "the same buffer");
        assert_eq!(pool.kept(), 0);
        assert_eq!(&second.bytes[..16], &JPEG_HEAD);
        assert!(
            second.bytes[16..].iter().all(|&b| b == 2),
            "nothing left of the first"
        );
        assert_eq!(second.bytes.len(), 16 + 3 * ((1 << 20) - 6));
        // A small upload does not take from the pool.
        drop(second);
        let small = Receiver::new(MediaType::Jpeg, 100, 200, 100, true).pooled(&pool);
        assert!(small.pool.is_none());
        assert_eq!(pool.kept(), 1);
    }

    #[test]
    fn an_empty_upload_is_a_missing_file() {
        let receiver = Receiver::new(MediaType::Pdf, 0, 100, 100, true);
        assert!(matches!(receiver.finish(), Err(IngestError::MissingFile)));
    }
}
