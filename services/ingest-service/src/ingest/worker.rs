//! The job queue's workers: every replica takes due jobs (at most `limits.jobs.workers` at
//! once), renews its hold on each while it works (every third of the lease), and runs the job
//! through the synchronous path: the received bytes read back and proved against their SHA-256,
//! `finish` (checks, conversion, the v4 reduction, commit). Then the job's record and its queue
//! entry change in one step: `PROCESSED` (entry gone), a retry with backoff for a failure that
//! may heal, or `FAILED` with the reason (entry gone, quota released).
//!
//! A worker that dies leaves its entry held; once the lease lapses the next worker takes it and
//! counts an attempt. Whatever point it died at, the next attempt finds the job's image if its
//! commit happened (the receipt's ID is the job's, created by compare-and-set), so the image is
//! stored and charged once.

use super::Ingestor;
use super::jobs::log;
use super::plan::UploadPlan;
use super::receive::Received;
use super::target::{Kind, TargetRef};
use crate::auth::Claims;
use crate::error::IngestError;
use crate::events::status_event;
use crate::state::{Delivery, ImageRecord, JobNext, JobRecord, JobStatus, now_millis};
use imaging_pipeline::MediaType;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Where a worker stops for good (crash tests; `IMAGING_JOB_FAILPOINT`): `taken` (it holds the
/// job and has not started), `processing` (the status says so), `committed` (the image is stored,
/// the status not yet updated). The process is then killed by the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// After taking the job.
    Taken,
    /// After marking it `PROCESSING`.
    Processing,
    /// After the commit, before the status update.
    Committed,
}

impl Failpoint {
    /// The failpoint named by `IMAGING_JOB_FAILPOINT`, if any.
    pub fn from_env() -> Option<Self> {
        match std::env::var("IMAGING_JOB_FAILPOINT").ok()?.as_str() {
            "taken" => Some(Failpoint::Taken),
            "processing" => Some(Failpoint::Processing),
            "committed" => Some(Failpoint::Committed),
            _ => None,
        }
    }
}

async fn stop_at(failpoint: Option<Failpoint>, here: Failpoint, job: &str) {
    if failpoint == Some(here) {
        tracing::warn!(job, failpoint = ?here, "failpoint reached: this worker stops here");
        std::future::pending::<()>().await;
    }
}

/// How often the queue's length is read for the `imaging.jobs.queued` gauge.
const QUEUE_COUNT_INTERVAL: Duration = Duration::from_secs(10);

/// How often expired job records are looked for (embedded store).
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

impl Ingestor {
    /// Works the job queue as `worker` (a name unique to this process) until the task is
    /// aborted.
    pub async fn work_jobs(self, worker: String) {
        let settings = self.limits.jobs.clone();
        if settings.workers == 0 {
            return;
        }
        let slots = Arc::new(Semaphore::new(settings.workers));
        let lease = Duration::from_secs(settings.lease_seconds.max(1));
        let poll = Duration::from_millis(settings.poll_millis.max(10));
        let failpoint = Failpoint::from_env();
        let mut expired_at = tokio::time::Instant::now();
        let mut counted_at = tokio::time::Instant::now() - QUEUE_COUNT_INTERVAL;
        loop {
            // A draining replica takes no new job; those it holds run to their end.
            let free = if self.admission.is_closed() {
                0
            } else {
                slots.available_permits()
            };
            if free > 0 {
                match self.catalog.take_jobs(&worker, free, lease).await {
                    Ok(taken) => {
                        for delivery in taken {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let ingestor = self.clone();
                            let worker = worker.clone();
                            tokio::spawn(async move {
                                ingestor.run_job(&worker, &delivery, lease, failpoint).await;
                                drop(permit);
                                ingestor.jobs_ready.notify_one();
                            });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "taking jobs failed; trying again"),
                }
            }
            if counted_at.elapsed() >= QUEUE_COUNT_INTERVAL {
                counted_at = tokio::time::Instant::now();
                if let Ok(queued) = self.catalog.queued_jobs().await {
                    self.metrics.jobs_queued.record(queued, &[]);
                }
            }
            if expired_at.elapsed() >= EXPIRY_INTERVAL {
                expired_at = tokio::time::Instant::now();
                if let Err(err) = self.catalog.expire_jobs(now_millis(), 256).await {
                    tracing::warn!(error = %err, "expired job records not removed");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = self.jobs_ready.notified() => {}
            }
        }
    }

    /// Works one job, renewing the hold on it meanwhile. A failure to change its record leaves
    /// the entry held: it is taken again once the lease lapses.
    async fn run_job(
        &self,
        worker: &str,
        delivery: &Delivery,
        lease: Duration,
        failpoint: Option<Failpoint>,
    ) {
        let renewing = {
            let catalog = self.catalog.clone();
            let delivery = delivery.clone();
            let worker = worker.to_owned();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match catalog.renew_job(&delivery, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = %delivery.job, "another worker took the job over");
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "the hold on a job was not renewed")
                        }
                    }
                }
            })
        };
        let span = tracing::info_span!("job", job = %delivery.job);
        let result =
            tracing::Instrument::instrument(self.work_job(delivery, failpoint), span).await;
        renewing.abort();
        if let Err(err) = result {
            tracing::warn!(job = %delivery.job, error = %err, "job left for another attempt");
        }
    }

    async fn work_job(
        &self,
        delivery: &Delivery,
        failpoint: Option<Failpoint>,
    ) -> Result<(), IngestError> {
        stop_at(failpoint, Failpoint::Taken, &delivery.job).await;
        let Some(mut job) = self.catalog.job(&delivery.job).await? else {
            tracing::warn!(job = %delivery.job, "a queued job has no record");
            return Ok(());
        };
        if job.status.is_final() {
            // Ended by an attempt whose change of the entry was lost: the entry goes now.
            let expected = job.version;
            job.version += 1;
            self.catalog
                .update_job(&job, expected, JobNext::Done(delivery), None)
                .await?;
            return Ok(());
        }
        // An earlier attempt committed and died before it said so.
        if let Some(image) = self.job_image(&job).await? {
            return self.job_processed(job, delivery, image).await;
        }
        let max_attempts = self.limits.jobs.max_attempts.max(1);
        if job.attempts >= max_attempts {
            let reason = job
                .logs
                .iter()
                .rev()
                .find(|line| !line.reason.is_empty())
                .map_or("INTERNAL".to_owned(), |line| line.reason.clone());
            let message = format!(
                "Processing failed: gave up after {} attempts.",
                job.attempts
            );
            return self.job_failed(job, delivery, &reason, message).await;
        }
        let expected = job.version;
        let started = job.status != JobStatus::Processing;
        job.version += 1;
        job.attempts += 1;
        job.status = JobStatus::Processing;
        job.logs.push(log(
            "INFO",
            format!("Processing started (attempt {}).", job.attempts),
            "",
        ));
        // A status event when it changes (a retry is processing still).
        let event = if started {
            self.event(|| status_event(&job))
        } else {
            None
        };
        if !self
            .catalog
            .update_job(&job, expected, JobNext::Hold(delivery), event.as_deref())
            .await?
        {
            // Another worker changed it first: it is that worker's now.
            return Ok(());
        }
        if event.is_some() {
            self.events.wrote(crate::state::JOBS_OUTBOX);
        }
        self.metrics.job_attempts.add(1, &[]);
        stop_at(failpoint, Failpoint::Processing, &job.id).await;
        match self.process_job(&job).await {
            Ok(image) => {
                stop_at(failpoint, Failpoint::Committed, &job.id).await;
                self.job_processed(job, delivery, image).await
            }
            Err(IngestError::AlreadyAttached) => match self.job_image(&job).await? {
                // Another attempt (a worker that took it over) committed first.
                Some(image) => self.job_processed(job, delivery, image).await,
                None => self.job_retry(job, delivery, &IngestError::Busy).await,
            },
            Err(err) if err.may_heal() && job.attempts < max_attempts => {
                self.job_retry(job, delivery, &err).await
            }
            Err(err) => {
                let message = format!("Processing failed: {}", err.public_message());
                self.job_failed(job, delivery, err.reason().as_str_name(), message)
                    .await
            }
        }
    }

    /// The job's image, if its commit happened.
    async fn job_image(&self, job: &JobRecord) -> Result<Option<ImageRecord>, IngestError> {
        let key = job_target(job).catalog_key();
        Ok(self.catalog.image(&job.workspace, &key).await?)
    }

    /// Reads the received bytes back and runs them through the synchronous path.
    async fn process_job(&self, job: &JobRecord) -> Result<ImageRecord, IngestError> {
        let held = self.budget.reserve(job.size).await?;
        let bytes =
            self.objects.get(&job.source).await?.ok_or_else(|| {
                IngestError::Internal("a job's received bytes are gone".to_owned())
            })?;
        let sha256: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if hex::encode(sha256) != job.sha256 || bytes.len() as u64 != job.size {
            return Err(IngestError::Internal(
                "a job's received bytes differ from what was received".to_owned(),
            ));
        }
        let media = MediaType::from_declared(&job.content_type)
            .ok_or_else(|| IngestError::Internal("a job's content type".to_owned()))?;
        let plan = UploadPlan {
            claims: Claims {
                sub: job.caller.clone(),
                ws: job.workspace.clone(),
                roles: Vec::new(),
                perms: Vec::new(),
                exp: 0,
            },
            target: job_target(job),
            policy: Kind::Receipt.policy(),
            workspace: job.workspace.clone(),
            owner: job.owner.clone(),
            media,
            declared_size: job.size,
            idempotency_key: String::new(),
            sha256: None,
            reservation: job.reservation.clone(),
            max_bytes: job.size,
            max_side: job.max_side,
        };
        let crc32c = self.objects.checks_crc32c().then(|| crc32c::crc32c(&bytes));
        let received = Received {
            size: job.size,
            sha256,
            crc32c,
            bytes,
            forwarded: None,
            early: None,
        };
        let uploaded = self.finish(plan, received).await?;
        drop(held);
        Ok(uploaded.record)
    }

    /// Ends the job `PROCESSED` with its image, then removes its received bytes.
    async fn job_processed(
        &self,
        mut job: JobRecord,
        delivery: &Delivery,
        image: ImageRecord,
    ) -> Result<(), IngestError> {
        let expected = job.version;
        job.version += 1;
        job.status = JobStatus::Processed;
        let shape = if image.width > 0 {
            format!(", {}x{} px", image.width, image.height)
        } else {
            format!(", {} page(s)", image.page_count)
        };
        job.logs.push(log(
            "INFO",
            format!(
                "Processed: stored {} bytes of {}{shape}.",
                image.size, image.content_type
            ),
            "",
        ));
        job.image = Some(image);
        self.end_job(job, expected, delivery).await
    }

    /// Ends the job `FAILED` with `reason`, releasing its quota and its received bytes.
    async fn job_failed(
        &self,
        mut job: JobRecord,
        delivery: &Delivery,
        reason: &str,
        message: String,
    ) -> Result<(), IngestError> {
        let expected = job.version;
        job.version += 1;
        job.status = JobStatus::Failed;
        job.reason = reason.to_owned();
        job.logs.push(log("ERROR", message, reason));
        self.end_job(job, expected, delivery).await
    }

    /// Writes a job's final record (from the version `expected`) and takes its entry out of the
    /// queue in one step; then gives back what is left of its reservation (the commit took it
    /// over if it stored the image) and removes its received bytes. Nothing, if another worker
    /// changed the job first.
    async fn end_job(
        &self,
        mut job: JobRecord,
        expected: u64,
        delivery: &Delivery,
    ) -> Result<(), IngestError> {
        let reservation = job.reservation.take();
        let event = self.event(|| status_event(&job));
        if !self
            .catalog
            .update_job(&job, expected, JobNext::Done(delivery), event.as_deref())
            .await?
        {
            return Ok(());
        }
        if event.is_some() {
            self.events.wrote(crate::state::JOBS_OUTBOX);
        }
        self.metrics.jobs_finished.add(
            1,
            &[opentelemetry::KeyValue::new("status", job.status.name())],
        );
        if let Some((reservation, _)) = reservation
            && let Err(err) = self.quota.release(&job.workspace, &reservation).await
        {
            tracing::warn!(error = %err, "a finished job's reservation lapses by itself");
        }
        self.discard_source(&job.source).await;
        Ok(())
    }

    /// Gives the job back to the queue, due after a backoff that doubles with every attempt.
    async fn job_retry(
        &self,
        mut job: JobRecord,
        delivery: &Delivery,
        err: &IngestError,
    ) -> Result<(), IngestError> {
        let settings = &self.limits.jobs;
        let doubling = 1u64 << job.attempts.saturating_sub(1).min(20);
        let wait = settings
            .retry_base_millis
            .saturating_mul(doubling)
            .min(settings.retry_max_seconds.saturating_mul(1000));
        let expected = job.version;
        job.version += 1;
        job.logs.push(log(
            "WARNING",
            format!(
                "Attempt {} failed: {}; trying again in {} s.",
                job.attempts,
                err.public_message(),
                wait.div_ceil(1000)
            ),
            err.reason().as_str_name(),
        ));
        let due = now_millis().saturating_add(wait);
        self.catalog
            .update_job(&job, expected, JobNext::Retry(delivery, due), None)
            .await?;
        Ok(())
    }
}

/// The receipt a job makes.
fn job_target(job: &JobRecord) -> TargetRef {
    TargetRef {
        kind: Kind::Receipt,
        id: job.id.clone(),
        workspace: String::new(),
    }
}
