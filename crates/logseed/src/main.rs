//! `roster-logseed`: writes an Entra-shaped event log of a given length into Kafka or the embedded
//! log, with the accounts and tokens it belongs to, and the state a replay must rebuild from it.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use roster_eventlog::{DbLog, DbLogConfig, EventLog};
use roster_eventlog_kafka::{KafkaConfig, KafkaLog};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType};
use roster_logseed::{AccountScript, Expected, Shape};
use roster_store::accounts::{self, Expiry};
use serde::Serialize;

/// Command line of `roster-logseed`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The database that gets the accounts and tokens (and, without Kafka, the log itself).
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = "sqlite://roster-data/roster.db?mode=rwc")]
    database_url: String,
    /// Kafka bootstrap servers: write the log to this cluster's topic instead of the database.
    #[arg(long, env = "ROSTER_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Kafka topic of the event log (created when missing).
    #[arg(long, env = "ROSTER_KAFKA_TOPIC", default_value = "roster.scim-events")]
    kafka_topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, env = "ROSTER_KAFKA_PARTITIONS", default_value_t = 12)]
    kafka_partitions: i32,
    /// Events to write in all.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Accounts (tenants) the events are spread over, interleaved as Entra serves tenants at once.
    #[arg(long, default_value_t = 10)]
    accounts: usize,
    /// Users per account in the initial cycle.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Groups per account.
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Groups each user joins in the initial cycle.
    #[arg(long, default_value_t = 2)]
    memberships_per_user: usize,
    /// Members per member-add PATCH in the initial cycle.
    #[arg(long, default_value_t = 50)]
    member_batch: usize,
    /// Seed of the scripts (the same seed writes the same changes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writes what the replayed read model must hold (per table) to this JSON file.
    #[arg(long)]
    expect: Option<std::path::PathBuf>,
}

/// Events are appended this many at a time.
const APPEND: usize = 5000;
/// Consecutive events of one account before the next account's, as requests of many tenants interleave.
const RUN: usize = 50;

/// What the seeded log leaves behind, summed over accounts.
#[derive(Serialize)]
struct Summary {
    events: usize,
    accounts: usize,
    secs: f64,
    expected: Expected,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.accounts == 0 || args.member_batch == 0 {
        bail!("--accounts and --member-batch must be positive");
    }
    let db = roster_db::connect(&args.database_url)
        .await
        .with_context(|| format!("connecting to {}", roster_db::redact(&args.database_url)))?;
    roster_db::migrate(&db).await?;
    let log: Arc<dyn EventLog> = match args.kafka_brokers.as_deref().filter(|b| !b.trim().is_empty()) {
        Some(brokers) => {
            let mut cfg = KafkaConfig::new(brokers, &args.kafka_topic);
            cfg.partitions = args.kafka_partitions;
            roster_eventlog_kafka::ensure_topic(&cfg).await?;
            Arc::new(KafkaLog::new(cfg)?)
        }
        None => Arc::new(DbLog::start(db.clone(), DbLogConfig::default())),
    };
    let shape = Shape {
        users: args.users,
        groups: args.groups,
        memberships_per_user: args.memberships_per_user,
        member_batch: args.member_batch,
    };
    let mut tenants = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        let account = accounts::create_account(&db, &format!("seed-{}-{i}-{}", args.seed, roster_scim::time::now()))
            .await
            .context("creating an account")?;
        let (token, _secret) =
            accounts::create_token(&db, &account.id, "logseed", &Expiry::Never).await.context("creating a token")?;
        tenants.push((account.id, token.id, AccountScript::new(args.seed, i as u64, shape)));
    }
    let started = Instant::now();
    let mut written = 0usize;
    let mut pending: Vec<Envelope> = Vec::with_capacity(APPEND);
    'outer: loop {
        for (account, token, script) in &mut tenants {
            for _ in 0..RUN {
                if written + pending.len() >= args.events {
                    break 'outer;
                }
                let step = script.next_step()?;
                pending.push(envelope(account, token, step));
                if pending.len() == APPEND {
                    written += pending.len();
                    log.append(std::mem::take(&mut pending)).await.context("appending to the log")?;
                    eprintln!("roster-logseed: {written} events");
                }
            }
        }
    }
    written += pending.len();
    if !pending.is_empty() {
        log.append(pending).await.context("appending to the log")?;
    }
    let expected = tenants.iter().map(|(_, _, s)| s.expected()).fold(Expected::default(), |a, b| a + b);
    let summary = Summary { events: written, accounts: args.accounts, secs: started.elapsed().as_secs_f64(), expected };
    let json = serde_json::to_string_pretty(&summary)?;
    if let Some(path) = &args.expect {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

/// The envelope the ingress (or, for license events, the admin API and the licensing worker) would write.
fn envelope(account: &str, token: &str, step: roster_logseed::Step) -> Envelope {
    let actor = match step.payload {
        Payload::LicensePolicySet { .. } => Actor::Admin,
        Payload::LicenseChanged { .. } => Actor::System,
        _ => Actor::ScimToken { token_id: token.to_string() },
    };
    let resource_id = if step.resource_type == ResourceType::Account { account.to_string() } else { step.resource_id };
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: uuid::Uuid::now_v7(),
        account_id: account.to_string(),
        resource_type: step.resource_type,
        resource_id,
        time: roster_scim::time::now(),
        request_id: None,
        trace_context: None,
        actor,
        payload: step.payload,
    }
}
