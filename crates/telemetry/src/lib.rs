//! Roster's telemetry. Metrics: one Prometheus registry per process, every metric defined here
//! once so that the code, the Grafana dashboard and the alert rules agree on names and labels.
//! Logs and traces: see [`trace`] (structured logs, OTLP span export, W3C context propagation).
//!
//! Label cardinality is bounded: routes are patterns, not paths; event types, SCIM error types,
//! partitions and license names are small closed sets; account ids appear only on the license
//! gauges and only when the operator enables them.

pub mod trace;

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric Roster exports.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// HTTP requests by route pattern, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route pattern and method.
    pub http_duration: HistogramVec,
    /// Requests being served right now.
    pub http_in_flight: IntGauge,
    /// SCIM error responses by `scimType` and status.
    pub scim_errors: IntCounterVec,
    /// Events appended to the log, by type.
    pub appended: IntCounterVec,
    /// Latency of an append until durable.
    pub append_duration: Histogram,
    /// Appends that failed (the write was not acknowledged).
    pub append_failures: IntCounter,
    /// Messages waiting in the Kafka producer.
    pub producer_queue: IntGauge,
    /// Events applied by the projector, by type.
    pub applied: IntCounterVec,
    /// Events the projector rejected, by type and reason (`scimType` or status).
    pub rejected: IntCounterVec,
    /// Time to apply one batch (one transaction).
    pub batch_duration: Histogram,
    /// Events per batch.
    pub batch_size: Histogram,
    /// Events in the log not yet applied, per partition.
    pub lag_events: IntGaugeVec,
    /// Age of the oldest unapplied event, per partition.
    pub lag_seconds: prometheus::GaugeVec,
    /// How long writes waited for their outcome (read-your-writes).
    pub write_wait: Histogram,
    /// License seats in use, by license (and account when enabled).
    pub seats_used: IntGaugeVec,
    /// License seat limits, by license (and account when enabled); absent for unlimited licenses.
    pub seats_limit: IntGaugeVec,
    /// License changes by reason.
    pub license_changes: IntCounterVec,
    /// Mass revocations held for an operator's decision.
    pub holds_pending: IntGauge,
    /// TLS certificate reloads on the public port, by result (`ok`, `error`).
    pub tls_reloads: IntCounterVec,
    /// Build information (always 1).
    pub build_info: IntGaugeVec,
}

fn latency_buckets() -> Vec<f64> {
    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            http_requests: IntCounterVec::new(
                Opts::new("roster_http_requests_total", "HTTP requests by route pattern, method and status."),
                &["route", "method", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new("roster_http_request_duration_seconds", "HTTP request latency.")
                    .buckets(latency_buckets()),
                &["route", "method"],
            )?,
            http_in_flight: IntGauge::new("roster_http_requests_in_flight", "HTTP requests being served.")?,
            scim_errors: IntCounterVec::new(
                Opts::new("roster_scim_errors_total", "SCIM error responses by scimType and status."),
                &["scim_type", "status"],
            )?,
            appended: IntCounterVec::new(
                Opts::new("roster_eventlog_appended_total", "Events appended to the event log, by type."),
                &["type"],
            )?,
            append_duration: Histogram::with_opts(
                HistogramOpts::new("roster_eventlog_append_duration_seconds", "Time until an append is durable.")
                    .buckets(latency_buckets()),
            )?,
            append_failures: IntCounter::new(
                "roster_eventlog_append_failures_total",
                "Appends that failed; the write was not acknowledged.",
            )?,
            producer_queue: IntGauge::new(
                "roster_kafka_producer_queue_messages",
                "Messages queued in the Kafka producer, not yet acknowledged.",
            )?,
            applied: IntCounterVec::new(
                Opts::new("roster_projector_events_applied_total", "Events the projector applied, by type."),
                &["type"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "roster_projector_events_rejected_total",
                    "Events the projector rejected, by type and reason.",
                ),
                &["type", "reason"],
            )?,
            batch_duration: Histogram::with_opts(
                HistogramOpts::new("roster_projector_batch_duration_seconds", "Time to apply one batch.")
                    .buckets(latency_buckets()),
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("roster_projector_batch_size", "Events per projector batch.")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0]),
            )?,
            lag_events: IntGaugeVec::new(
                Opts::new("roster_projector_lag_events", "Events in the log not yet applied, per partition."),
                &["partition"],
            )?,
            lag_seconds: prometheus::GaugeVec::new(
                Opts::new("roster_projector_lag_seconds", "Age of the last batch's newest event when applied."),
                &["partition"],
            )?,
            write_wait: Histogram::with_opts(
                HistogramOpts::new("roster_write_wait_seconds", "How long writes waited for the projector's outcome.")
                    .buckets(latency_buckets()),
            )?,
            seats_used: IntGaugeVec::new(
                Opts::new("roster_license_seats_used", "License seats in use."),
                &["license", "account"],
            )?,
            seats_limit: IntGaugeVec::new(
                Opts::new("roster_license_seats_limit", "License seat limits (absent when unlimited)."),
                &["license", "account"],
            )?,
            license_changes: IntCounterVec::new(
                Opts::new("roster_license_changes_total", "License changes applied, by reason."),
                &["reason"],
            )?,
            holds_pending: IntGauge::new(
                "roster_license_holds_pending",
                "Mass revocations held for an operator's confirmation.",
            )?,
            tls_reloads: IntCounterVec::new(
                Opts::new(
                    "roster_tls_certificate_reloads_total",
                    "Reloads of the public port's TLS certificate after its files changed, by result (ok, error).",
                ),
                &["result"],
            )?,
            build_info: IntGaugeVec::new(
                Opts::new("roster_build_info", "Build information; always 1."),
                &["version", "git_commit"],
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.http_requests.clone()))?;
        r.register(Box::new(m.http_duration.clone()))?;
        r.register(Box::new(m.http_in_flight.clone()))?;
        r.register(Box::new(m.scim_errors.clone()))?;
        r.register(Box::new(m.appended.clone()))?;
        r.register(Box::new(m.append_duration.clone()))?;
        r.register(Box::new(m.append_failures.clone()))?;
        r.register(Box::new(m.producer_queue.clone()))?;
        r.register(Box::new(m.applied.clone()))?;
        r.register(Box::new(m.rejected.clone()))?;
        r.register(Box::new(m.batch_duration.clone()))?;
        r.register(Box::new(m.batch_size.clone()))?;
        r.register(Box::new(m.lag_events.clone()))?;
        r.register(Box::new(m.lag_seconds.clone()))?;
        r.register(Box::new(m.write_wait.clone()))?;
        r.register(Box::new(m.seats_used.clone()))?;
        r.register(Box::new(m.seats_limit.clone()))?;
        r.register(Box::new(m.license_changes.clone()))?;
        r.register(Box::new(m.holds_pending.clone()))?;
        r.register(Box::new(m.tls_reloads.clone()))?;
        r.register(Box::new(m.build_info.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("ROSTER_GIT_COMMIT").unwrap_or("unknown")])
            .set(1);
        Ok(m)
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process's metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| match Metrics::new() {
        Ok(m) => m,
        // Only reachable through a duplicate or malformed definition above: a programming error
        // that the unit test below catches before release.
        Err(e) => panic!("metric definitions are invalid: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_metrics_register_and_render() {
        let m = metrics();
        m.http_requests.with_label_values(&["/Users", "GET", "200"]).inc();
        let text = m.render();
        assert!(text.contains("roster_http_requests_total{method=\"GET\",route=\"/Users\",status=\"200\"} 1"));
        assert!(text.contains("roster_build_info{"));
    }
}
