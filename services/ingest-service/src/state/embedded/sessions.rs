//! Resumable upload sessions: the record, the caller's open sessions (for the cap) and the
//! expiry index (for the janitor), changed together in one transaction.

use super::tables::{SESSIONS, SESSIONS_EXPIRY, SESSIONS_OPEN};
use super::{EmbeddedState, decode, encode, failed};
use crate::state::{SessionRecord, StateError, now_millis};
use redb::ReadableTable;

fn record_key(scope: &str, id: &str) -> String {
    format!("{scope}/{id}")
}

fn open_prefix(session: &SessionRecord) -> String {
    format!("{}/{}/", session.scope, hex::encode(&session.caller))
}

impl EmbeddedState {
    pub(super) async fn create_session_record(
        &self,
        session: &SessionRecord,
        max_open: usize,
    ) -> Result<bool, StateError> {
        let session = session.clone();
        self.write(move |txn| {
            let mut open = txn.open_table(SESSIONS_OPEN).map_err(failed)?;
            let prefix = open_prefix(&session);
            let now = now_millis();
            let mut live = 0;
            let mut lapsed = Vec::new();
            for entry in open.range(prefix.as_str()..).map_err(failed)? {
                let (key, expires) = entry.map_err(failed)?;
                if !key.value().starts_with(&prefix) {
                    break;
                }
                if expires.value() <= now {
                    lapsed.push(key.value().to_owned());
                } else {
                    live += 1;
                }
            }
            for key in lapsed {
                open.remove(key.as_str()).map_err(failed)?;
            }
            if live >= max_open {
                return Ok(false);
            }
            let key = record_key(&session.scope, &session.id);
            open.insert(
                format!("{prefix}{}", session.id).as_str(),
                session.expires_ms,
            )
            .map_err(failed)?;
            txn.open_table(SESSIONS)
                .map_err(failed)?
                .insert(key.as_str(), encode(&session)?.as_str())
                .map_err(failed)?;
            txn.open_table(SESSIONS_EXPIRY)
                .map_err(failed)?
                .insert((session.expires_ms, key.as_str()), ())
                .map_err(failed)?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn session_record(
        &self,
        scope: &str,
        id: &str,
    ) -> Result<Option<SessionRecord>, StateError> {
        self.get_json(SESSIONS, &record_key(scope, id)).await
    }

    pub(super) async fn update_session_record(
        &self,
        session: &SessionRecord,
        expected: u64,
    ) -> Result<bool, StateError> {
        let session = session.clone();
        self.write(move |txn| {
            let key = record_key(&session.scope, &session.id);
            let mut sessions = txn.open_table(SESSIONS).map_err(failed)?;
            let current: Option<SessionRecord> = sessions
                .get(key.as_str())
                .map_err(failed)?
                .map(|json| decode(json.value()))
                .transpose()?;
            if current.is_none_or(|current| current.version != expected) {
                return Ok(false);
            }
            sessions
                .insert(key.as_str(), encode(&session)?.as_str())
                .map_err(failed)?;
            if session.result.is_some() {
                let open = format!("{}{}", open_prefix(&session), session.id);
                txn.open_table(SESSIONS_OPEN)
                    .map_err(failed)?
                    .remove(open.as_str())
                    .map_err(failed)?;
            }
            Ok(true)
        })
        .await
    }

    pub(super) async fn remove_session_record(
        &self,
        session: &SessionRecord,
    ) -> Result<(), StateError> {
        let session = session.clone();
        self.write(move |txn| {
            let key = record_key(&session.scope, &session.id);
            txn.open_table(SESSIONS)
                .map_err(failed)?
                .remove(key.as_str())
                .map_err(failed)?;
            let open = format!("{}{}", open_prefix(&session), session.id);
            txn.open_table(SESSIONS_OPEN)
                .map_err(failed)?
                .remove(open.as_str())
                .map_err(failed)?;
            txn.open_table(SESSIONS_EXPIRY)
                .map_err(failed)?
                .remove((session.expires_ms, key.as_str()))
                .map_err(failed)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn expired_session_records(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StateError> {
        self.read(move |txn| {
            let expiry = txn.open_table(SESSIONS_EXPIRY).map_err(failed)?;
            let sessions = txn.open_table(SESSIONS).map_err(failed)?;
            let mut out = Vec::new();
            for entry in expiry.range((0, "")..(now_ms, "")).map_err(failed)? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry.map_err(failed)?;
                let (_, name) = key.value();
                if let Some(json) = sessions.get(name).map_err(failed)? {
                    out.push(decode(json.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}
