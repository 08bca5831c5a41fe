//! The database log never lets a reader skip an event, even with many concurrent appenders in
//! separate processes (simulated by separate connection pools), on SQLite and on Postgres.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use roster_db::testing;
use roster_eventlog::{DbLog, DbLogConfig, EventLog};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType};
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn event(account: &str) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: account.into(),
        resource_type: ResourceType::User,
        resource_id: Uuid::new_v4().to_string(),
        time: "2026-11-29T00:00:00.000Z".into(),
        request_id: None,
        trace_context: None,
        actor: Actor::System,
        payload: Payload::UserDeleted { if_match: None },
    }
}

/// Four "replicas" append 150 events each in batches of 1–3 while a reader tails the log; the
/// reader must see every offset in order with no gap, and exactly the appended events.
async fn concurrent_appenders_never_make_a_reader_skip(url: &str) -> TestResult {
    let mut logs = Vec::new();
    for _ in 0..4 {
        let db = roster_db::connect(url).await?;
        logs.push(Arc::new(DbLog::start(db, DbLogConfig { max_batch: 3 })));
    }
    let reader = logs[0].clone();
    let mut writers = Vec::new();
    for (w, log) in logs.iter().enumerate() {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..150 {
                let batch: Vec<Envelope> = (0..(1 + (i + w) % 3)).map(|_| event("acc")).collect();
                ids.extend(batch.iter().map(|e| e.event_id));
                let positions = log.append(batch).await?;
                // Positions of one append are consecutive.
                assert!(positions.windows(2).all(|p| p[1].offset == p[0].offset + 1));
            }
            Ok::<_, roster_eventlog::LogError>(ids)
        }));
    }
    let tail = tokio::spawn(async move {
        let mut next = 1i64;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let records = reader.read(next, 50).await?;
            for r in &records {
                assert_eq!(r.position.offset, next, "reader skipped from {next} to {}", r.position.offset);
                next += 1;
                seen.push(r.envelope.as_ref().map(|e| e.event_id).map_err(|e| e.to_string())?);
            }
            if records.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if seen.len() >= 4 * 300 {
                break;
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(seen)
    });
    let mut appended = HashSet::new();
    for w in writers {
        appended.extend(w.await??);
    }
    let seen = tail.await??;
    assert_eq!(seen.len(), appended.len(), "reader saw a different number of events");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), appended);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_appenders_never_make_a_reader_skip() -> TestResult {
    let (_db, url) = testing::fresh_sqlite("ordering").await?;
    concurrent_appenders_never_make_a_reader_skip(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_appenders_never_make_a_reader_skip() -> TestResult {
    let Some(base) = testing::postgres_url() else {
        eprintln!("ROSTER_TEST_DATABASE_URL unset: Postgres ordering test skipped (make test sets it)");
        return Ok(());
    };
    let (_db, url) = testing::fresh_postgres(&base, "ordering").await?;
    concurrent_appenders_never_make_a_reader_skip(&url).await
}

#[tokio::test]
async fn appended_events_read_back_identically() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("roundtrip").await?;
    let log = DbLog::start(db, DbLogConfig::default());
    let events: Vec<Envelope> = (0..5).map(|_| event("a")).collect();
    let positions = log.append(events.clone()).await?;
    assert_eq!(positions.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let back = log.read(1, 100).await?;
    let back: Vec<Envelope> =
        back.into_iter().map(|r| r.envelope.map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    assert_eq!(back, events);
    assert!(log.read(6, 10).await?.is_empty());
    Ok(())
}
