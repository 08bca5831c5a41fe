//! Shared state of the ingress.

use std::sync::Arc;
use std::time::Duration;

use roster_db::ReadDb;
use roster_eventlog::EventLog;
use roster_scim::discovery::ProviderLimits;
use roster_scim::filter::FilterLimits;
use roster_scim::patch::PatchLimits;
use roster_store::accounts::UsageRecorder;

use crate::OutcomeWaiter;

/// Limits and behaviour of the ingress.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Public base URL (scheme, host, port, optional path prefix) used in `meta.location`.
    pub public_url: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Default page size when `count` is absent.
    pub default_count: u64,
    /// Largest page size; larger `count` values are capped, not rejected (RFC 7644 §3.4.2.4).
    pub max_count: u64,
    /// Filter length and complexity limits.
    pub filter_limits: FilterLimits,
    /// PATCH size limits.
    pub patch_limits: PatchLimits,
    /// How long a write waits for the projector before answering 503 (the write stays durable).
    pub apply_timeout: Duration,
    /// Deepest nesting of JSON objects and arrays accepted in a request body.
    pub max_json_depth: usize,
    /// How long a whole request (reading the body included) may take before it is answered 503.
    pub request_timeout: Duration,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            default_count: 100,
            max_count: 1000,
            filter_limits: FilterLimits::default(),
            patch_limits: PatchLimits::default(),
            apply_timeout: Duration::from_secs(10),
            max_json_depth: roster_scim::body::MAX_DEPTH,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl IngressConfig {
    /// The limits advertised in `/ServiceProviderConfig`.
    pub fn provider_limits(&self) -> ProviderLimits {
        ProviderLimits {
            max_operations: self.patch_limits.max_operations,
            max_payload_size: self.max_body_bytes,
            max_results: self.max_count as usize,
        }
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct IngressState {
    /// Read model and accounts (on a SQLite file, read on the handler's own thread).
    pub db: ReadDb,
    /// Where writes go.
    pub log: Arc<dyn EventLog>,
    /// How writes learn their outcome.
    pub waiter: OutcomeWaiter,
    /// Batched `last_used_at` recording.
    pub usage: Arc<UsageRecorder>,
    /// Per-account rate limits and the global concurrency limit.
    pub limiter: Arc<crate::limits::Limiter>,
    /// Limits and URLs.
    pub config: Arc<IngressConfig>,
}

impl IngressState {
    /// The SCIM base URL of an account.
    pub fn base_url(&self, account: &str) -> String {
        format!("{}/scim/v2/accounts/{account}", self.config.public_url.trim_end_matches('/'))
    }
}
