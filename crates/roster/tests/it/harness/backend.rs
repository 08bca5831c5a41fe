//! The backend the suite runs against (`ROSTER_IT_BACKEND`), and the throw-away resources each
//! server gets on it: a SQLite file, a fresh Postgres database, a fresh Kafka topic and group.
//!
//! | `ROSTER_IT_BACKEND` | database | event log | processes per server |
//! |---|---|---|---|
//! | `sqlite` (default) | SQLite file | embedded | one `roster serve` |
//! | `postgres` | fresh database on `ROSTER_TEST_DATABASE_URL`'s server | embedded | one `roster serve` |
//! | `kafka` | as `postgres` | topic `roster-it-<pid>-<uuid>` on `ROSTER_TEST_KAFKA_BROKERS` | two `roster ingress`, two `roster projector`, one `roster licensing` |
//!
//! Postgres databases and Kafka topics are dropped when their owner is dropped; those of shared
//! servers (statics are never dropped) and of crashed runs carry the test process id in their name
//! and are removed by the next run once that process is gone.

use std::future::Future;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::util::Timeout;
use sea_orm::ConnectionTrait;

use super::{TestDir, uid};

/// Where the suite's servers keep their state and their event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and the embedded log, one `roster serve` per server.
    Sqlite,
    /// Postgres and the embedded log, one `roster serve` per server.
    Postgres,
    /// Postgres and a Kafka topic; two ingress, two projector and one licensing process per server.
    Kafka,
}

impl Backend {
    /// The backend chosen by `ROSTER_IT_BACKEND` (default `sqlite`).
    pub fn current() -> Backend {
        static B: OnceLock<Backend> = OnceLock::new();
        *B.get_or_init(|| {
            let v = std::env::var("ROSTER_IT_BACKEND").unwrap_or_default();
            match v.trim().to_ascii_lowercase().as_str() {
                "" | "sqlite" => Backend::Sqlite,
                "postgres" | "pg" => Backend::Postgres,
                "kafka" => Backend::Kafka,
                other => panic!("ROSTER_IT_BACKEND={other:?}: expected sqlite, postgres or kafka"),
            }
        })
    }

    /// Whether servers run `roster serve` (which creates the bootstrap account on an empty database).
    pub fn runs_serve(self) -> bool {
        self != Backend::Kafka
    }
}

/// The backend of this run.
pub fn backend() -> Backend {
    Backend::current()
}

/// The Postgres server tests create databases on (`ROSTER_TEST_DATABASE_URL`, set by `make test`).
pub fn postgres_server_url() -> String {
    match std::env::var("ROSTER_TEST_DATABASE_URL") {
        Ok(u) if u.starts_with("postgres") => u,
        _ => panic!(
            "this test needs Postgres: set ROSTER_TEST_DATABASE_URL=postgres://roster:roster@127.0.0.1:55432/roster \
             (`make test` starts the local services and sets it)"
        ),
    }
}

/// The Kafka brokers tests create topics on (`ROSTER_TEST_KAFKA_BROKERS`, set by `make test`).
pub fn kafka_brokers() -> String {
    match std::env::var("ROSTER_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "this test needs Kafka: set ROSTER_TEST_KAFKA_BROKERS=127.0.0.1:59092 \
             (`make test` starts the local services and sets it)"
        ),
    }
}

/// Runs a future to completion on a small runtime of its own (tests are synchronous).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("building a tokio runtime: {e}"))
        .block_on(f)
}

/// The prefix of every resource name this process creates; the suffix after it is unique.
fn owned_prefix(sep: char) -> String {
    format!("roster{sep}it{sep}{}{sep}", std::process::id())
}

/// The process id embedded in a resource name made by [`owned_prefix`], if any.
fn owner_pid(name: &str, sep: char) -> Option<u32> {
    let rest = name.strip_prefix(&format!("roster{sep}it{sep}"))?;
    rest.split(sep).next()?.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A database for roster processes: a SQLite file in a test dir, or a fresh Postgres database
/// that is dropped (with its connections) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to pass as `--database-url`.
    pub url: String,
    /// `(server URL, database name)` of a Postgres database we own.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite database file `file` in `dir` (created by the first process that connects).
    pub fn sqlite(dir: &TestDir, file: &str) -> TestDb {
        TestDb { url: dir.sqlite_url(file), pg: None }
    }

    /// A fresh, empty Postgres database on the server of `ROSTER_TEST_DATABASE_URL`.
    pub fn postgres() -> TestDb {
        let server = postgres_server_url();
        sweep_postgres(&server);
        let name = format!("{}{}", owned_prefix('_'), &uid()[..16]);
        block_on(async {
            let admin = roster_db::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("connecting to {}: {e}", roster_db::redact(&server)));
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
            admin.close().await.ok();
        });
        let base = server.split('?').next().unwrap_or_default();
        let (prefix, _) = base.rsplit_once('/').unwrap_or_else(|| panic!("no database name in {server}"));
        TestDb { url: format!("{prefix}/{name}"), pg: Some((server, name)) }
    }

    /// The database this run's backend uses: SQLite in `dir`, or a fresh Postgres database.
    pub fn fresh(dir: &TestDir, file: &str) -> TestDb {
        match backend() {
            Backend::Sqlite => TestDb::sqlite(dir, file),
            Backend::Postgres | Backend::Kafka => TestDb::postgres(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.pg {
            drop_postgres_database(server, name);
        }
    }
}

fn drop_postgres_database(server: &str, name: &str) {
    block_on(async {
        if let Ok(admin) = roster_db::connect(server).await {
            if let Err(e) = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
                eprintln!("harness: could not drop database {name}: {e}");
            }
            admin.close().await.ok();
        }
    });
}

/// Drops `roster_it_<pid>_…` databases of test processes that no longer run (once per process).
fn sweep_postgres(server: &str) {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        let stale: Vec<String> = block_on(async {
            let Ok(admin) = roster_db::connect(server).await else { return Vec::new() };
            let rows = admin
                .query_all_raw(sea_orm::Statement::from_string(
                    admin.get_database_backend(),
                    "SELECT datname FROM pg_database WHERE datname LIKE 'roster\\_it\\_%'",
                ))
                .await
                .unwrap_or_default();
            admin.close().await.ok();
            rows.iter().filter_map(|r| r.try_get_by_index::<String>(0).ok()).collect()
        });
        for name in stale {
            if owner_pid(&name, '_').is_some_and(|pid| !pid_alive(pid)) {
                drop_postgres_database(server, &name);
            }
        }
    });
}

fn kafka_admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "3")
        .create()
        .unwrap_or_else(|e| panic!("creating a Kafka admin client for {brokers}: {e}"))
}

/// A Kafka topic name for one server (Roster creates the topic in `roster migrate`), and the
/// consumer groups used with it; all deleted on drop.
#[derive(Debug)]
pub struct KafkaTopic {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `roster-it-<pid>-<uuid>`.
    pub topic: String,
    /// Partitions Roster creates the topic with (`ROSTER_KAFKA_PARTITIONS`).
    pub partitions: i32,
    groups: Mutex<Vec<String>>,
    /// Whether we delete the topic and groups on drop (not for a mock cluster's).
    owned: bool,
}

impl KafkaTopic {
    /// A fresh topic name on `ROSTER_TEST_KAFKA_BROKERS`, with 4 partitions.
    pub fn fresh() -> KafkaTopic {
        let brokers = kafka_brokers();
        sweep_kafka(&brokers);
        KafkaTopic {
            topic: format!("{}{}", owned_prefix('-'), uid()),
            brokers,
            partitions: 4,
            groups: Mutex::new(Vec::new()),
            owned: true,
        }
    }

    /// A topic on brokers we do not clean up (e.g. librdkafka's mock cluster, gone with the test).
    pub fn external(brokers: &str, topic: &str, partitions: i32) -> KafkaTopic {
        KafkaTopic {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            partitions,
            groups: Mutex::new(Vec::new()),
            owned: false,
        }
    }

    /// A new consumer group name, deleted with the topic.
    pub fn new_group(&self) -> String {
        let g = format!("{}{}", owned_prefix('-'), uid());
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).push(g.clone());
        g
    }

    /// Deletes the topic now (it may be created again by `roster migrate`).
    pub fn delete_topic(&self) {
        let admin = kafka_admin(&self.brokers);
        let opts = AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(20))));
        let results = block_on(admin.delete_topics(&[&self.topic], &opts))
            .unwrap_or_else(|e| panic!("deleting topic {}: {e}", self.topic));
        for r in results {
            if let Err((name, code)) = r {
                panic!("deleting topic {name}: {code}");
            }
        }
    }

    /// Whether the broker lists the topic (with partitions).
    pub fn exists(&self) -> bool {
        let admin = kafka_admin(&self.brokers);
        let md = admin
            .inner()
            .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("Kafka metadata from {}: {e}", self.brokers));
        md.topics().iter().any(|t| t.name() == self.topic && !t.partitions().is_empty())
    }
}

impl Drop for KafkaTopic {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner()).clone();
        delete_kafka(&self.brokers, std::slice::from_ref(&self.topic), &groups);
    }
}

fn delete_kafka(brokers: &str, topics: &[String], groups: &[String]) {
    let admin = kafka_admin(brokers);
    let opts = AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10))));
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    block_on(async {
        if !topics.is_empty() {
            let _ = admin.delete_topics(&topics, &opts).await;
        }
        if !groups.is_empty() {
            let _ = admin.delete_groups(&groups, &opts).await;
        }
    });
}

/// Deletes `roster-it-<pid>-…` topics and groups of test processes that no longer run.
fn sweep_kafka(brokers: &str) {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        let admin = kafka_admin(brokers);
        let stale = |name: &str| owner_pid(name, '-').is_some_and(|pid| !pid_alive(pid));
        let topics: Vec<String> = admin
            .inner()
            .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
            .map(|md| md.topics().iter().map(|t| t.name().to_owned()).filter(|n| stale(n)).collect())
            .unwrap_or_default();
        let groups: Vec<String> = admin
            .inner()
            .fetch_group_list(None, Timeout::After(Duration::from_secs(10)))
            .map(|l| l.groups().iter().map(|g| g.name().to_owned()).filter(|n| stale(n)).collect())
            .unwrap_or_default();
        if !topics.is_empty() || !groups.is_empty() {
            delete_kafka(brokers, &topics, &groups);
        }
    });
}
