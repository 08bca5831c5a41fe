//! `roster serve` applies each group commit of the embedded log in the transaction that appends
//! it. These tests pin down what that must never change: every event is applied exactly once, in
//! log order, whether it was applied inline, left to the projector, or both tried.

mod support;
use support::user_created;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use roster_db::testing;
use roster_eventlog::{AfterCommit, DbLog, DbLogConfig, DbSource, EventLog, InlineApply, InlineError, Record};
use roster_projector::{OutcomeHub, Projector, ProjectorConfig};
use sea_orm::DatabaseTransaction;
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn user_names(db: &roster_db::Db) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let q =
        roster_store::read::ListQuery { filter: None, sort_by: None, descending: false, start_index: 1, count: 1000 };
    let (_, users) = roster_store::read::list_users(db, "acc", &q).await?;
    let mut names: Vec<String> = users.into_iter().map(|u| u.user_name).collect();
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn an_inline_append_is_applied_and_its_outcome_delivered_before_the_append_returns() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("inline-applied").await?;
    let hub = Arc::new(OutcomeHub::default());
    let projector = Projector::new(db.clone(), Some(hub.clone()), ProjectorConfig::default());
    let log = DbLog::start_with(db.clone(), DbLogConfig::default(), Some(Arc::new(projector.clone())));

    let event = user_created("a@x");
    let outcome = hub.register(event.event_id);
    let positions = log.append(vec![event.clone()]).await?;

    // No projector task runs: the append itself applied the event.
    let outcome = tokio::time::timeout(Duration::from_millis(100), outcome).await??;
    assert_eq!(outcome.status, 201);
    assert_eq!(user_names(&db).await?, vec!["a@x".to_string()]);
    assert_eq!(projector.position(0).await?, Some(positions[0].offset + 1));
    assert_eq!(log.applied_inline(), positions[0].offset + 1);
    Ok(())
}

#[tokio::test]
async fn the_projector_skips_what_was_applied_inline() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("inline-skip").await?;
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let log = DbLog::start_with(db.clone(), DbLogConfig::default(), Some(Arc::new(projector.clone())));
    log.append(vec![user_created("a@x"), user_created("b@x")]).await?;

    // A projector that starts from the beginning of the log finds nothing left to apply.
    let mut source = DbSource::to_end(log.clone(), 1);
    let applied = projector.run(&mut source, CancellationToken::new()).await;
    assert_eq!(applied, 0);
    assert_eq!(user_names(&db).await?, vec!["a@x".to_string(), "b@x".to_string()]);
    Ok(())
}

#[tokio::test]
async fn appends_while_the_projector_is_behind_wait_for_it_and_apply_in_log_order() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("inline-behind").await?;
    // Events already in the log that no projector has applied (a read model being rebuilt).
    let plain = DbLog::start(db.clone(), DbLogConfig::default());
    plain.append(vec![user_created("first@x")]).await?;

    let hub = Arc::new(OutcomeHub::default());
    let projector = Projector::new(db.clone(), Some(hub.clone()), ProjectorConfig::default());
    let log = DbLog::start_with(db.clone(), DbLogConfig::default(), Some(Arc::new(projector.clone())));
    // Same userName, other case: applied before the first, it would win the name.
    let later = user_created("FIRST@x");
    let outcome = hub.register(later.event_id);
    log.append(vec![later]).await?;
    assert!(user_names(&db).await?.is_empty(), "applying the later event inline would reorder the log");
    assert_eq!(log.applied_inline(), 0);

    let mut source = DbSource::to_end(log.clone(), 1);
    assert_eq!(projector.run(&mut source, CancellationToken::new()).await, 2);
    assert_eq!(outcome.await?.status, 409, "the later event conflicts with the earlier one");
    assert_eq!(user_names(&db).await?, vec!["first@x".to_string()]);

    // Caught up, appends apply inline again.
    log.append(vec![user_created("next@x")]).await?;
    assert_eq!(user_names(&db).await?, vec!["first@x".to_string(), "next@x".to_string()]);
    assert_eq!(log.applied_inline(), 4);
    Ok(())
}

/// An applier whose database work fails, as a broken read model would.
struct Failing;

#[async_trait]
impl InlineApply for Failing {
    async fn apply(&self, txn: &DatabaseTransaction, _records: &[Record]) -> Result<Option<AfterCommit>, InlineError> {
        use sea_orm::ConnectionTrait as _;
        txn.execute_unprepared("INSERT INTO no_such_table VALUES (1)").await?;
        Ok(None)
    }
}

#[tokio::test]
async fn a_failing_inline_application_still_appends_every_event_once() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("inline-failing").await?;
    let log = DbLog::start_with(db.clone(), DbLogConfig::default(), Some(Arc::new(Failing)));
    let positions = log.append(vec![user_created("a@x"), user_created("b@x")]).await?;
    assert_eq!(positions.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(log.last_position().await?, 2, "the rolled-back attempt must leave no gap or copy");
    assert_eq!(log.applied_inline(), 0);

    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let mut source = DbSource::to_end(log.clone(), 1);
    assert_eq!(projector.run(&mut source, CancellationToken::new()).await, 2);
    assert_eq!(user_names(&db).await?, vec!["a@x".to_string(), "b@x".to_string()]);
    Ok(())
}
