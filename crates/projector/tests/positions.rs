//! A batch ends by recording where its partition continues, by counting each account's applied
//! events for the licensing worker and, on Postgres, by waking the ingress replicas that wait.

mod support;
use support::user_created;

use roster_db::{Db, testing};
use roster_eventlog::{Position, Record};
use roster_events::Envelope;
use roster_projector::{Projector, ProjectorConfig};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn record(offset: i64, env: &Envelope) -> Record {
    Record { position: Position { partition: 0, offset }, envelope: Ok(env.clone()) }
}

fn created_in(account: &str, user_name: &str) -> Envelope {
    let mut env = user_created(user_name);
    env.account_id = account.into();
    env
}

async fn seqs(db: &Db) -> Result<Vec<(String, i64)>, Box<dyn std::error::Error>> {
    let (_, seqs) = roster_store::licensing::account_seqs(db, &["acc", "other"]).await?;
    let mut seqs: Vec<(String, i64)> = seqs.into_iter().collect();
    seqs.sort();
    Ok(seqs)
}

async fn batches_count_applied_events_per_account_and_store_the_next_offset(db: Db) -> TestResult {
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let batch = [
        record(1, &created_in("acc", "a@x")),
        record(2, &created_in("acc", "b@x")),
        // Rejected (the userName is taken): decided, but it changes nothing to count.
        record(3, &created_in("acc", "a@x")),
        record(4, &created_in("other", "a@x")),
    ];
    let result = projector.apply_batch(0, &batch).await?;
    let statuses: Vec<u16> = result.outcomes.iter().map(|(_, o)| o.status).collect();
    assert_eq!(statuses, vec![201, 201, 409, 201]);
    assert_eq!(projector.position(0).await?, Some(5));
    assert_eq!(seqs(&db).await?, vec![("acc".to_string(), 2), ("other".to_string(), 1)]);

    projector.apply_batch(0, &[record(5, &created_in("acc", "c@x"))]).await?;
    assert_eq!(projector.position(0).await?, Some(6));
    assert_eq!(seqs(&db).await?, vec![("acc".to_string(), 3), ("other".to_string(), 1)]);
    Ok(())
}

#[tokio::test]
async fn sqlite_batches_count_applied_events_per_account_and_store_the_next_offset() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("positions").await?;
    batches_count_applied_events_per_account_and_store_the_next_offset(db).await
}

#[tokio::test]
async fn postgres_batches_count_applied_events_per_account_and_store_the_next_offset() -> TestResult {
    let Some(base) = testing::postgres_url() else { return Ok(()) };
    let (db, _url) = testing::fresh_postgres(&base, "positions").await?;
    batches_count_applied_events_per_account_and_store_the_next_offset(db).await
}

#[tokio::test]
async fn postgres_a_committed_batch_notifies_the_applied_channel() -> TestResult {
    let Some(base) = testing::postgres_url() else { return Ok(()) };
    let (db, _url) = testing::fresh_postgres(&base, "notify").await?;
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(db.get_postgres_connection_pool()).await?;
    listener.listen(roster_store::write::APPLIED_CHANNEL).await?;
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    projector.apply_batch(0, &[record(1, &created_in("acc", "a@x"))]).await?;
    let notified = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await;
    assert!(matches!(notified, Ok(Ok(_))), "no notification after the commit: {notified:?}");
    Ok(())
}
