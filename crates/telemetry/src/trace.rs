//! Logs and traces: one `tracing` subscriber per process that writes logs (text, or JSON lines
//! with trace ids) and, only when the standard `OTEL_*` variables ask for it, exports spans over
//! OTLP/HTTP (protobuf) with W3C trace context propagation.
//!
//! Export is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set (and `OTEL_SDK_DISABLED` is not `true`, `OTEL_TRACES_EXPORTER` is not `none`). When off,
//! the OpenTelemetry layer is not installed at all and [`enabled`] is false, so the per-event
//! spans of the projector and the licensing worker are not even created.
//!
//! Spans and context crossing process boundaries are carried as [`TraceContext`] (the event
//! envelope's field and the Kafka headers): [`current_context`] captures the current span's,
//! [`set_parent`] makes a new span its child.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use roster_events::{TRACEPARENT, TRACESTATE, TraceContext};
use tracing::Subscriber;
use tracing::dispatcher::WeakDispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// Whether spans are exported by this process (set once by [`init`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, with `trace_id`/`span_id` inside traced spans.
    Json,
}

/// Why span export could not be set up (the process then runs without it).
#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    /// The OTLP exporter rejected its configuration (endpoint, headers, protocol…).
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// What the `OTEL_*` environment asks for, decided without side effects (unit tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// `service.name` to set, or `None` when `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`
    /// name the service (the SDK reads those itself).
    pub service_name: Option<String>,
    /// A warning to log once logging is up (e.g. an unsupported protocol was asked for).
    pub warning: Option<String>,
}

impl ExportSettings {
    /// `None` when export is off: no endpoint is configured, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`. `env` looks a variable up (non-empty values only count).
    pub fn from_env(default_service_name: &str, env: impl Fn(&str) -> Option<String>) -> Option<ExportSettings> {
        let var = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.split(',').all(|e| e.trim().eq_ignore_ascii_case("none"))) {
            return None;
        }
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        let named_by_env = var("OTEL_SERVICE_NAME").is_some()
            || var("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|a| a.split(',').any(|kv| kv.trim_start().starts_with("service.name=")));
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let warning = protocol
            .filter(|p| p != "http/protobuf")
            .map(|p| format!("OTEL_EXPORTER_OTLP_PROTOCOL={p} is not supported; exporting with http/protobuf"));
        Some(ExportSettings { service_name: (!named_by_env).then(|| default_service_name.to_owned()), warning })
    }
}

/// The process's logging and tracing; flush it with [`Telemetry::shutdown`] before exiting.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter (blocking, bounded by the SDK's
    /// export timeout). Call outside the async runtime, as the last thing before exiting.
    pub fn shutdown(mut self) {
        self.shutdown_provider();
    }

    fn shutdown_provider(&mut self) {
        if let Some(p) = self.provider.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = p.shutdown() {
                eprintln!("roster: flushing traces on exit failed: {e}");
            }
        }
    }
}

impl Drop for Telemetry {
    /// An early return (an error in `main`) still flushes the spans that explain it.
    fn drop(&mut self) {
        self.shutdown_provider();
    }
}

/// Whether this process exports spans: callers skip per-event span work when it does not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs the global subscriber: logs filtered by `RUST_LOG` (default `info`) to stderr in
/// `format`, plus, when the `OTEL_*` environment enables it, the OpenTelemetry layer exporting
/// Roster's own spans (`roster*` targets, INFO and above, whatever `RUST_LOG` says) as service
/// `default_service_name` unless `OTEL_SERVICE_NAME` says otherwise. `None` never exports: for
/// one-shot commands (a replay would otherwise attach a span to every historical trace).
pub fn init(default_service_name: Option<&str>, format: LogFormat) -> Telemetry {
    let settings = default_service_name.and_then(|name| ExportSettings::from_env(name, |k| std::env::var(k).ok()));
    let (provider, setup_error) = match &settings {
        Some(s) => match build_provider(s) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("roster"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(Targets::new().with_target("roster", LevelFilter::INFO))
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let slot = Arc::new(OnceLock::new());
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
        LogFormat::Json => json_logs(slot.clone(), std::io::stderr).with_filter(filter).boxed(),
    };
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(logs).with(otel));
    let _ = slot.set(dispatch.downgrade());
    // A second init (tests) keeps the first subscriber; nothing else can fail here.
    let _ = tracing::dispatcher::set_global_default(dispatch);
    ENABLED.store(provider.is_some(), Ordering::Relaxed);
    if let Some(w) = settings.as_ref().and_then(|s| s.warning.as_deref()) {
        tracing::warn!("{w}");
    }
    if let Some(e) = setup_error {
        tracing::error!(error = %e, "trace export is off: the OTEL_* configuration is invalid");
    }
    Telemetry { provider }
}

/// The JSON log layer; `dispatch` is filled with the process's dispatcher once it is built.
fn json_logs<W>(dispatch: Arc<OnceLock<WeakDispatch>>, make_writer: W) -> impl Layer<Registry> + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .event_format(WithTraceIds { inner: format::format().json(), dispatch })
        .with_writer(make_writer)
}

fn build_provider(settings: &ExportSettings) -> Result<SdkTracerProvider, TraceSetupError> {
    use opentelemetry_otlp::WithExportConfig as _;
    // Endpoint, headers, timeout and compression come from the OTEL_EXPORTER_OTLP_* variables;
    // the protocol is always http/protobuf (the only one built in).
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if let Some(name) = &settings.service_name {
        resource = resource.with_service_name(name.clone());
    }
    // The sampler (OTEL_TRACES_SAMPLER[_ARG]) and batch settings (OTEL_BSP_*) are read by the SDK.
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

/// The W3C context of the current span, to store in an event envelope; `None` when export is off
/// or there is no valid current span.
pub fn current_context() -> Option<TraceContext> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::default();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    TraceContext::parse(carrier.traceparent.as_deref(), carrier.tracestate.as_deref())
}

/// Makes `span` a child of the remote context `parent`. Call before the span is first entered
/// (tracing-opentelemetry ignores a parent set later); no-op when export is off.
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Carrier::from(parent)));
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = %e, "trace parent not set");
    }
}

/// A text map holding the two W3C fields, for the propagator.
#[derive(Default)]
struct Carrier {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl From<&TraceContext> for Carrier {
    fn from(tc: &TraceContext) -> Self {
        Carrier { traceparent: Some(tc.traceparent.clone()), tracestate: tc.tracestate.clone() }
    }
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut k = Vec::with_capacity(2);
        if self.traceparent.is_some() {
            k.push(TRACEPARENT);
        }
        if self.tracestate.is_some() {
            k.push(TRACESTATE);
        }
        k
    }
}

/// The stock JSON line plus `trace_id` and `span_id` of the current span when it is traced, so
/// a log line leads to its trace in the tracing backend.
///
/// The ids are read through the process's `Dispatch` (filled in once it exists): inside an event
/// callback `Span::current()` is unavailable (tracing forbids re-entering the dispatcher), and the
/// registry's current span is used rather than the log filter's, so a `warn` line logged inside an
/// `info` span still carries its trace.
struct WithTraceIds<F> {
    inner: F,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = self.trace_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.trim_end().strip_suffix('}') {
            Some(body) => writeln!(writer, "{body},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"),
            None => writer.write_str(&line),
        }
    }
}

impl<F> WithTraceIds<F> {
    /// `(trace_id, span_id)` of the innermost traced span around the event, if any.
    fn trace_ids(&self) -> Option<(String, String)> {
        if !enabled() {
            return None;
        }
        let dispatch = self.dispatch.get()?.upgrade()?;
        let current = dispatch.current_span();
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(current.id()?)?;
        span.scope().find_map(|s| {
            let cx = tracing_opentelemetry::get_otel_context(&s.id(), &dispatch)?;
            let sc = cx.span().span_context().clone();
            sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        assert_eq!(ExportSettings::from_env("roster-serve", env(&[])), None);
        assert_eq!(ExportSettings::from_env("roster-serve", env(&[("OTEL_SERVICE_NAME", "x")])), None);
        assert_eq!(ExportSettings::from_env("roster-serve", env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")])), None);
    }

    #[test]
    fn either_endpoint_variable_turns_export_on_with_the_default_service_name() {
        for var in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
            let s = ExportSettings::from_env("roster-ingress", env(&[(var, "http://127.0.0.1:4318")]));
            assert_eq!(s, Some(ExportSettings { service_name: Some("roster-ingress".into()), warning: None }), "{var}");
        }
    }

    #[test]
    fn sdk_disabled_or_exporter_none_turn_export_off() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(ExportSettings::from_env("r", env(&[on, ("OTEL_SDK_DISABLED", "TRUE")])), None);
        assert_eq!(ExportSettings::from_env("r", env(&[on, ("OTEL_TRACES_EXPORTER", "none")])), None);
        assert!(ExportSettings::from_env("r", env(&[on, ("OTEL_SDK_DISABLED", "false")])).is_some());
        assert!(ExportSettings::from_env("r", env(&[on, ("OTEL_TRACES_EXPORTER", "otlp")])).is_some());
    }

    #[test]
    fn a_service_name_from_the_environment_wins_over_the_default() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let s = ExportSettings::from_env("r", env(&[on, ("OTEL_SERVICE_NAME", "scim")])).expect("on");
        assert_eq!(s.service_name, None);
        let s = ExportSettings::from_env("r", env(&[on, ("OTEL_RESOURCE_ATTRIBUTES", "env=prod, service.name=scim")]))
            .expect("on");
        assert_eq!(s.service_name, None);
        let s = ExportSettings::from_env("r", env(&[on, ("OTEL_RESOURCE_ATTRIBUTES", "env=prod")])).expect("on");
        assert_eq!(s.service_name.as_deref(), Some("r"));
    }

    #[test]
    fn a_protocol_other_than_http_protobuf_is_warned_about() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let s = ExportSettings::from_env("r", env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).expect("on");
        assert!(s.warning.is_some_and(|w| w.contains("grpc")));
        let s =
            ExportSettings::from_env("r", env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])).expect("on");
        assert_eq!(s.warning, None);
    }

    /// A log sink shared with the subscriber under test.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            String::from_utf8(bytes)
                .expect("utf-8 logs")
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
                .collect()
        }
    }

    /// Runs `f` under a JSON-logging subscriber with an (exporter-less) OpenTelemetry layer.
    fn traced<T>(sink: &Sink, f: impl FnOnce() -> T) -> T {
        traced_at(sink, LevelFilter::TRACE, f)
    }

    /// [`traced`] with the log lines filtered at `level` (the spans stay traced).
    fn traced_at<T>(sink: &Sink, level: LevelFilter, f: impl FnOnce() -> T) -> T {
        ENABLED.store(true, Ordering::Relaxed);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let writer = sink.clone();
        let slot = Arc::new(OnceLock::new());
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(json_logs(slot.clone(), move || writer.clone()).with_filter(level))
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
        );
        let _ = slot.set(dispatch.downgrade());
        tracing::dispatcher::with_default(&dispatch, f)
    }

    #[test]
    fn json_lines_inside_a_traced_span_carry_its_trace_and_span_ids() {
        let sink = Sink::default();
        let (trace_id, span_id) = traced(&sink, || {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            let sc = span.context().span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["trace_id"], serde_json::json!(trace_id));
        assert_eq!(lines[0]["span_id"], serde_json::json!(span_id));
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert_eq!(lines[0]["fields"]["answer"], 42);
    }

    #[test]
    fn a_warning_inside_a_span_the_log_filter_hides_still_carries_the_trace() {
        let sink = Sink::default();
        let trace_id = traced_at(&sink, LevelFilter::WARN, || {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            tracing::info!("filtered out");
            tracing::warn!("kept");
            span.context().span().span_context().trace_id().to_string()
        });
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["trace_id"], serde_json::json!(trace_id));
    }

    #[test]
    fn outside_any_span_there_is_no_context_to_propagate() {
        let sink = Sink::default();
        assert_eq!(traced(&sink, current_context), None);
    }

    #[test]
    fn json_lines_outside_any_span_have_no_trace_ids() {
        let sink = Sink::default();
        traced(&sink, || tracing::info!("outside"));
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["fields"]["message"], "outside");
    }

    #[test]
    fn a_span_parented_on_a_stored_context_continues_its_trace() {
        let sink = Sink::default();
        let parent = TraceContext::parse(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), Some("k=v"))
            .expect("valid");
        let child = traced(&sink, || {
            let span = tracing::info_span!("projector.apply");
            set_parent(&span, &parent);
            let _entered = span.enter();
            current_context()
        });
        let child = child.expect("inside a traced span there is a context");
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.parent_span_id(), parent.parent_span_id(), "the child has its own span id");
        assert_eq!(child.tracestate.as_deref(), Some("k=v"), "tracestate travels along");
    }
}
