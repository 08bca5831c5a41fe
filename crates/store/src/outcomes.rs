//! What the projector decided for each event: the ingress's read-your-writes answer and the
//! per-resource change history.

use roster_db::{StoreError, stmt};

use crate::sql::{IN_CHUNK, placeholders, value_rows};
use roster_events::{Envelope, Outcome, OutcomeError, TraceContext};
use sea_orm::{ConnectionTrait, Value};
use serde_json::{Value as Json, json};

/// One event's outcome as the projector records it.
pub struct NewOutcome<'a> {
    /// The event decided.
    pub envelope: &'a Envelope,
    /// The event as stored in the history (its JSON encoding).
    pub envelope_json: String,
    /// Where the event sits in the log.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// What the projector decided.
    pub outcome: Outcome,
}

/// Rows per `INSERT`: 9 parameters each stays far below SQLite's and Postgres's parameter limits.
const OUTCOME_ROWS_PER_INSERT: usize = 400;

/// Records events' outcomes (inside the projector's transaction), many rows per statement: one
/// round trip per event was most of a batch's cost. Idempotent per event id.
pub async fn insert_many<C: ConnectionTrait>(c: &C, rows: &[NewOutcome<'_>]) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in rows.chunks(OUTCOME_ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len() * 9);
        for r in chunk {
            let error = match &r.outcome.error {
                Some(e) => Some(serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                None => None,
            };
            values.extend([
                Value::from(r.envelope.event_id.to_string()),
                r.envelope.account_id.clone().into(),
                r.envelope.resource_id.clone().into(),
                r.partition.into(),
                r.offset.into(),
                i32::from(r.outcome.status).into(),
                r.outcome.version.map(|v| v as i64).into(),
                error.into(),
                r.envelope_json.clone().into(),
            ]);
        }
        let tuples = value_rows(chunk.len(), 9);
        c.execute_raw(stmt(
            b,
            &format!(
                "INSERT INTO event_outcomes (event_id, account_id, resource_id, partition, log_offset, status, version, error, envelope) VALUES {tuples} ON CONFLICT (event_id) DO NOTHING"
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

fn outcome_from(status: i32, version: Option<i64>, error: Option<String>) -> Result<Outcome, StoreError> {
    let error = match error {
        Some(text) => Some(
            serde_json::from_str::<OutcomeError>(&text)
                .map_err(|e| StoreError::Corrupt(format!("outcome error: {e}")))?,
        ),
        None => None,
    };
    Ok(Outcome {
        status: u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
        version: version.map(|v| v as u64),
        error,
    })
}

/// The outcome of an event, once the projector has applied it.
pub async fn get<C: ConnectionTrait>(c: &C, event_id: &str) -> Result<Option<Outcome>, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT status, version, error FROM event_outcomes WHERE event_id = ?",
            [event_id.into()],
        ))
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(outcome_from(r.try_get_by_index(0)?, r.try_get_by_index(1)?, r.try_get_by_index(2)?)?)),
    }
}

/// The outcomes of those of `event_ids` that have been applied (one query per 500 ids).
pub async fn get_many<C: ConnectionTrait>(c: &C, event_ids: &[String]) -> Result<Vec<(String, Outcome)>, StoreError> {
    let b = c.get_database_backend();
    let mut out = Vec::new();
    for chunk in event_ids.chunks(IN_CHUNK) {
        let marks = placeholders(chunk.len());
        let rows = c
            .query_all_raw(stmt(
                b,
                &format!("SELECT event_id, status, version, error FROM event_outcomes WHERE event_id IN ({marks})"),
                chunk.iter().map(|s| Value::from(s.clone())),
            ))
            .await?;
        for r in rows {
            let id: String = r.try_get_by_index(0)?;
            out.push((id, outcome_from(r.try_get_by_index(1)?, r.try_get_by_index(2)?, r.try_get_by_index(3)?)?));
        }
    }
    Ok(out)
}

/// The trace context of the account's most recently created applied event within the last
/// `window` (event ids are UUIDv7, so the largest is the newest): what the licensing worker
/// continues when it reacts to the account's changes. `None` when that event carries none or is
/// older than `window`. The lower bound keeps the lookup to a short backward scan of the event-id
/// index, however many events the account has.
pub async fn latest_trace_context<C: ConnectionTrait>(
    c: &C,
    account: &str,
    window: std::time::Duration,
) -> Result<Option<TraceContext>, StoreError> {
    let b = c.get_database_backend();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let floor = uuid_v7_floor(u64::try_from(now_ms.saturating_sub(window.as_millis())).unwrap_or(0));
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT envelope FROM event_outcomes WHERE event_id >= ? AND account_id = ? ORDER BY event_id DESC LIMIT 1",
            [Value::from(floor), Value::from(account)],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get_by_index(0)?;
    let env: Json = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored envelope: {e}")))?;
    let tc = &env["trace_context"];
    Ok(TraceContext::parse(tc["traceparent"].as_str(), tc["tracestate"].as_str()))
}

/// The smallest hyphenated UUIDv7 string of millisecond `unix_ms`: every UUIDv7 created at or
/// after it sorts at or after it (the timestamp is the leading 48 bits).
fn uuid_v7_floor(unix_ms: u64) -> String {
    format!("{:08x}-{:04x}-0000-0000-000000000000", (unix_ms >> 16) & 0xffff_ffff, unix_ms & 0xffff)
}

/// A resource's change history, oldest first: each event's envelope with its outcome.
pub async fn history<C: ConnectionTrait>(
    c: &C,
    account: &str,
    resource_id: &str,
    limit: u64,
) -> Result<Vec<Json>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT envelope, status, version, error, partition, log_offset FROM event_outcomes WHERE account_id = ? AND resource_id = ? ORDER BY partition, log_offset LIMIT {}",
                limit.min(10_000)
            ),
            [Value::from(account), Value::from(resource_id)],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.try_get_by_index(0)?;
            let mut env: Json =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored envelope: {e}")))?;
            let outcome = outcome_from(r.try_get_by_index(1)?, r.try_get_by_index(2)?, r.try_get_by_index(3)?)?;
            if let Some(obj) = env.as_object_mut() {
                obj.insert("outcome".into(), serde_json::to_value(&outcome).unwrap_or(Json::Null));
                obj.insert(
                    "position".into(),
                    json!({"partition": r.try_get_by_index::<i32>(4)?, "offset": r.try_get_by_index::<i64>(5)?}),
                );
            }
            Ok(env)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::uuid_v7_floor;

    #[test]
    fn uuid_v7_floor_sorts_before_ids_of_that_millisecond_and_after_older_ones() {
        let ms = 1_764_450_000_123_u64;
        let floor = uuid_v7_floor(ms);
        let ts = |ms: u64| uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
        for _ in 0..100 {
            assert!(uuid::Uuid::new_v7(ts(ms)).to_string() >= floor);
            assert!(uuid::Uuid::new_v7(ts(ms + 1)).to_string() > floor);
            assert!(uuid::Uuid::new_v7(ts(ms - 1)).to_string() < floor);
        }
    }
}
