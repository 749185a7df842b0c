//! Re-cutting body frames into upload chunks of at most a fixed size: large frames are split
//! without copying, small frames are gathered so the stream does not carry tiny messages.

use bytes::{Bytes, BytesMut};

/// Turns frames of any size into chunks of exactly `size` bytes, plus a shorter last one.
#[derive(Debug)]
pub struct Rechunker {
    size: usize,
    pending: BytesMut,
}

impl Rechunker {
    /// A re-cutter producing chunks of `size` bytes (`size` >= 1).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Rechunker {
            size,
            pending: BytesMut::new(),
        }
    }

    /// Takes one frame; returns the chunks it completes.
    pub fn push(&mut self, mut frame: Bytes) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        if !self.pending.is_empty() {
            let take = (self.size - self.pending.len()).min(frame.len());
            self.pending.extend_from_slice(&frame.split_to(take));
            if self.pending.len() == self.size {
                chunks.push(self.pending.split().freeze());
            }
        }
        while frame.len() >= self.size {
            chunks.push(frame.split_to(self.size));
        }
        if !frame.is_empty() {
            self.pending.extend_from_slice(&frame);
        }
        chunks
    }

    /// The bytes gathered so far as one shorter chunk, if there are any (the next chunk starts
    /// afresh).
    pub fn flush(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }

    /// The last, shorter chunk, if any bytes are left.
    pub fn finish(self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recut(frames: &[Bytes], size: usize) -> Vec<Bytes> {
        let mut rechunker = Rechunker::new(size);
        let mut chunks: Vec<Bytes> = frames
            .iter()
            .flat_map(|frame| rechunker.push(frame.clone()))
            .collect();
        chunks.extend(rechunker.finish());
        chunks
    }

    fn pattern(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into()
    }

    #[test]
    fn frames_of_one_byte_three_mebibytes_and_ten_bytes_become_bounded_chunks() {
        let size = 262_144;
        let frames = [pattern(1, 1), pattern(3 * 1024 * 1024, 2), pattern(10, 3)];
        let chunks = recut(&frames, size);
        assert!(
            chunks
                .iter()
                .all(|chunk| !chunk.is_empty() && chunk.len() <= size)
        );
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == size));
        assert_eq!(chunks.concat(), frames.concat());
        assert_eq!(chunks.len(), (3 * 1024 * 1024 + 11_usize).div_ceil(size));
    }

    #[test]
    fn small_frames_are_gathered_and_exact_multiples_leave_nothing_behind() {
        let frames: Vec<Bytes> = (0..10).map(|i| pattern(3, i)).collect();
        let chunks = recut(&frames, 4);
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [4; 7].iter().copied().chain([2]).collect::<Vec<_>>()
        );
        assert_eq!(chunks.concat(), frames.concat());

        let mut rechunker = Rechunker::new(5);
        assert_eq!(rechunker.push(pattern(10, 0)).len(), 2);
        assert!(rechunker.finish().is_none());
    }

    #[test]
    fn no_frames_give_no_chunks() {
        assert!(recut(&[], 8).is_empty());
        assert!(recut(&[Bytes::new()], 8).is_empty());
    }
}
