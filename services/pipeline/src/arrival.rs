//! The bytes of an upload still arriving, read on another thread as they come: the receiver
//! pushes each chunk as it arrives and says at the end whether the upload came whole; a reader
//! (a JPEG check, see [`crate::verify_jpeg_arriving`]) takes the chunks in order, waiting for
//! the next one. A chunk is handed over as soon as it is taken, and handed back once read
//! ([`Arrival::spend`]), to be dropped by the receiver on its next push: the reader never frees
//! memory it did not allocate, which would give its memory meter (see [`crate::meter`]) room it
//! never had.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};

/// An upload's bytes as they arrive.
#[derive(Debug, Default)]
pub struct Arrival {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// Chunks read, for the receiver to drop.
    spent: Vec<Bytes>,
    /// `Some(true)`: every byte arrived; `Some(false)`: the upload failed.
    end: Option<bool>,
}

/// What a reader gets next.
#[derive(Debug)]
pub(crate) enum Next {
    /// The next bytes.
    Chunk(Bytes),
    /// Every byte was read.
    End,
    /// The upload failed: there is no more, and what came is not the file.
    Failed,
}

impl Arrival {
    /// Nothing arrived yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next chunk arrived (ignored once the arrival has ended).
    pub fn push(&self, chunk: Bytes) {
        let spent = {
            let mut state = self.state();
            if state.end.is_none() {
                state.queued += chunk.len();
                state.chunks.push_back(chunk);
                self.changed.notify_all();
            }
            std::mem::take(&mut state.spent)
        };
        // Dropped here, on the receiver's side.
        drop(spent);
    }

    /// A chunk the reader is done with, handed back to be dropped by the receiver.
    pub(crate) fn spend(&self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.state().spent.push(chunk);
        }
    }

    /// The upload ended: whole (`complete`) or failed. Only the first end counts.
    pub fn end(&self, complete: bool) {
        let mut state = self.state();
        if state.end.is_none() {
            state.end = Some(complete);
            if !complete {
                state.chunks.clear();
                state.queued = 0;
            }
            self.changed.notify_all();
        }
    }

    /// Bytes pushed and not yet read.
    pub fn queued(&self) -> usize {
        self.state().queued
    }

    /// The next chunk, waiting for it to arrive.
    pub(crate) fn next(&self) -> Next {
        let mut state = self.state();
        loop {
            if state.end == Some(false) {
                return Next::Failed;
            }
            if let Some(chunk) = state.chunks.pop_front() {
                state.queued -= chunk.len();
                return Next::Chunk(chunk);
            }
            if state.end == Some(true) {
                return Next::End;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_the_chunks_in_order_then_the_end_or_the_failure() {
        let arrival = std::sync::Arc::new(Arrival::new());
        let reader = {
            let arrival = arrival.clone();
            std::thread::spawn(move || {
                let mut read = Vec::new();
                loop {
                    match arrival.next() {
                        Next::Chunk(chunk) => read.extend_from_slice(&chunk),
                        Next::End => return Some(read),
                        Next::Failed => return None,
                    }
                }
            })
        };
        for i in 0..100u8 {
            arrival.push(Bytes::from(vec![i; usize::from(i)]));
        }
        arrival.end(true);
        arrival.end(false);
        let read = reader.join().unwrap().expect("whole");
        let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; usize::from(i)]).collect();
        assert_eq!(read, expected);
        assert_eq!(arrival.queued(), 0);

        let failed = Arrival::new();
        failed.push(Bytes::from_static(b"abc"));
        failed.end(false);
        assert!(matches!(failed.next(), Next::Failed));
        assert_eq!(failed.queued(), 0, "a failed arrival holds nothing");
    }
}
