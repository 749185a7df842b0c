//! The job queue on Redis Streams: a stream of queued jobs read by the consumer group
//! `workers` (every service replica is a consumer), a sorted set of jobs waiting for a retry,
//! and the job records, all under one hash tag so that every script runs in one slot. An entry a
//! worker read stays pending until the worker acknowledges it (with the record's final change,
//! in one script); an entry whose worker stopped renewing it for a lease is claimed by the next
//! worker that looks (`XAUTOCLAIM`).

use super::{RedisState, decode, encode, unavailable};
use crate::state::{Delivery, JOBS_OUTBOX, JobNext, JobRecord, StateError, millis, now_millis};
use redis::AsyncCommands;
use std::time::Duration;

/// The consumer group of the service's workers.
const GROUP: &str = "workers";
/// Delayed jobs moved to the stream per take, at most.
const PROMOTE_BATCH: usize = 100;
/// A consumer that holds no entry and has not read for this long (ms) is a process that ended.
const DEAD_CONSUMER_MILLIS: u64 = 3_600_000;
/// Rounds of `XAUTOCLAIM` (each examines a bounded part of the pending entries) per take.
const CLAIM_ROUNDS: usize = 8;

/// An entry's job ID, from its field list (`job`, id).
fn job_of(fields: &[String]) -> Option<String> {
    fields
        .chunks(2)
        .find(|pair| pair.len() == 2 && pair[0] == "job")
        .map(|pair| pair[1].clone())
}

fn no_group(err: &redis::RedisError) -> bool {
    err.to_string().contains("NOGROUP")
}

type Entries = Vec<(String, Vec<String>)>;

impl RedisState {
    /// Creates the consumer group (and the stream) if it does not exist: on first use, and after
    /// a Redis that lost its data came back.
    async fn create_group(&self) -> Result<(), StateError> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.job_queue_key())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Err(err) if !err.to_string().contains("BUSYGROUP") => Err(unavailable(err)),
            _ => Ok(()),
        }
    }

    pub(super) async fn enqueue_job_record(
        &self,
        job: &JobRecord,
        event: Option<&str>,
    ) -> Result<(), StateError> {
        let _: u64 = self
            .scripts
            .enqueue_job
            .key(self.job_key(&job.id))
            .key(self.job_queue_key())
            .key(self.outbox_key(JOBS_OUTBOX))
            .arg(encode(job)?)
            .arg(&job.id)
            .arg(event.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn job_record(&self, id: &str) -> Result<Option<JobRecord>, StateError> {
        decode(self.get_string(self.job_key(id)).await?)
    }

    pub(super) async fn take_job_entries(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let _: u64 = self
            .scripts
            .promote_jobs
            .key(self.job_delayed_key())
            .key(self.job_queue_key())
            .arg(PROMOTE_BATCH)
            .arg(now_millis())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match self.read_entries(worker, limit, lease).await {
            Err(err) if no_group(&err) => {
                self.create_group().await?;
                self.read_entries(worker, limit, lease)
                    .await
                    .map_err(unavailable)
            }
            read => read.map_err(unavailable),
        }
    }

    /// Entries whose worker let its lease lapse first, then new ones.
    async fn read_entries(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> redis::RedisResult<Vec<Delivery>> {
        let queue = self.job_queue_key();
        let mut taken = Vec::new();
        let mut cursor = "0-0".to_owned();
        for _ in 0..CLAIM_ROUNDS {
            // Redis 7 answers (cursor, entries, deleted IDs); 6.2 leaves the third out.
            let reply: Vec<redis::Value> = redis::cmd("XAUTOCLAIM")
                .arg(&queue)
                .arg(GROUP)
                .arg(worker)
                .arg(millis(lease))
                .arg(&cursor)
                .arg("COUNT")
                .arg(limit - taken.len())
                .query_async(&mut self.conn())
                .await?;
            let mut reply = reply.into_iter();
            let next: String = redis::from_redis_value(reply.next().unwrap_or_default())?;
            // An entry deleted meanwhile comes without fields (6.2) or not at all (7).
            let claimed: Vec<(String, Option<Vec<String>>)> = match reply.next() {
                Some(entries) => redis::from_redis_value(entries)?,
                None => Vec::new(),
            };
            for (entry, fields) in claimed {
                if let Some(job) = fields.as_deref().and_then(job_of) {
                    taken.push(Delivery { job, entry });
                }
            }
            if next == "0-0" || taken.len() >= limit {
                break;
            }
            cursor = next;
        }
        if taken.len() < limit {
            let read: Option<Vec<(String, Entries)>> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(worker)
                .arg("COUNT")
                .arg(limit - taken.len())
                .arg("STREAMS")
                .arg(&queue)
                .arg(">")
                .query_async(&mut self.conn())
                .await?;
            for (_, entries) in read.unwrap_or_default() {
                for (entry, fields) in entries {
                    if let Some(job) = job_of(&fields) {
                        taken.push(Delivery { job, entry });
                    }
                }
            }
        }
        Ok(taken)
    }

    pub(super) async fn renew_job_entry(
        &self,
        delivery: &Delivery,
        worker: &str,
        _lease: Duration,
    ) -> Result<bool, StateError> {
        let renewed: u64 = self
            .scripts
            .renew_job
            .key(self.job_queue_key())
            .arg(GROUP)
            .arg(&delivery.entry)
            .arg(worker)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(renewed == 1)
    }

    pub(super) async fn update_job_record(
        &self,
        job: &JobRecord,
        expected: u64,
        next: JobNext<'_>,
        event: Option<&str>,
    ) -> Result<bool, StateError> {
        let (mode, entry, due) = match next {
            JobNext::Hold(delivery) => ("hold", delivery.entry.as_str(), 0),
            JobNext::Retry(delivery, due) => ("retry", delivery.entry.as_str(), due),
            JobNext::Done(delivery) => ("done", delivery.entry.as_str(), 0),
        };
        let changed: u64 = self
            .scripts
            .update_job
            .key(self.job_key(&job.id))
            .key(self.job_queue_key())
            .key(self.job_delayed_key())
            .key(self.outbox_key(JOBS_OUTBOX))
            .arg(encode(job)?)
            .arg(expected)
            .arg(mode)
            .arg(entry)
            .arg(&job.id)
            .arg(due)
            .arg(if job.status.is_final() {
                job.expires_ms.max(1)
            } else {
                0
            })
            .arg(GROUP)
            .arg(event.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    pub(super) async fn queued_job_count(&self) -> Result<u64, StateError> {
        let streamed: u64 = redis::cmd("XLEN")
            .arg(self.job_queue_key())
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let delayed: u64 = self
            .conn()
            .zcard(self.job_delayed_key())
            .await
            .map_err(unavailable)?;
        Ok(streamed + delayed)
    }

    pub(super) async fn expire_job_records(
        &self,
        _now_ms: u64,
        _limit: usize,
    ) -> Result<usize, StateError> {
        // A final record carries its expiry (`PXAT`): Redis forgets it by itself. What is left to
        // tidy is the group's consumers: every process start is a new one, and one that holds
        // nothing and has not been seen for an hour is gone for good.
        let consumers: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(self.job_queue_key())
            .arg(GROUP)
            .query_async(&mut self.conn())
            .await;
        let Ok(consumers) = consumers else {
            // No stream or no group yet: nothing to tidy.
            return Ok(0);
        };
        for consumer in consumers {
            let Ok(fields) = redis::from_redis_value::<
                std::collections::HashMap<String, redis::Value>,
            >(consumer) else {
                continue;
            };
            let number = |name: &str| -> Option<u64> {
                fields
                    .get(name)
                    .and_then(|value| redis::from_redis_value(value.clone()).ok())
            };
            let name: Option<String> = fields
                .get("name")
                .and_then(|value| redis::from_redis_value(value.clone()).ok());
            if let (Some(name), Some(0), Some(idle)) = (name, number("pending"), number("idle"))
                && idle > DEAD_CONSUMER_MILLIS
            {
                let _: redis::RedisResult<u64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(self.job_queue_key())
                    .arg(GROUP)
                    .arg(name)
                    .query_async(&mut self.conn())
                    .await;
            }
        }
        Ok(0)
    }
}
