//! Flags shared by the long-running subcommands, each with its environment variable (SPEC.md).

use clap::Args;
use roster_telemetry::trace::{LogFormat, Telemetry};

/// Process configuration.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Public address: SCIM and /healthz.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Internal address: admin API, /metrics, /readyz.
    #[arg(long, env = "ROSTER_OPS_LISTEN", default_value = "127.0.0.1:8081")]
    pub ops_listen: String,
    /// Database URL: the read model, accounts and (without Kafka) the event log.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = "sqlite://roster-data/roster.db?mode=rwc")]
    pub database_url: String,
    /// Database connections per process (default 8 for SQLite, 20 for Postgres); size the total
    /// across replicas below the server's max_connections.
    #[arg(long, env = "ROSTER_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// Kafka bootstrap servers; unset = the embedded event log in the database.
    #[arg(long, env = "ROSTER_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic of the event log.
    #[arg(long, env = "ROSTER_KAFKA_TOPIC", default_value = "roster.scim-events")]
    pub kafka_topic: String,
    /// Partitions of the event topic when Roster creates it.
    #[arg(long, env = "ROSTER_KAFKA_PARTITIONS", default_value_t = 12)]
    pub kafka_partitions: i32,
    /// Replication factor of the event topic when Roster creates it (default: min(3, brokers)).
    #[arg(long, env = "ROSTER_KAFKA_REPLICATION")]
    pub kafka_replication: Option<i32>,
    /// Consumer group of the projectors.
    #[arg(long, env = "ROSTER_KAFKA_GROUP", default_value = "roster-projector")]
    pub kafka_group: String,
    /// Base URL printed for SCIM endpoints and used in meta.location; derived from --listen when unset.
    #[arg(long, env = "ROSTER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a write waits for the projector before answering 503 (the write stays durable).
    #[arg(long, env = "ROSTER_APPLY_TIMEOUT_SECS", default_value_t = 10)]
    pub apply_timeout_secs: u64,
    /// Sustained SCIM requests per second allowed per account (0 = unlimited); excess gets 429.
    #[arg(long, env = "ROSTER_RATE_LIMIT_PER_ACCOUNT", default_value_t = 500.0)]
    pub rate_limit_per_account: f64,
    /// Burst of requests an account may send above the sustained rate.
    #[arg(long, env = "ROSTER_RATE_LIMIT_BURST", default_value_t = 1000.0)]
    pub rate_limit_burst: f64,
    /// Requests served at once by this process; more get 503 with Retry-After.
    #[arg(long, env = "ROSTER_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Seconds to finish in-flight requests and batches after SIGTERM/SIGINT before exiting.
    #[arg(long, env = "ROSTER_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ROSTER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Hold mass license revocations for an operator's confirmation (`true`/`false`).
    #[arg(long, env = "ROSTER_LICENSE_HOLD", default_value_t = true, action = clap::ArgAction::Set)]
    pub license_hold: bool,
    /// Hold when a single change would revoke or downgrade more than this share of the active users.
    #[arg(long, env = "ROSTER_LICENSE_HOLD_SHARE", default_value_t = 0.2)]
    pub license_hold_share: f64,
    /// …and at least this many users.
    #[arg(long, env = "ROSTER_LICENSE_HOLD_MIN_USERS", default_value_t = 10)]
    pub license_hold_min_users: usize,
    /// Label the license seat gauges with account ids (one series per account and license).
    #[arg(long, env = "ROSTER_METRICS_ACCOUNT_LABELS", default_value_t = false)]
    pub metrics_account_labels: bool,
}

/// Logging from `RUST_LOG` (default `info`), as text or JSON (`ROSTER_LOG_FORMAT=json`), to
/// stderr; and, for the long-running `subcommand`s (`traced`), trace export when the standard
/// `OTEL_*` variables configure it, with service name `roster-<subcommand>` unless
/// `OTEL_SERVICE_NAME` is set. Shut the result down before exiting.
pub fn init_logging(subcommand: &str, traced: bool) -> Telemetry {
    let json = std::env::var("ROSTER_LOG_FORMAT").map(|v| v.trim().eq_ignore_ascii_case("json")).unwrap_or(false);
    let format = if json { LogFormat::Json } else { LogFormat::Text };
    let service = format!("roster-{subcommand}");
    roster_telemetry::trace::init(traced.then_some(service.as_str()), format)
}

impl Common {
    /// The Kafka settings, when `--kafka-brokers` is set.
    pub fn kafka(&self) -> Option<roster_eventlog_kafka::KafkaConfig> {
        let brokers = self.kafka_brokers.as_deref().filter(|b| !b.trim().is_empty())?;
        let mut cfg = roster_eventlog_kafka::KafkaConfig::new(brokers, &self.kafka_topic);
        cfg.partitions = self.kafka_partitions.max(1);
        cfg.replication = self.kafka_replication;
        cfg.group = self.kafka_group.clone();
        Some(cfg)
    }

    /// The licensing worker's mass-revocation threshold; `None` when `--license-hold false`.
    pub fn hold_threshold(&self) -> Option<roster_license_policy::HoldThreshold> {
        self.license_hold.then_some(roster_license_policy::HoldThreshold {
            share: self.license_hold_share,
            min_users: self.license_hold_min_users,
        })
    }

    /// The name under which the projector stores its positions: one per log it follows.
    pub fn consumer_name(&self) -> String {
        match self.kafka() {
            Some(k) => format!("kafka:{}", k.topic),
            None => "projector".into(),
        }
    }
}
