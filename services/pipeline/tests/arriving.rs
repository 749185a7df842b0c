//! A JPEG checked as it arrives, chunk by chunk on another thread, comes to the same outcome
//! as the whole file's inspection: the same fingerprint for a good file, a refusal for a
//! damaged, truncated or cut-off one.

#![allow(clippy::unwrap_used)]

use imaging_fixtures::{jpeg, with_orientation};
use imaging_pipeline::{
    Arrival, ArrivedCheck, Limits, MediaType, PipelineError, inspect, inspect_arrived_jpeg,
    jpeg_start, verify_jpeg_arriving,
};
use proptest::prelude::*;
use std::sync::Arc;

/// Sends `bytes` in chunks of the given sizes (cycled) to a check started from the first
/// chunk that holds the headers, ending the arrival as `complete` says; returns the inspection
/// of the whole file from that check.
fn arrive(
    bytes: &[u8],
    sizes: &[usize],
    complete: bool,
) -> Result<imaging_pipeline::Inspected, PipelineError> {
    let limits = Limits::default();
    let arrival = Arc::new(Arrival::new());
    let mut check = None;
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size.max(&1)).min(bytes.len());
        arrival.push(bytes::Bytes::copy_from_slice(&bytes[at..end]));
        at = end;
        if check.is_none()
            && let Some(start) = jpeg_start(&bytes[..at], &limits)
        {
            let arrival = arrival.clone();
            check = Some((
                start,
                std::thread::spawn(move || verify_jpeg_arriving(&arrival, &start)),
            ));
        }
    }
    arrival.end(complete);
    let (start, check) = check.expect("the headers arrived");
    let outcome = check.join().unwrap();
    if !complete {
        assert!(outcome.is_err(), "a failed arrival fails the check");
    }
    inspect_arrived_jpeg(bytes, &limits, &start, outcome)
}

/// An outcome to compare: the inspection, or the refusal's text.
fn outcome(
    result: Result<imaging_pipeline::Inspected, PipelineError>,
) -> Result<imaging_pipeline::Inspected, String> {
    result.map_err(|err| err.to_string())
}

#[test]
fn a_jpeg_checked_as_it_arrives_gets_the_fingerprint_of_the_whole_file() {
    let limits = Limits::default();
    for bytes in [
        jpeg(1600, 1200),
        with_orientation(&jpeg(1200, 700), 6),
        jpeg(300, 200),
    ] {
        let whole = inspect(&bytes, MediaType::Jpeg, &limits).unwrap();
        assert!(whole.fingerprint.is_some());
        for sizes in [&[65_536][..], &[1, 7, 4_096, 100_000], &[bytes.len()]] {
            assert_eq!(arrive(&bytes, sizes, true).unwrap(), whole, "{sizes:?}");
        }
    }
}

#[test]
fn a_damaged_or_cut_off_jpeg_checked_as_it_arrives_is_refused() {
    let limits = Limits::default();
    let bytes = jpeg(1600, 1200);
    // Entropy-coded data overwritten in the middle.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle..middle + 2_000].fill(0xFF);
    let whole = inspect(&damaged, MediaType::Jpeg, &limits);
    assert!(matches!(whole, Err(PipelineError::Corrupt(_))), "{whole:?}");
    assert_eq!(outcome(arrive(&damaged, &[32_768], true)), outcome(whole));
    // The end of the file missing.
    let cut = &bytes[..bytes.len() - 5_000];
    assert!(matches!(
        arrive(cut, &[32_768], true),
        Err(PipelineError::Corrupt(_))
    ));
    // Every byte arrived, but the upload failed: the check never passes (the whole file's
    // inspection would; the service never gets there).
    let arrival = Arc::new(Arrival::new());
    let start = jpeg_start(&bytes, &limits).unwrap();
    let check = {
        let arrival = arrival.clone();
        std::thread::spawn(move || verify_jpeg_arriving(&arrival, &start))
    };
    arrival.push(bytes::Bytes::copy_from_slice(&bytes[..bytes.len() / 2]));
    arrival.end(false);
    assert!(check.join().unwrap().is_err());
    assert!(!matches!(
        verify_jpeg_arriving(&arrival, &start),
        Ok(ArrivedCheck::Passed(_))
    ));
}

/// A chunk that records which thread dropped it.
struct Tracked {
    bytes: Vec<u8>,
    dropped_on: Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped_on
            .lock()
            .unwrap()
            .push(std::thread::current().id());
    }
}

#[test]
fn the_check_frees_none_of_the_chunks_it_reads() {
    // The check runs under a memory meter that counts what its thread allocates and frees: a
    // chunk the receiver allocated, freed on the check's thread, would give it room it never
    // had. Every chunk read goes back to be dropped by the receiver.
    let limits = Limits::default();
    let bytes = jpeg(1600, 1200);
    let start = jpeg_start(&bytes, &limits).unwrap();
    let dropped_on = Arc::new(std::sync::Mutex::new(Vec::new()));
    let arrival = Arc::new(Arrival::new());
    let check = {
        let arrival = arrival.clone();
        std::thread::spawn(move || {
            let outcome = verify_jpeg_arriving(&arrival, &start);
            (outcome, std::thread::current().id())
        })
    };
    let chunks: Vec<&[u8]> = bytes.chunks(8 * 1024).collect();
    for chunk in &chunks {
        arrival.push(bytes::Bytes::from_owner(Tracked {
            bytes: chunk.to_vec(),
            dropped_on: dropped_on.clone(),
        }));
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    arrival.end(true);
    let (outcome, checker) = check.join().unwrap();
    assert!(matches!(outcome, Ok(ArrivedCheck::Passed(Some(_)))));
    // The receiver pushes once more (its last chunk's successor, here an empty one), and lets
    // the arrival go: every chunk is dropped, none on the check's thread.
    arrival.push(bytes::Bytes::new());
    drop(arrival);
    let dropped_on = dropped_on.lock().unwrap();
    assert_eq!(dropped_on.len(), chunks.len(), "every chunk was dropped");
    assert!(
        !dropped_on.contains(&checker),
        "a chunk was freed by the check's thread"
    );
}

#[test]
fn headers_are_only_taken_once_the_first_scan_begins() {
    let limits = Limits::default();
    let bytes = with_orientation(&jpeg(800, 600), 6);
    let sos = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan");
    assert!(jpeg_start(&bytes[..sos / 2], &limits).is_none());
    assert!(jpeg_start(&bytes[..sos + 20], &limits).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// However the bytes are cut into chunks, and whatever byte is changed, the check as it
    /// arrives and the whole file's inspection agree.
    #[test]
    fn any_chunking_and_any_damage_give_the_whole_files_outcome(
        sizes in proptest::collection::vec(1usize..50_000, 1..6),
        at in 0.0f64..1.0,
        value in any::<u8>(),
    ) {
        let limits = Limits::default();
        let mut bytes = jpeg(640, 480);
        let index = ((bytes.len() - 1) as f64 * at) as usize;
        bytes[index] = value;
        let whole = inspect(&bytes, MediaType::Jpeg, &limits);
        // A file whose headers no longer parse never starts a check as it arrives.
        if jpeg_start(&bytes, &limits).is_some() {
            prop_assert_eq!(outcome(arrive(&bytes, &sizes, true)), outcome(whole));
        }
    }
}
