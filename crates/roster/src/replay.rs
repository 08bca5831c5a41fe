//! `roster replay`: rebuild the read model from the event log (the database's or a Kafka topic).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use roster_db::{Db, stmt};
use roster_eventlog::{BatchSource, DbLog, DbLogConfig, DbSource};
use roster_eventlog_kafka::{KafkaConfig, KafkaReplaySource};
use roster_projector::{Projector, ProjectorConfig};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait, Value};
use tokio_util::sync::CancellationToken;

/// Arguments of `roster replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The database holding the event log (and, without --into, the read model to rebuild in place).
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = "sqlite://roster-data/roster.db?mode=rwc")]
    pub database_url: String,
    /// A fresh database to rebuild into: accounts, tokens and (without Kafka) the log are copied,
    /// then the read model is projected from the log. Without it, the read model is rebuilt in place.
    #[arg(long)]
    pub into: Option<String>,
    /// Kafka bootstrap servers: replay the Kafka topic instead of the database's embedded log.
    #[arg(long, env = "ROSTER_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic of the event log.
    #[arg(long, env = "ROSTER_KAFKA_TOPIC", default_value = "roster.scim-events")]
    pub kafka_topic: String,
    /// Consumer group name; the replay reads as `<group>-replay` and commits no offsets.
    #[arg(long, env = "ROSTER_KAFKA_GROUP", default_value = "roster-projector")]
    pub kafka_group: String,
    /// Events applied per transaction.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Lanes of accounts applied at once, each on its own connection (Postgres only: SQLite has one
    /// writer). 0 = 4 on Postgres, 1 on SQLite.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

/// Everything the projector derives from the log. License holds are not among them: the licensing
/// worker records them for an operator and re-creates any that still apply.
const READ_MODEL_TABLES: [&str; 9] = [
    "scim_members",
    "scim_groups",
    "scim_users",
    "event_outcomes",
    "consumer_positions",
    "license_policies",
    "license_overrides",
    "account_state",
    "license_dirty",
];

/// Runs the replay.
pub async fn run(args: ReplayArgs) -> Result<()> {
    let kafka = args.kafka_brokers.as_deref().filter(|b| !b.trim().is_empty()).map(|brokers| {
        let mut k = KafkaConfig::new(brokers, &args.kafka_topic);
        k.group = args.kafka_group.clone();
        k
    });
    let src = roster_db::connect(&args.database_url)
        .await
        .with_context(|| format!("connecting to {}", roster_db::redact(&args.database_url)))?;
    roster_db::migrate(&src).await?;
    let target = match &args.into {
        Some(url) => {
            let dst =
                roster_db::connect(url).await.with_context(|| format!("connecting to {}", roster_db::redact(url)))?;
            roster_db::migrate(&dst).await?;
            // With Kafka the log stays in the topic: only accounts and tokens are copied.
            copy_state(&src, &dst, kafka.is_none()).await?;
            dst
        }
        None => {
            let txn = src.begin().await?;
            for t in READ_MODEL_TABLES {
                txn.execute_unprepared(&format!("DELETE FROM {t}")).await?;
            }
            txn.commit().await?;
            src
        }
    };
    let bar_style =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let started = Instant::now();
    let total = match &kafka {
        Some(k) => {
            let mut source =
                KafkaReplaySource::new(k).with_context(|| format!("reading topic {} at {}", k.topic, k.brokers))?;
            let total = source.total();
            // The live projector's consumer name, so a projector started on the rebuilt database
            // continues from the replayed positions.
            let consumer = format!("kafka:{}", k.topic);
            let workers = match (args.workers, target.get_database_backend()) {
                (0, sea_orm::DbBackend::Postgres) => 4,
                (0, _) => 1,
                (n, _) => n,
            };
            let projector =
                Projector::new(target.clone(), None, ProjectorConfig { consumer, max_batch: args.batch.max(1) });
            let bar = ProgressBar::new(total.max(0) as u64);
            bar.set_style(bar_style);
            let applied = projector.replay(&mut source, workers, |n| bar.inc(n as u64)).await;
            bar.finish();
            let applied = applied.context("replay failed")?;
            if (applied as i64) < total {
                bail!("replay stopped at {applied} of {total} events");
            }
            total
        }
        None => {
            let total = last_position(&target).await?;
            let log = DbLog::start(target.clone(), DbLogConfig::default());
            let mut source = DbSource::to_end(log, 1);
            project(&target, &mut source, ProjectorConfig::default().consumer, args.batch, total, bar_style).await;
            let applied = count(&target, "event_outcomes").await?;
            if applied < total {
                bail!("replay stopped at {applied} of {total} events; see the log for the error");
            }
            total
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
    println!("roster: replayed {total} events in {secs:.2} s ({rate:.0} events/s)");
    Ok(())
}

/// Projects a bounded source into `target` with a progress bar; returns how many records it read.
async fn project(
    target: &Db,
    source: &mut dyn BatchSource,
    consumer: String,
    batch: usize,
    total: i64,
    style: ProgressStyle,
) -> i64 {
    let projector = Projector::new(target.clone(), None, ProjectorConfig { consumer, max_batch: batch.max(1) });
    let bar = ProgressBar::new(total.max(0) as u64);
    bar.set_style(style);
    let mut read = 0i64;
    projector
        .run_with_progress(source, CancellationToken::new(), |n| {
            read += n as i64;
            bar.inc(n as u64);
        })
        .await;
    bar.finish();
    read
}

async fn last_position(db: &Db) -> Result<i64> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(b, "SELECT last_position FROM log_head WHERE id = 1"))
        .await?
        .context("log_head row missing")?;
    Ok(row.try_get_by_index(0)?)
}

async fn count(db: &Db, table: &str) -> Result<i64> {
    let b = db.get_database_backend();
    let row = db.query_one_raw(Statement::from_string(b, format!("SELECT COUNT(*) FROM {table}"))).await?;
    Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0))
}

/// Copies accounts, tokens and (when `with_log`) the event log into an empty destination database.
async fn copy_state(src: &Db, dst: &Db, with_log: bool) -> Result<()> {
    for t in ["accounts", "scim_tokens", "events", "event_outcomes"] {
        if count(dst, t).await? > 0 {
            bail!("the --into database is not empty (table {t} has rows); replay needs a fresh database");
        }
    }
    copy_table(src, dst, "accounts", &["id", "name", "created_at"], "id").await?;
    copy_table(
        src,
        dst,
        "scim_tokens",
        &["id", "account_id", "name", "token_hash", "created_at", "last_used_at", "expires_at", "revoked_at"],
        "id",
    )
    .await?;
    if !with_log {
        return Ok(());
    }
    copy_table(
        src,
        dst,
        "events",
        &["position", "event_id", "account_id", "resource_id", "event_type", "envelope"],
        "position",
    )
    .await?;
    let last = last_position(src).await?;
    let b = dst.get_database_backend();
    dst.execute_raw(stmt(b, "UPDATE log_head SET last_position = ? WHERE id = 1", [Value::from(last)])).await?;
    Ok(())
}

async fn copy_table(src: &Db, dst: &Db, table: &str, columns: &[&str], order: &str) -> Result<()> {
    let sb = src.get_database_backend();
    let db_ = dst.get_database_backend();
    let cols = columns.join(", ");
    let page = 2000usize;
    let mut offset = 0usize;
    loop {
        let rows = src
            .query_all_raw(Statement::from_string(
                sb,
                format!("SELECT {cols} FROM {table} ORDER BY {order} LIMIT {page} OFFSET {offset}"),
            ))
            .await?;
        if rows.is_empty() {
            break;
        }
        let txn = dst.begin().await?;
        for r in &rows {
            let mut values: Vec<Value> = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                values.push(if *c == "position" {
                    Value::from(r.try_get_by_index::<i64>(i)?)
                } else {
                    Value::from(r.try_get_by_index::<Option<String>>(i)?)
                });
            }
            let marks = vec!["?"; columns.len()].join(", ");
            txn.execute_raw(stmt(db_, &format!("INSERT INTO {table} ({cols}) VALUES ({marks})"), values)).await?;
        }
        txn.commit().await?;
        offset += rows.len();
    }
    Ok(())
}
