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
    /// Database connections per process (default 8 for SQLite, 20 for Postgres); on Postgres an
    /// ingress keeps up to 8 more for token checks and outcome lookups. Size the total across
    /// replicas below the server's max_connections.
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
    /// Largest accepted request body, in bytes; larger bodies get 413.
    #[arg(long, env = "ROSTER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Deepest nesting of JSON objects and arrays in a request body (1-100); deeper gets 400 invalidSyntax.
    #[arg(long, env = "ROSTER_MAX_JSON_DEPTH", default_value_t = roster_scim::body::MAX_DEPTH as u16,
          value_parser = clap::value_parser!(u16).range(1..=roster_scim::body::MAX_JSON_DEPTH_LIMIT as i64))]
    pub max_json_depth: u16,
    /// Longest filter accepted, in bytes; longer gets 400 invalidFilter.
    #[arg(long, env = "ROSTER_MAX_FILTER_LENGTH", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_filter_length: u32,
    /// Most expression nodes (comparisons, and, or, not) in a filter; more gets 400 invalidFilter.
    #[arg(long, env = "ROSTER_MAX_FILTER_NODES", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_filter_nodes: u32,
    /// Most operations in one PATCH request; more gets 400 tooMany.
    #[arg(long, env = "ROSTER_MAX_PATCH_OPERATIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_patch_operations: u32,
    /// Most group members named across one PATCH request; more gets 400 tooMany.
    #[arg(long, env = "ROSTER_MAX_PATCH_MEMBERS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_patch_members: u32,
    /// Largest page a list returns; a larger `count` is capped to it, not rejected (RFC 7644 §3.4.2.4).
    #[arg(long, env = "ROSTER_MAX_PAGE_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_page_size: u32,
    /// Seconds a SCIM request may take in all (reading the body included) before it gets 503;
    /// must exceed --apply-timeout-secs.
    #[arg(long, env = "ROSTER_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
    /// PEM certificate chain for TLS on the public port (with --tls-key); unset = plain HTTP.
    #[arg(long, env = "ROSTER_TLS_CERT_FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, env = "ROSTER_TLS_KEY_FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Seconds between checks of the certificate and key files; changed files are loaded without
    /// a restart (invalid ones are logged and the current certificate is kept).
    #[arg(long, env = "ROSTER_TLS_RELOAD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_secs: u64,
    /// Hold mass license revocations for an operator's confirmation (`true`/`false`).
    #[arg(long, env = "ROSTER_LICENSE_HOLD", default_value_t = true, action = clap::ArgAction::Set)]
    pub license_hold: bool,
    /// Hold when a single change would revoke or downgrade more than this share of the active users.
    #[arg(long, env = "ROSTER_LICENSE_HOLD_SHARE", default_value_t = 0.2)]
    pub license_hold_share: f64,
    /// …and at least this many users.
    #[arg(long, env = "ROSTER_LICENSE_HOLD_MIN_USERS", default_value_t = 10)]
    pub license_hold_min_users: usize,
    /// `/readyz` of a process serving SCIM fails while the projector is more than this many events behind
    /// (0 = never): its writes would only time out.
    #[arg(long, env = "ROSTER_READY_MAX_PROJECTOR_LAG", default_value_t = 10_000)]
    pub ready_max_projector_lag: u64,
    /// Seconds between full re-evaluations of each account (the worker otherwise re-evaluates only the users
    /// changes marked; the full pass repairs anything a lost mark or a bug could leave behind).
    #[arg(long, env = "ROSTER_LICENSE_FULL_RECONCILE_SECS", default_value_t = 3600)]
    pub license_full_reconcile_secs: u64,
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
    /// The SCIM ingress's limits from the flags; refuses a request timeout that would cut writes
    /// short of the apply timeout (they would answer 503 before the projector's own deadline).
    pub fn ingress_config(&self, public_url: String) -> anyhow::Result<roster_ingress::IngressConfig> {
        let apply_timeout = std::time::Duration::from_secs(self.apply_timeout_secs.max(1));
        let request_timeout = std::time::Duration::from_secs(self.request_timeout_secs);
        if request_timeout <= apply_timeout {
            anyhow::bail!(
                "--request-timeout-secs ({}) must exceed --apply-timeout-secs ({})",
                request_timeout.as_secs(),
                apply_timeout.as_secs()
            );
        }
        let max_count = u64::from(self.max_page_size);
        let defaults = roster_ingress::IngressConfig::default();
        Ok(roster_ingress::IngressConfig {
            public_url,
            max_body_bytes: self.max_body_bytes,
            default_count: defaults.default_count.min(max_count),
            max_count,
            filter_limits: roster_scim::filter::FilterLimits {
                max_len: self.max_filter_length as usize,
                max_nodes: self.max_filter_nodes as usize,
            },
            patch_limits: roster_scim::patch::PatchLimits {
                max_operations: self.max_patch_operations as usize,
                max_members_per_request: self.max_patch_members as usize,
            },
            apply_timeout,
            max_json_depth: usize::from(self.max_json_depth),
            request_timeout,
        })
    }

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
