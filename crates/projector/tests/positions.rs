//! A batch ends by recording where its partition continues, by counting each account's applied
//! events for the licensing worker and, on Postgres, by waking the ingress replicas that wait.

mod support;
use support::{postgres, user_created};

use roster_db::{Db, testing};
use roster_eventlog::{BatchDone, Position, Record};
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
    let Some(db) = postgres("positions").await? else { return Ok(()) };
    batches_count_applied_events_per_account_and_store_the_next_offset(db).await
}

#[tokio::test]
async fn postgres_a_committed_batch_notifies_the_applied_channel() -> TestResult {
    let Some(db) = postgres("notify").await? else { return Ok(()) };
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(db.get_postgres_connection_pool()).await?;
    listener.listen(roster_store::write::APPLIED_CHANNEL).await?;
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    projector.apply_batch(0, &[record(1, &created_in("acc", "a@x"))]).await?;
    let notified = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await;
    assert!(matches!(notified, Ok(Ok(_))), "no notification after the commit: {notified:?}");
    Ok(())
}

async fn events_of_a_recreated_topic_below_the_stored_position_are_applied_once(db: Db) -> TestResult {
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let old: Vec<Envelope> = ["a@x", "b@x", "c@x"].iter().map(|n| created_in("acc", n)).collect();
    let batch: Vec<Record> = old.iter().enumerate().map(|(i, e)| record(i as i64, e)).collect();
    projector.apply_batch(0, &batch).await?;
    assert_eq!(projector.position(0).await?, Some(3));

    // The topic is deleted and recreated: its offsets start again at 0.
    let new: Vec<Envelope> = ["d@x", "e@x", "f@x", "g@x"].iter().map(|n| created_in("acc", n)).collect();
    let first = projector.apply_batch(0, &[record(0, &new[0]), record(1, &new[1])]).await?;
    let statuses: Vec<u16> = first.outcomes.iter().map(|(_, o)| o.status).collect();
    assert_eq!(statuses, vec![201, 201], "events below the old position that were never applied are new");
    assert!(
        matches!(first.done, BatchDone::Applied { next_offset: 2 }),
        "the source reads on from the batch, not from the old position: {:?}",
        first.done
    );
    assert_eq!(projector.position(0).await?, Some(3), "the stored position never moves back");

    let second = projector.apply_batch(0, &[record(2, &new[2]), record(3, &new[3])]).await?;
    assert_eq!(second.outcomes.len(), 2, "{:?}", second.outcomes);
    assert_eq!(projector.position(0).await?, Some(4));

    // Read again (a rebalance), old or new, nothing is applied twice.
    let again = projector.apply_batch(0, &[record(0, &new[0]), record(1, &old[1])]).await?;
    assert!(again.outcomes.is_empty(), "{:?}", again.outcomes);
    assert!(matches!(again.done, BatchDone::Applied { next_offset: 4 }), "{:?}", again.done);
    for env in old.iter().chain(&new) {
        let user = roster_store::read::get_user(&db, "acc", &env.resource_id).await?;
        assert_eq!(user.map(|u| u.version), Some(1), "{}", env.resource_id);
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_events_of_a_recreated_topic_below_the_stored_position_are_applied_once() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("recreated").await?;
    events_of_a_recreated_topic_below_the_stored_position_are_applied_once(db).await
}

#[tokio::test]
async fn postgres_events_of_a_recreated_topic_below_the_stored_position_are_applied_once() -> TestResult {
    let Some(db) = postgres("recreated").await? else { return Ok(()) };
    events_of_a_recreated_topic_below_the_stored_position_are_applied_once(db).await
}
