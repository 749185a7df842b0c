//! Resumable uploads: one session model behind tus, HTTP resumable uploads and gRPC
//! (`StartUpload`, `UploadImage` with `upload_id`, `QueryUpload`, `CancelUpload`).
//!
//! Starting a session makes every check an upload's header allows (`plan.rs`), reserves the
//! quota for the declared length (the largest upload if it is not known) for as long as the
//! session lives, and stores the session record in the shared state under the caller's cap of
//! open sessions. A write takes the session's lock, checks its offset, receives its bytes under
//! the same pace, size, chunk and memory limits as an upload, and commits them: the bytes to
//! storage (`ObjectStore::stage`), then the record by compare-and-set; bytes received before a
//! broken stream are committed too, unless the write carried a checksum. The write that
//! completes the upload reads the staged bytes back, proves them against the running SHA-256,
//! and hands them to the same `finish` as a one-shot upload (idempotency, conversion, commit),
//! under the session's own idempotency key when the client gave none; the result is kept in the
//! record, so a completion retried after a lost answer gets the same result. Expired sessions
//! are removed with their bytes by [`Ingestor::expire_sessions`].

use super::Ingestor;
use super::digest::RunningSha256;
use super::lock::{LockTiming, TargetLock};
use super::plan::{UploadPlan, UploadRequest};
use super::policy::Policy;
use super::receive::Received;
use super::target::{Kind, TargetRef};
use super::upload::{Pace, Uploaded};
use crate::auth::{self, Claims};
use crate::error::IngestError;
use crate::state::{SessionRecord, SessionResult, SessionUpload, now_millis};
use crate::storage::{STAGING_PREFIX, Staged};
use bytes::Bytes;
use futures::Stream;
use imaging_pipeline::{MediaType, sniff};
use sha2::Digest;
use std::time::Duration;

/// The most text a client may keep with a session.
pub const MAX_CLIENT_METADATA: usize = 4096;
/// Enough bytes to sniff every accepted type.
const SNIFF_BYTES: usize = 16;
/// Expired sessions removed per janitor round.
const EXPIRE_BATCH: usize = 100;

/// A session as its caller sees it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// Its ID.
    pub id: String,
    /// Bytes committed.
    pub offset: u64,
    /// The declared length, if known.
    pub length: Option<u64>,
    /// When it expires, ms since 1970.
    pub expires_ms: u64,
    /// The client's text.
    pub client_metadata: String,
    /// The result, once complete.
    pub result: Option<Uploaded>,
    /// The upload is processed asynchronously: its result is the accepted receipt (its ID), not
    /// a stored image.
    pub accepted: bool,
    /// The largest upload.
    pub max_size: u64,
    /// The declared content type.
    pub content_type: String,
    /// The target kind and ID (a new receipt's ID).
    pub target: TargetRef,
}

/// One write to a session.
#[derive(Debug, Clone, Default)]
pub struct SessionWrite {
    /// The session.
    pub id: String,
    /// Where the write's first byte goes.
    pub offset: u64,
    /// The write ends the upload.
    pub finish: bool,
    /// Refuse an offset below the committed size instead of skipping what was committed.
    pub exact: bool,
    /// SHA-1 of the write's bytes.
    pub sha1: Option<[u8; 20]>,
    /// SHA-256 of the write's bytes.
    pub sha256: Option<[u8; 32]>,
}

/// A session ID: 32 lowercase hex digits.
fn valid_session_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a session's bytes are staged.
fn staging(id: &str) -> String {
    format!("{STAGING_PREFIX}{id}")
}

/// The lock that serialises a session's writes.
fn lock_name(record: &SessionRecord) -> String {
    format!("session:{}:{}", record.scope, record.id)
}

impl Ingestor {
    fn session_view(&self, record: &SessionRecord) -> SessionView {
        SessionView {
            id: record.id.clone(),
            offset: record.offset,
            length: record.length,
            expires_ms: record.expires_ms,
            client_metadata: record.client_metadata.clone(),
            result: record.result.as_ref().map(|done| Uploaded {
                record: done.record.clone(),
                replayed: done.replayed,
            }),
            accepted: record.upload.process_async,
            max_size: self.max_upload_bytes(record.upload.process_async),
            content_type: record.upload.content_type.clone(),
            target: TargetRef {
                kind: Kind::from_name(&record.upload.kind).unwrap_or(Kind::Receipt),
                id: record.upload.target_id.clone(),
                workspace: record.upload.target_workspace.clone(),
            },
        }
    }

    fn session_timing(&self) -> LockTiming {
        LockTiming {
            wait: self.locks.wait,
            // Held for at most a write's deadline and its completion.
            ttl: Duration::from_secs(self.limits.upload.deadline_seconds)
                + Duration::from_secs(120),
        }
    }

    /// Starts a session for the upload `request` describes (its `declared_size` is the length,
    /// 0 = not known yet).
    pub async fn start_session(
        &self,
        claims: Claims,
        request: UploadRequest,
        file_name: String,
        client_metadata: String,
    ) -> Result<SessionView, IngestError> {
        if client_metadata.len() > MAX_CLIENT_METADATA {
            return Err(IngestError::invalid(
                "client_metadata",
                format!("client metadata is over {MAX_CLIENT_METADATA} bytes"),
            ));
        }
        let process_async = request.process_async;
        let plan = if process_async {
            self.plan_async(claims, request).await?
        } else {
            self.plan(claims, request).await?
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let length = (plan.declared_size > 0).then_some(plan.declared_size);
        let bytes = length.unwrap_or(plan.max_bytes);
        let ttl = Duration::from_secs(self.limits.sessions.ttl_seconds);
        let reservation = format!("session-{id}");
        let default = self.limits.quota.default_bytes;
        match self
            .quota
            .reserve(&plan.workspace, &reservation, bytes, ttl, default)
            .await?
        {
            crate::state::Reservation::Granted { .. } => {}
            crate::state::Reservation::Exceeded { limit, used } => {
                return Err(IngestError::QuotaExceeded {
                    workspace: plan.workspace.clone(),
                    limit,
                    used,
                    requested: bytes,
                });
            }
        }
        let now = now_millis();
        let record = SessionRecord {
            id: id.clone(),
            scope: plan.claims.ws.clone(),
            caller: plan.claims.sub.clone(),
            version: 0,
            created_ms: now,
            expires_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            upload: SessionUpload {
                kind: plan.target.kind.name().to_owned(),
                target_id: plan.target.id.clone(),
                target_workspace: plan.target.workspace.clone(),
                appends: plan.target.kind == Kind::Receipt
                    && plan.policy.placement == super::policy::Placement::Append,
                workspace: plan.workspace.clone(),
                owner: plan.owner.clone(),
                content_type: plan.media.mime().to_owned(),
                idempotency_key: plan.idempotency_key.clone(),
                sha256: plan.sha256.map(hex::encode).unwrap_or_default(),
                file_name,
                process_async,
            },
            length,
            offset: 0,
            head: String::new(),
            digest: RunningSha256::new().encode(),
            staged: Staged::default(),
            reservation: Some((reservation.clone(), bytes)),
            client_metadata,
            result: None,
        };
        let max_open = self.limits.sessions.max_open_per_user;
        let created = self.catalog.create_session(&record, max_open).await;
        if !matches!(created, Ok(true)) {
            // Best effort: a reservation left behind lapses with the session's lifetime.
            let _ = self.quota.release(&plan.workspace, &reservation).await;
        }
        if !created? {
            return Err(IngestError::TooManyOpenUploads { limit: max_open });
        }
        self.metrics.sessions_started.add(1, &[]);
        Ok(self.session_view(&record))
    }

    /// The caller's live session `id`.
    async fn load_session(&self, claims: &Claims, id: &str) -> Result<SessionRecord, IngestError> {
        if !valid_session_id(id) {
            return Err(IngestError::UploadNotFound);
        }
        self.catalog
            .session(&claims.ws, id)
            .await?
            .filter(|record| record.caller == claims.sub && record.expires_ms > now_millis())
            .ok_or(IngestError::UploadNotFound)
    }

    /// The caller's session `id`.
    ///
    /// A write in progress is waited for (as long as a target lock is), so the offset answered
    /// is one the next write can use, never one that write is about to change.
    pub async fn query_session(
        &self,
        claims: &Claims,
        id: &str,
    ) -> Result<SessionView, IngestError> {
        let record = self.load_session(claims, id).await?;
        if record.result.is_some() {
            return Ok(self.session_view(&record));
        }
        let timing = LockTiming {
            wait: self.locks.wait,
            ttl: Duration::from_secs(5),
        };
        match TargetLock::acquire(self.catalog.clone(), lock_name(&record), timing).await {
            Ok(lock) => {
                let settled = self.load_session(claims, id).await;
                lock.release().await;
                Ok(self.session_view(&settled?))
            }
            // Still busy after the wait: what is committed now.
            Err(IngestError::Busy) => Ok(self.session_view(&record)),
            Err(err) => Err(err),
        }
    }

    /// Cancels the caller's session `id`: its bytes are removed and its reservation given back
    /// (a completed session is only forgotten). Returns the bytes given back.
    pub async fn cancel_session(&self, claims: &Claims, id: &str) -> Result<u64, IngestError> {
        let record = self.load_session(claims, id).await?;
        let lock = TargetLock::acquire(
            self.catalog.clone(),
            lock_name(&record),
            self.session_timing(),
        )
        .await?;
        let ended = async {
            let record = self.load_session(claims, id).await?;
            self.end_session(&record).await
        }
        .await;
        lock.release().await;
        ended
    }

    /// Removes a session with its bytes and its reservation; the bytes given back.
    async fn end_session(&self, record: &SessionRecord) -> Result<u64, IngestError> {
        let mut released = 0;
        if record.result.is_none() {
            self.objects
                .discard_staged(&staging(&record.id), &record.staged)
                .await?;
            if let Some((reservation, bytes)) = &record.reservation {
                self.quota
                    .release(&record.upload.workspace, reservation)
                    .await?;
                released = *bytes;
            }
        }
        self.catalog.remove_session(record).await?;
        Ok(released)
    }

    /// How often expired sessions are looked for.
    pub fn session_sweep_interval(&self) -> Duration {
        Duration::from_secs(self.limits.sessions.ttl_seconds / 2)
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Removes sessions that expired, with their bytes; returns how many. Their reservations
    /// lapse by themselves (they were made for the session's lifetime) and are released too.
    pub async fn expire_sessions(&self) -> Result<usize, IngestError> {
        let mut removed = 0;
        loop {
            let expired = self
                .catalog
                .expired_sessions(now_millis(), EXPIRE_BATCH)
                .await?;
            let batch = expired.len();
            let before = removed;
            for record in expired {
                let Ok(lock) = TargetLock::acquire(
                    self.catalog.clone(),
                    lock_name(&record),
                    self.session_timing(),
                )
                .await
                else {
                    continue;
                };
                let ended = self.end_session(&record).await;
                lock.release().await;
                ended?;
                removed += 1;
            }
            // A full batch of which none could be removed (each still held by a write) would
            // come back the same: the next round takes them.
            if batch < EXPIRE_BATCH || removed == before {
                self.metrics.sessions_expired.add(removed as u64, &[]);
                return Ok(removed);
            }
        }
    }

    /// Writes `bytes` to a session as `write` says; the session after it (with its result if
    /// the write completed the upload).
    pub async fn write_session<S>(
        &self,
        claims: Claims,
        write: SessionWrite,
        bytes: S,
    ) -> Result<SessionView, IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        let record = self.load_session(&claims, &write.id).await?;
        let lock = TargetLock::acquire(
            self.catalog.clone(),
            lock_name(&record),
            self.session_timing(),
        )
        .await?;
        let written = self.write_locked(claims, write, bytes).await;
        lock.release().await;
        written
    }

    async fn write_locked<S>(
        &self,
        claims: Claims,
        write: SessionWrite,
        bytes: S,
    ) -> Result<SessionView, IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        // Read again under the lock: the write before this one may have changed it.
        let mut record = self.load_session(&claims, &write.id).await?;
        let complete = record.result.is_some();
        if write.offset > record.offset || (write.exact && write.offset != record.offset) {
            return Err(IngestError::OffsetMismatch {
                committed: record.offset,
                provided: write.offset,
                complete,
            });
        }
        let _admitted = self
            .admission
            .admit(&record.upload.workspace, &claims.sub)?;
        let skip = record.offset - write.offset;
        let mut receiving = Receiving::new(&record, &write, skip)?;
        let max_bytes = self.max_upload_bytes(record.upload.process_async);
        let mut bytes = std::pin::pin!(bytes);
        let pace = Pace::new(&self.limits);
        let mut held = super::budget::Reserved::default();
        let streamed = async {
            while let Some(chunk) = pace.next(&mut bytes, receiving.seen).await? {
                let chunk = chunk?;
                if chunk.len() > self.limits.upload.max_chunk_bytes {
                    return Err(IngestError::ChunkTooLarge {
                        size: chunk.len(),
                        limit: self.limits.upload.max_chunk_bytes,
                    });
                }
                let needed = receiving.buffer.len() as u64 + chunk.len() as u64;
                if needed > held.bytes() {
                    let step = (needed - held.bytes()).max(1024 * 1024);
                    held.merge(self.budget.reserve(step).await?);
                }
                receiving.push(&chunk, complete, max_bytes)?;
            }
            Ok::<_, IngestError>(())
        }
        .await;
        self.metrics.bytes_received.add(receiving.seen, &[]);
        if complete {
            // Nothing can be added to a complete upload; resent bytes get its result.
            streamed?;
            return Ok(self.session_view(&record));
        }
        let checked = write.sha1.is_some() || write.sha256.is_some();
        // What arrived before the stream broke is kept, unless the write is checksummed (then
        // it cannot be proved) or the bytes themselves were refused.
        let broken = match streamed {
            Err(err) if checked || !keeps_received(&err) => return Err(err),
            Err(err) => Some(err),
            Ok(()) => {
                receiving.verify(&write)?;
                None
            }
        };
        // A write that completes the upload goes straight to the completion: its bytes are not
        // staged only to be read back (they are, should the completion fail in a way that heals).
        let total = record.offset + receiving.buffer.len() as u64;
        let completes = broken.is_none()
            && total > 0
            && match (write.finish, record.length) {
                (_, Some(length)) => length == total,
                (finish, None) => finish,
            };
        if completes {
            record.length = Some(total);
            drop(held);
            return self.complete_session(claims, record, Some(receiving)).await;
        }
        if !receiving.buffer.is_empty() {
            record = self.commit_write(record, receiving).await?;
        }
        if let Some(err) = broken {
            return Err(err);
        }
        if write.finish {
            match record.length {
                Some(length) if length != record.offset => {
                    return Err(IngestError::SizeMismatch {
                        declared: length,
                        received: record.offset,
                    });
                }
                _ if record.offset == 0 => return Err(IngestError::MissingFile),
                _ => record.length = Some(record.offset),
            }
        }
        if record.offset == 0 || record.length != Some(record.offset) {
            return Ok(self.session_view(&record));
        }
        // Every byte was committed before (a completion that failed and is retried).
        drop(held);
        self.complete_session(claims, record, None).await
    }

    /// Stages what a write received and commits the session record.
    async fn commit_write(
        &self,
        record: SessionRecord,
        receiving: Receiving,
    ) -> Result<SessionRecord, IngestError> {
        let prefix = staging(&record.id);
        let added = receiving.buffer.len() as u64;
        // Staging may read the bytes after the last whole part back and join the new ones to
        // them into a part (S3's pieces): that much more memory while it runs.
        let in_parts: u64 = record.staged.parts.iter().map(|part| part.len).sum();
        let pending = record.staged.len.saturating_sub(in_parts);
        let _staging = self.budget.reserve(pending * 2 + added).await?;
        let staged = self
            .objects
            .stage(&prefix, &record.staged, Bytes::from(receiving.buffer))
            .await?;
        let mut next = record.clone();
        next.version += 1;
        next.offset += added;
        next.staged = staged;
        next.digest = receiving.digest.encode();
        next.head = hex::encode(&receiving.head);
        if !self.catalog.update_session(&next, record.version).await? {
            // Another writer changed the session (this one's lock had lapsed): its bytes are
            // not this write's to keep.
            let _ = self
                .objects
                .unstage_replaced(&next.staged, &record.staged)
                .await;
            return Err(IngestError::Busy);
        }
        if let Err(err) = self
            .objects
            .unstage_replaced(&record.staged, &next.staged)
            .await
        {
            tracing::warn!(error = %err, "a replaced staged object stays until the session ends");
        }
        self.metrics.session_bytes.add(added, &[]);
        Ok(next)
    }

    /// The upload a session stands for, for `claims` (who must still be allowed it).
    fn session_plan(
        &self,
        claims: Claims,
        record: &SessionRecord,
    ) -> Result<UploadPlan, IngestError> {
        let upload = &record.upload;
        let kind = Kind::from_name(&upload.kind)
            .ok_or_else(|| IngestError::Internal(format!("session kind {}", upload.kind)))?;
        let policy = if upload.appends {
            Policy::receipt_append()
        } else {
            kind.policy()
        };
        // Rights may have changed since the session started (time of check, time of use).
        auth::can_use_target(&claims, policy.access, &upload.workspace, &upload.owner)?;
        let media = MediaType::from_declared(&upload.content_type)
            .ok_or_else(|| IngestError::Internal("session content type".to_owned()))?;
        let sha256 = match upload.sha256.as_str() {
            "" => None,
            text => Some(
                hex::decode(text)
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| IngestError::Internal("session sha256".to_owned()))?,
            ),
        };
        let idempotency_key = if upload.idempotency_key.is_empty() {
            format!("upload-session:{}", record.id)
        } else {
            upload.idempotency_key.clone()
        };
        Ok(UploadPlan {
            claims,
            target: TargetRef {
                kind,
                id: upload.target_id.clone(),
                workspace: upload.target_workspace.clone(),
            },
            policy,
            workspace: upload.workspace.clone(),
            owner: upload.owner.clone(),
            media,
            declared_size: record.length.unwrap_or(record.offset),
            idempotency_key,
            sha256,
            reservation: record.reservation.clone(),
            max_bytes: self.max_upload_bytes(upload.process_async),
            max_side: 0,
        })
    }

    /// Runs the complete upload (the staged bytes, then `last`, the completing write's own)
    /// through the one-shot path and keeps its result.
    async fn complete_session(
        &self,
        claims: Claims,
        record: SessionRecord,
        last: Option<Receiving>,
    ) -> Result<SessionView, IngestError> {
        let completed = self.run_completion(claims, &record, last.as_ref()).await;
        let (uploaded, digest, head) = match completed {
            Ok(done) => done,
            Err(err) => {
                if err.may_heal()
                    && let Some(last) = last
                {
                    // Keep the last write's bytes: a retry then sends none of them again.
                    if let Err(staging) = self.commit_write(record.clone(), last).await {
                        tracing::warn!(error = %staging, "the completing write's bytes were not kept");
                    }
                } else {
                    self.end_after_failure(&record, &err).await;
                }
                return Err(err);
            }
        };
        let mut done = record.clone();
        done.version += 1;
        done.offset = done.length.unwrap_or(done.offset);
        done.digest = digest;
        done.head = head;
        done.result = Some(SessionResult {
            record: uploaded.record.clone(),
            replayed: uploaded.replayed,
        });
        let reservation = done.reservation.take();
        if !self.catalog.update_session(&done, record.version).await? {
            return Err(IngestError::Busy);
        }
        self.metrics.sessions_completed.add(1, &[]);
        let prefix = staging(&record.id);
        if let Err(err) = self.objects.discard_staged(&prefix, &record.staged).await {
            tracing::warn!(error = %err, "staged bytes stay until the janitor's sweep");
        }
        if let Some((reservation, _)) = reservation {
            // Taken over by the commit if it fitted; else still held.
            let _ = self
                .quota
                .release(&record.upload.workspace, &reservation)
                .await;
        }
        Ok(self.session_view(&done))
    }

    /// Reads the staged bytes back, adds `last`'s, proves them against the running SHA-256 and
    /// runs them through `finish`: the result, the final digest and first bytes.
    async fn run_completion(
        &self,
        claims: Claims,
        record: &SessionRecord,
        last: Option<&Receiving>,
    ) -> Result<(Uploaded, String, String), IngestError> {
        let plan = self.session_plan(claims, record)?;
        let added = last.map_or(0, |last| last.buffer.len() as u64);
        let total = record.offset + added;
        let held = self.budget.reserve(total).await?;
        let mut whole = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        if record.offset > 0 {
            let staged = self
                .objects
                .staged_bytes(&staging(&record.id), &record.staged)
                .await?;
            whole.extend_from_slice(&staged);
        }
        let (running, head) = match last {
            Some(last) => {
                whole.extend_from_slice(&last.buffer);
                (last.digest.clone(), hex::encode(&last.head))
            }
            None => (
                RunningSha256::decode(&record.digest)
                    .ok_or_else(|| IngestError::Internal("session digest".to_owned()))?,
                record.head.clone(),
            ),
        };
        let sha256: [u8; 32] = sha2::Sha256::digest(&whole).into();
        if whole.len() as u64 != total || running.digest() != sha256 {
            return Err(IngestError::Internal(
                "staged bytes differ from the bytes committed".to_owned(),
            ));
        }
        if plan.sha256.is_some_and(|expected| expected != sha256) {
            return Err(IngestError::ChecksumMismatch);
        }
        let crc32c = self.objects.checks_crc32c().then(|| crc32c::crc32c(&whole));
        let received = Received {
            size: total,
            sha256,
            crc32c,
            bytes: Bytes::from(whole),
            forwarded: None,
            early: None,
        };
        let ingestor = self.clone();
        let process_async = record.upload.process_async;
        let finished = super::to_the_end("completion", async move {
            let finished = if process_async {
                ingestor.queue(&plan, received).await.map(|job| Uploaded {
                    record: super::jobs::accepted_record(&job),
                    replayed: false,
                })
            } else {
                ingestor.finish(plan, received).await
            };
            drop(held);
            finished
        })
        .await?;
        Ok((finished, running.encode(), head))
    }

    /// After a completion failed: a refusal of the upload ends the session (nothing would
    /// change on a retry); a failure that may heal keeps it, so the completion can be retried.
    async fn end_after_failure(&self, record: &SessionRecord, err: &IngestError) {
        if err.may_heal() {
            return;
        }
        if let Err(err) = self.end_session(record).await {
            tracing::warn!(error = %err, "a failed session stays until it expires");
        }
    }
}

/// True if the bytes a write received before `err` may be kept (the stream broke or stalled),
/// false if the bytes themselves were refused.
fn keeps_received(err: &IngestError) -> bool {
    !matches!(
        err,
        IngestError::FileTooLarge { .. }
            | IngestError::SizeMismatch { .. }
            | IngestError::ContentTypeMismatch { .. }
            | IngestError::ChunkTooLarge { .. }
            | IngestError::OffsetMismatch { .. }
    )
}

/// One write's bytes as they arrive.
struct Receiving {
    /// Bytes of the stream so far (skipped ones included).
    seen: u64,
    /// Stream bytes still to skip (committed already).
    skip: u64,
    /// The session's committed size and declared length.
    offset: u64,
    length: Option<u64>,
    /// The new bytes.
    buffer: Vec<u8>,
    /// The session's first bytes, for the type check.
    head: Vec<u8>,
    declared: MediaType,
    digest: RunningSha256,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
}

impl Receiving {
    fn new(record: &SessionRecord, write: &SessionWrite, skip: u64) -> Result<Self, IngestError> {
        let bad = |what: &str| IngestError::Internal(format!("session {what}"));
        Ok(Receiving {
            seen: 0,
            skip,
            offset: record.offset,
            length: record.length,
            buffer: Vec::new(),
            head: hex::decode(&record.head).map_err(|_| bad("head"))?,
            declared: MediaType::from_declared(&record.upload.content_type)
                .ok_or_else(|| bad("content type"))?,
            digest: RunningSha256::decode(&record.digest).ok_or_else(|| bad("digest"))?,
            sha1: write.sha1.map(|_| sha1::Sha1::new()),
            sha256: write.sha256.map(|_| sha2::Sha256::new()),
        })
    }

    fn push(&mut self, chunk: &[u8], complete: bool, max_bytes: u64) -> Result<(), IngestError> {
        self.seen += chunk.len() as u64;
        if let Some(hasher) = &mut self.sha1 {
            hasher.update(chunk);
        }
        if let Some(hasher) = &mut self.sha256 {
            hasher.update(chunk);
        }
        let skipped = usize::try_from(self.skip.min(chunk.len() as u64)).unwrap_or(chunk.len());
        self.skip -= skipped as u64;
        let data = &chunk[skipped..];
        if data.is_empty() {
            return Ok(());
        }
        if complete {
            return Err(IngestError::OffsetMismatch {
                committed: self.offset,
                provided: self.offset,
                complete: true,
            });
        }
        let total = self.offset + self.buffer.len() as u64 + data.len() as u64;
        if total > max_bytes {
            return Err(IngestError::FileTooLarge { limit: max_bytes });
        }
        if let Some(length) = self.length
            && total > length
        {
            return Err(IngestError::SizeMismatch {
                declared: length,
                received: total,
            });
        }
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            // A PDF may start with junk, so only a positive sniff of another type is decisive.
            if self.head.len() == SNIFF_BYTES
                && let Some(found) = sniff(&self.head)
                && found != self.declared
            {
                return Err(IngestError::ContentTypeMismatch {
                    declared: self.declared.mime(),
                });
            }
        }
        self.digest.update(data);
        self.buffer.extend_from_slice(data);
        Ok(())
    }

    /// Checks the write's own checksums.
    fn verify(&mut self, write: &SessionWrite) -> Result<(), IngestError> {
        if let (Some(expected), Some(hasher)) = (write.sha1, self.sha1.take())
            && <[u8; 20]>::from(hasher.finalize()) != expected
        {
            return Err(IngestError::ChecksumMismatch);
        }
        if let (Some(expected), Some(hasher)) = (write.sha256, self.sha256.take())
            && <[u8; 32]>::from(hasher.finalize()) != expected
        {
            return Err(IngestError::ChecksumMismatch);
        }
        Ok(())
    }
}
