//! Resumable upload sessions: the record and the caller's open set share the workspace's slot
//! and change together in a script; the expiry index (`uploads:expiry`, another slot) is added to
//! before a record exists and removed from after it is gone, so the janitor finds every record.

use super::{RedisState, decode, encode, unavailable};
use crate::state::{SessionRecord, StateError};
use redis::AsyncCommands;

fn member(scope: &str, id: &str) -> String {
    format!("{scope}/{id}")
}

impl RedisState {
    pub(super) async fn create_session_record(
        &self,
        session: &SessionRecord,
        max_open: usize,
    ) -> Result<bool, StateError> {
        let index = self.session_expiry_key();
        let name = member(&session.scope, &session.id);
        let _: u64 = self
            .conn()
            .zadd(&index, &name, session.expires_ms)
            .await
            .map_err(unavailable)?;
        let stored: u64 = self
            .scripts
            .create_session
            .key(self.session_key(&session.scope, &session.id))
            .key(self.open_sessions_key(&session.scope, &session.caller))
            .arg(encode(session)?)
            .arg(&session.id)
            .arg(session.expires_ms)
            .arg(max_open)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if stored == 0 {
            let _: u64 = self.conn().zrem(&index, &name).await.map_err(unavailable)?;
        }
        Ok(stored == 1)
    }

    pub(super) async fn session_record(
        &self,
        scope: &str,
        id: &str,
    ) -> Result<Option<SessionRecord>, StateError> {
        decode(self.get_string(self.session_key(scope, id)).await?)
    }

    pub(super) async fn update_session_record(
        &self,
        session: &SessionRecord,
        expected: u64,
    ) -> Result<bool, StateError> {
        let changed: u64 = self
            .scripts
            .update_session
            .key(self.session_key(&session.scope, &session.id))
            .key(self.open_sessions_key(&session.scope, &session.caller))
            .arg(encode(session)?)
            .arg(expected)
            .arg(&session.id)
            .arg(if session.result.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    pub(super) async fn remove_session_record(
        &self,
        session: &SessionRecord,
    ) -> Result<(), StateError> {
        let _: u64 = self
            .conn()
            .del(self.session_key(&session.scope, &session.id))
            .await
            .map_err(unavailable)?;
        let _: u64 = self
            .conn()
            .zrem(
                self.open_sessions_key(&session.scope, &session.caller),
                &session.id,
            )
            .await
            .map_err(unavailable)?;
        let _: u64 = self
            .conn()
            .zrem(
                self.session_expiry_key(),
                member(&session.scope, &session.id),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn expired_session_records(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StateError> {
        let index = self.session_expiry_key();
        let names: Vec<String> = self
            .conn()
            .zrangebyscore_limit(&index, 0, now_ms, 0, limit as isize)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for name in names {
            let Some((scope, id)) = name.split_once('/') else {
                continue;
            };
            match self.session_record(scope, id).await? {
                Some(session) => out.push(session),
                // A record gone (removed, or never stored): its index entry goes too.
                None => {
                    let _: u64 = self.conn().zrem(&index, &name).await.map_err(unavailable)?;
                }
            }
        }
        Ok(out)
    }
}
