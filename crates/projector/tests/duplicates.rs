//! A producer retry can put a second copy of an event in the log; the projector applies it once.

mod support;
use support::user_created;

use roster_db::testing;
use roster_eventlog::{Position, Record};
use roster_events::Envelope;
use roster_projector::{Projector, ProjectorConfig};
use uuid::Uuid;

fn record(offset: i64, env: &Envelope) -> Record {
    Record { position: Position { partition: 0, offset }, envelope: Ok(env.clone()) }
}

#[tokio::test]
async fn a_duplicated_event_is_applied_once_within_a_batch_and_across_batches() -> Result<(), Box<dyn std::error::Error>>
{
    let (db, _url) = testing::fresh_sqlite("duplicates").await?;
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let first = user_created("a@x");
    let other = user_created("b@x");

    let batch = [record(1, &first), record(2, &first), record(3, &other)];
    let result = projector.apply_batch(0, &batch).await?;
    let applied: Vec<Uuid> = result.outcomes.iter().map(|(id, _)| *id).collect();
    assert_eq!(applied, vec![first.event_id, other.event_id], "the second copy must be skipped");
    assert!(result.outcomes.iter().all(|(_, o)| o.status == 201), "{:?}", result.outcomes);

    // A later copy, in another batch, is skipped too (the outcome is already recorded).
    let again = projector.apply_batch(0, &[record(4, &first)]).await?;
    assert!(again.outcomes.is_empty(), "{:?}", again.outcomes);
    let user = roster_store::read::get_user(&db, "acc", &first.resource_id).await?;
    assert_eq!(user.map(|u| u.version), Some(1));
    Ok(())
}
