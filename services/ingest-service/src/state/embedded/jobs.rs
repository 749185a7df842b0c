//! The job queue: the record, its queue entry and the index of when entries fall due change
//! together in one transaction. A held entry falls due again when its holder's lease runs out,
//! so a job whose worker died is taken by the next worker that looks.

use super::outbox::append_event;
use super::tables::{JOB_DUE, JOB_EXPIRY, JOB_QUEUE, JOBS};
use super::{EmbeddedState, decode, encode, failed};
use crate::state::{Delivery, JOBS_OUTBOX, JobNext, JobRecord, StateError, millis, now_millis};
use redb::{ReadableTable, ReadableTableMetadata};
use std::time::Duration;

/// Puts the queue entry of `id` at `due`, held by `holder` (empty: nobody).
fn place(txn: &redb::WriteTransaction, id: &str, due: u64, holder: &str) -> Result<(), StateError> {
    let mut queue = txn.open_table(JOB_QUEUE).map_err(failed)?;
    let mut index = txn.open_table(JOB_DUE).map_err(failed)?;
    let previous = queue.get(id).map_err(failed)?.map(|entry| entry.value().0);
    if let Some(previous) = previous {
        index.remove((previous, id)).map_err(failed)?;
    }
    queue.insert(id, (due, holder)).map_err(failed)?;
    index.insert((due, id), ()).map_err(failed)?;
    Ok(())
}

/// Takes the queue entry of `id` away.
fn unqueue(txn: &redb::WriteTransaction, id: &str) -> Result<(), StateError> {
    let mut queue = txn.open_table(JOB_QUEUE).map_err(failed)?;
    let previous = queue
        .remove(id)
        .map_err(failed)?
        .map(|entry| entry.value().0);
    if let Some(previous) = previous {
        txn.open_table(JOB_DUE)
            .map_err(failed)?
            .remove((previous, id))
            .map_err(failed)?;
    }
    Ok(())
}

impl EmbeddedState {
    pub(super) async fn enqueue_job_record(
        &self,
        job: &JobRecord,
        event: Option<&str>,
    ) -> Result<(), StateError> {
        let job = job.clone();
        let event = event.map(str::to_owned);
        self.write(move |txn| {
            if let Some(event) = &event {
                append_event(txn, JOBS_OUTBOX, event)?;
            }
            txn.open_table(JOBS)
                .map_err(failed)?
                .insert(job.id.as_str(), encode(&job)?.as_str())
                .map_err(failed)?;
            txn.open_table(JOB_EXPIRY)
                .map_err(failed)?
                .insert((job.expires_ms, job.id.as_str()), ())
                .map_err(failed)?;
            place(txn, &job.id, 0, "")
        })
        .await
    }

    pub(super) async fn job_record(&self, id: &str) -> Result<Option<JobRecord>, StateError> {
        // A final record whose time is up is gone, whether or not the sweep removed it yet.
        let job: Option<JobRecord> = self.get_json(JOBS, id).await?;
        Ok(job.filter(|job| !(job.status.is_final() && job.expires_ms <= now_millis())))
    }

    pub(super) async fn take_job_entries(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StateError> {
        let worker = worker.to_owned();
        self.write(move |txn| {
            let now = now_millis();
            let due: Vec<String> = {
                let index = txn.open_table(JOB_DUE).map_err(failed)?;
                let mut due = Vec::new();
                for entry in index.range((0, "")..(now + 1, "")).map_err(failed)? {
                    if due.len() >= limit {
                        break;
                    }
                    let (key, _) = entry.map_err(failed)?;
                    due.push(key.value().1.to_owned());
                }
                due
            };
            let until = now.saturating_add(millis(lease));
            let mut taken = Vec::new();
            for id in due {
                let token = format!("{worker}/{}", uuid::Uuid::new_v4().simple());
                place(txn, &id, until, &token)?;
                taken.push(Delivery {
                    job: id,
                    entry: token,
                });
            }
            Ok(taken)
        })
        .await
    }

    pub(super) async fn renew_job_entry(
        &self,
        delivery: &Delivery,
        _worker: &str,
        lease: Duration,
    ) -> Result<bool, StateError> {
        let delivery = delivery.clone();
        self.write(move |txn| {
            let holder = txn
                .open_table(JOB_QUEUE)
                .map_err(failed)?
                .get(delivery.job.as_str())
                .map_err(failed)?
                .map(|entry| entry.value().1.to_owned());
            if holder.as_deref() != Some(delivery.entry.as_str()) {
                return Ok(false);
            }
            let until = now_millis().saturating_add(millis(lease));
            place(txn, &delivery.job, until, &delivery.entry)?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn update_job_record(
        &self,
        job: &JobRecord,
        expected: u64,
        next: JobNext<'_>,
        event: Option<&str>,
    ) -> Result<bool, StateError> {
        let job = job.clone();
        let event = event.map(str::to_owned);
        let next = match next {
            JobNext::Hold(_) => None,
            JobNext::Retry(_, due) => Some(Some(due)),
            JobNext::Done(_) => Some(None),
        };
        self.write(move |txn| {
            let mut jobs = txn.open_table(JOBS).map_err(failed)?;
            let current: Option<JobRecord> = jobs
                .get(job.id.as_str())
                .map_err(failed)?
                .map(|json| decode(json.value()))
                .transpose()?;
            if current.is_none_or(|current| current.version != expected) {
                return Ok(false);
            }
            jobs.insert(job.id.as_str(), encode(&job)?.as_str())
                .map_err(failed)?;
            drop(jobs);
            match next {
                None => {}
                Some(Some(due)) => place(txn, &job.id, due, "")?,
                Some(None) => unqueue(txn, &job.id)?,
            }
            if let Some(event) = &event {
                append_event(txn, JOBS_OUTBOX, event)?;
            }
            Ok(true)
        })
        .await
    }

    pub(super) async fn queued_job_count(&self) -> Result<u64, StateError> {
        self.read(|txn| {
            txn.open_table(JOB_QUEUE)
                .map_err(failed)?
                .len()
                .map_err(failed)
        })
        .await
    }

    pub(super) async fn expire_job_records(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<usize, StateError> {
        self.write(move |txn| {
            let expired: Vec<(u64, String)> = {
                let index = txn.open_table(JOB_EXPIRY).map_err(failed)?;
                let mut expired = Vec::new();
                for entry in index.range((0, "")..(now_ms, "")).map_err(failed)? {
                    if expired.len() >= limit {
                        break;
                    }
                    let (key, _) = entry.map_err(failed)?;
                    let (at, id) = key.value();
                    expired.push((at, id.to_owned()));
                }
                expired
            };
            let mut removed = 0;
            for (at, id) in expired {
                // A job still queued is kept until it is final, however old.
                let queued = txn
                    .open_table(JOB_QUEUE)
                    .map_err(failed)?
                    .get(id.as_str())
                    .map_err(failed)?
                    .is_some();
                if queued {
                    continue;
                }
                txn.open_table(JOBS)
                    .map_err(failed)?
                    .remove(id.as_str())
                    .map_err(failed)?;
                txn.open_table(JOB_EXPIRY)
                    .map_err(failed)?
                    .remove((at, id.as_str()))
                    .map_err(failed)?;
                removed += 1;
            }
            Ok(removed)
        })
        .await
    }
}
