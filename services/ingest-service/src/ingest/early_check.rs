//! Checking a forwarded JPEG while it arrives: once its first bytes hold its headers, libjpeg
//! starts reading the upload's chunks on the blocking pool as they come (see
//! [`imaging_pipeline::verify_jpeg_arriving`]), under the memory the check reserves, so that when
//! the last byte arrives the check is nearly done instead of about to begin. What it concludes
//! counts only if the whole file's headers, read again at the end, are those it started from
//! ([`imaging_pipeline::inspect_arrived_jpeg`]). A check that cannot start (headers not in the
//! first [`START_WITHIN`] bytes, looked for every [`LOOK_EVERY`] bytes; no memory), falls
//! behind by more than [`BACKLOG`] bytes or fails for its own reasons leaves the file to be
//! inspected whole, as without it. An upload that fails ends the check with it.

use super::Ingestor;
use super::budget::Reserved;
use super::plan::UploadPlan;
use super::process::blocking;
use crate::error::IngestError;
use bytes::Bytes;
use imaging_pipeline::{self as pipeline, Arrival, ArrivedCheck, Inspected, JpegStart, MediaType};
use std::sync::Arc;

/// The headers must have arrived within this many bytes for the check to start early.
const START_WITHIN: usize = 256 * 1024;

/// The headers are looked for once this many bytes have arrived, then again each time this many
/// more have (not at every chunk: a stream of tiny chunks must not have them read again and
/// again).
const LOOK_EVERY: usize = 16 * 1024;

/// The most bytes the check may have yet to read (reserved in the memory budget while it runs);
/// past that it is given up.
const BACKLOG: u64 = 8 << 20;

type Outcome = (
    Result<Result<ArrivedCheck, pipeline::PipelineError>, IngestError>,
    Reserved,
);

/// A check of an upload's JPEG as it arrives.
#[derive(Debug)]
pub struct EarlyCheck {
    arrival: Arc<Arrival>,
    state: State,
    /// The backlog's reservation.
    _backlog: Reserved,
    backlog: u64,
    /// Bytes received before the headers are looked for next.
    look_at: usize,
}

#[derive(Debug)]
enum State {
    /// Waiting for the headers.
    Waiting,
    Running {
        start: JpegStart,
        task: tokio::task::JoinHandle<Outcome>,
    },
    /// Not checked early.
    GaveUp,
}

impl Ingestor {
    /// A check to run while the upload `plan` describes arrives, if it is a JPEG kept as sent.
    pub(super) async fn early_check(&self, plan: &UploadPlan) -> Option<EarlyCheck> {
        if plan.media != MediaType::Jpeg {
            return None;
        }
        let backlog = plan.declared_size.min(BACKLOG);
        let reserved = self.budget.reserve(backlog).await.ok()?;
        Some(EarlyCheck {
            arrival: Arc::new(Arrival::new()),
            state: State::Waiting,
            _backlog: reserved,
            backlog,
            look_at: LOOK_EVERY,
        })
    }
}

impl EarlyCheck {
    /// Takes the next chunk (`received` is every byte so far, this chunk included), and starts
    /// the check once the headers are in.
    pub(super) async fn take(&mut self, ingestor: &Ingestor, received: &[u8], chunk: Bytes) {
        if matches!(self.state, State::GaveUp) {
            return;
        }
        self.arrival.push(chunk);
        if self.arrival.queued() as u64 > self.backlog {
            return self.give_up();
        }
        if !matches!(self.state, State::Waiting) || received.len() < self.look_at {
            return;
        }
        let limits = ingestor.limits.pipeline;
        let Some(start) = pipeline::jpeg_start(received, &limits) else {
            if received.len() >= START_WITHIN {
                self.give_up();
            }
            self.look_at = received.len() + LOOK_EVERY;
            return;
        };
        let Ok(reserved) = ingestor.budget.reserve(start.check_bytes()).await else {
            return self.give_up();
        };
        let (ingestor, arrival) = (ingestor.clone(), self.arrival.clone());
        let task = tokio::spawn(async move {
            let checked = blocking(&ingestor, "inspect_arriving", &reserved, move || {
                Ok(pipeline::verify_jpeg_arriving(&arrival, &start))
            })
            .await;
            (checked, reserved)
        });
        self.state = State::Running { start, task };
    }

    fn give_up(&mut self) {
        self.arrival.end(false);
        self.state = State::GaveUp;
    }

    /// Every byte arrived, and the upload passed the receiving checks.
    pub(super) fn arrived(&self) {
        self.arrival.end(true);
    }

    /// The inspection of the whole file `bytes` from this check's outcome: `None` if the check
    /// did not run, or failed for its own reasons (the file is then inspected whole).
    pub(super) async fn inspected(
        mut self,
        ingestor: &Ingestor,
        bytes: &Bytes,
    ) -> Option<Result<Inspected, IngestError>> {
        let State::Running { start, task } = std::mem::replace(&mut self.state, State::GaveUp)
        else {
            return None;
        };
        let (Ok(checked), reserved) = task.await.ok()? else {
            return None;
        };
        let (limits, bytes) = (ingestor.limits.pipeline, bytes.clone());
        Some(
            blocking(ingestor, "inspect", &reserved, move || {
                pipeline::inspect_arrived_jpeg(&bytes, &limits, &start, checked)
            })
            .await,
        )
    }
}

impl Drop for EarlyCheck {
    fn drop(&mut self) {
        // An upload that fails ends the check (an upload that arrived ended it already).
        self.arrival.end(false);
    }
}
