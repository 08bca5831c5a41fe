//! `roster replay` applies a bounded source with its accounts spread over several lanes: the read
//! model must be the one a single lane builds, whatever the partitions hold, the positions stored
//! at the end must continue where the log ended, and a partition whose events do not follow on
//! from each other must stop the replay instead of being skipped over.

mod support;
use support::user_created;

use std::collections::VecDeque;

use async_trait::async_trait;
use roster_db::testing;
use roster_eventlog::{Batch, BatchDone, BatchSource, LogError, Position, Record};
use roster_events::{Envelope, Payload, ResourceType};
use roster_projector::{Projector, ProjectorConfig, ProjectorError};
use roster_scim::schema::PATCH_OP_SCHEMA;
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Batches handed out in order, as a replay source reads them.
struct Batches(VecDeque<Batch>);

#[async_trait]
impl BatchSource for Batches {
    async fn next_batch(&mut self, _max: usize) -> Result<Option<Batch>, LogError> {
        Ok(self.0.pop_front())
    }
    async fn done(&mut self, _partition: i32, _done: BatchDone) -> Result<(), LogError> {
        Ok(())
    }
    fn is_bounded(&self) -> bool {
        true
    }
}

fn in_account(mut env: Envelope, account: &str) -> Envelope {
    env.account_id = account.into();
    env
}

fn deactivated(created: &Envelope) -> Envelope {
    let mut env = created.clone();
    env.event_id = uuid::Uuid::now_v7();
    env.resource_type = ResourceType::User;
    let patch =
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    env.payload = Payload::UserPatched { patch, if_match: None };
    env
}

/// An account's events: creates, then every other user deactivated, and one create reusing a
/// userName (rejected).
fn account_events(a: usize) -> Vec<Envelope> {
    let account = format!("acc-{a}");
    let created: Vec<Envelope> = (0..10).map(|i| in_account(user_created(&format!("u{i}@a{a}")), &account)).collect();
    let mut events = created.clone();
    events.extend(created.iter().step_by(2).map(deactivated));
    events.push(in_account(user_created(&format!("U0@A{a}")), &account));
    events
}

/// Four partitions of one account each, in batches of three records interleaved across partitions.
fn batches() -> Vec<Batch> {
    interleaved((0..4).map(account_events).collect())
}

/// The four accounts in two partitions, each partition's accounts interleaved event by event.
fn two_partitions() -> Vec<Batch> {
    let merge = |a: Vec<Envelope>, b: Vec<Envelope>| -> Vec<Envelope> {
        a.into_iter().zip(b).flat_map(|(x, y)| [x, y]).collect()
    };
    interleaved(vec![merge(account_events(0), account_events(1)), merge(account_events(2), account_events(3))])
}

/// Each partition's events in batches of three, the partitions' batches taking turns.
fn interleaved(per_partition: Vec<Vec<Envelope>>) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut any = false;
        for (p, events) in per_partition.iter().enumerate() {
            let records: Vec<Record> = events
                .iter()
                .enumerate()
                .skip(offset)
                .take(3)
                .map(|(o, e)| Record {
                    position: Position { partition: p as i32, offset: o as i64 },
                    envelope: Ok(e.clone()),
                })
                .collect();
            if !records.is_empty() {
                any = true;
                out.push(Batch { partition: p as i32, records });
            }
        }
        if !any {
            return out;
        }
        offset += 3;
    }
}

/// (account, userName, active) of every user, sorted.
async fn state(db: &roster_db::Db) -> Result<Vec<(String, String, bool)>, Box<dyn std::error::Error>> {
    let q =
        roster_store::read::ListQuery { filter: None, sort_by: None, descending: false, start_index: 1, count: 1000 };
    let mut out = Vec::new();
    for p in 0..4 {
        let account = format!("acc-{p}");
        let (_, users) = roster_store::read::list_users(db, &account, &q).await?;
        out.extend(users.into_iter().map(|u| (account.clone(), u.user_name, u.active)));
    }
    out.sort();
    Ok(out)
}

async fn replayed(name: &str, workers: usize, batches: Vec<Batch>) -> Result<(u64, roster_db::Db), ProjectorError> {
    let (db, _) = testing::fresh_sqlite(name).await.map_err(ProjectorError::Store)?;
    let applied = projector(&db).replay(&mut Batches(batches.into()), workers, |_| {}).await?;
    Ok((applied, db))
}

fn projector(db: &roster_db::Db) -> Projector {
    Projector::new(db.clone(), None, ProjectorConfig::default())
}

#[tokio::test]
async fn accounts_replayed_on_parallel_lanes_build_the_read_model_one_lane_builds() -> TestResult {
    let (one, db_one) = replayed("replay-one", 1, batches()).await?;
    let (three, db_three) = replayed("replay-three", 3, batches()).await?;
    assert_eq!(one, 4 * 16);
    assert_eq!(three, one);
    let (a, b) = (state(&db_one).await?, state(&db_three).await?);
    assert_eq!(a.len(), 40, "ten users per partition; the reused userName is rejected: {a:?}");
    assert_eq!(a.iter().filter(|u| !u.2).count(), 20);
    assert_eq!(a, b);
    Ok(())
}

#[tokio::test]
async fn accounts_sharing_a_partition_replay_on_separate_lanes_to_the_same_read_model() -> TestResult {
    let (one, db_one) = replayed("lanes-one", 1, two_partitions()).await?;
    let (four, db_four) = replayed("lanes-four", 4, two_partitions()).await?;
    assert_eq!((one, four), (4 * 16, 4 * 16));
    let (a, b) = (state(&db_one).await?, state(&db_four).await?);
    assert_eq!(a.len(), 40);
    assert_eq!(a, b);
    // The same accounts' events, one account per partition.
    let (_, db_apart) = replayed("lanes-apart", 1, batches()).await?;
    assert_eq!(b, state(&db_apart).await?);
    Ok(())
}

#[tokio::test]
async fn a_finished_replay_stores_where_each_partition_ended() -> TestResult {
    let (_, db) = replayed("lanes-positions", 3, two_partitions()).await?;
    let p = projector(&db);
    // Two accounts of 16 events per partition, offsets from 0.
    assert_eq!((p.position(0).await?, p.position(1).await?), (Some(32), Some(32)));
    assert_eq!(p.position(2).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_partition_with_missing_events_stops_the_replay() -> TestResult {
    let mut all = batches();
    // Partition 2 loses its second batch: its third does not follow on from its first.
    let second = all.iter().enumerate().filter(|(_, b)| b.partition == 2).nth(1).map(|(i, _)| i);
    all.remove(second.ok_or("no second batch")?);
    let (db, _) = testing::fresh_sqlite("replay-gap").await?;
    match projector(&db).replay(&mut Batches(all.into()), 2, |_| {}).await {
        Err(ProjectorError::Gap { partition: 2, first: 6, next: 3 }) => {}
        other => return Err(format!("expected a gap in partition 2, got {other:?}").into()),
    }
    // No positions: a projector started on this database would not take it for a finished replay.
    for partition in 0..4 {
        assert_eq!(projector(&db).position(partition).await?, None, "partition {partition}");
    }
    Ok(())
}
