//! The SCIM 2.0 ingress: a thin HTTP layer over the event log and the read model.
//!
//! Writes are authenticated, parsed and validated here, stamped with ids and times, appended to
//! the event log, and answered once the projector has decided them (read-your-writes). Reads are
//! answered from the read model.

mod auth;
mod handlers;
pub mod limits;
mod response;
mod state;
pub mod tls;
mod wait;

use actix_web::{HttpMessage as _, web};

pub use state::{IngressConfig, IngressState};
pub use wait::{OutcomeWaiter, SubmitError};

/// Registers the SCIM routes (`/scim/v2/accounts/{account}/…`) and `/healthz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    handlers::configure(cfg);
}

/// Sheds load with 503 once the process serves its maximum of concurrent requests, before latency
/// collapses; health checks are never shed.
pub async fn concurrency_limit(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    let permit = match req.app_data::<web::Data<IngressState>>() {
        Some(state) if req.path() != "/healthz" => match state.limiter.try_enter() {
            Some(p) => Some(p),
            None => {
                let resp = actix_web::ResponseError::error_response(&response::ApiError::Overloaded);
                return Ok(req.into_response(resp).map_into_right_body());
            }
        },
        _ => None,
    };
    let res = next.call(req).await?;
    drop(permit);
    Ok(res.map_into_left_body())
}

/// Answers 503 (SCIM error, `Retry-After: 1`) when a request takes longer than the configured
/// request timeout, reading the body included, so a slow client or a stuck dependency cannot hold
/// a connection and a concurrency slot indefinitely. Writes already wait for the projector at most
/// the (shorter) apply timeout, so this only cuts requests that are stuck elsewhere; like the apply
/// timeout, it never acknowledges a write, so nothing acknowledged can be lost.
pub async fn request_timeout(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let limit = match req.app_data::<web::Data<IngressState>>() {
        Some(state) if req.path() != "/healthz" => state.config.request_timeout,
        _ => return next.call(req).await,
    };
    let path = req.path().to_owned();
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(path = %path, limit_secs = limit.as_secs(), "request timed out");
            Err(response::ApiError::TimedOut(limit).into())
        }
    }
}

/// One server span per request (`otel.kind = server`): method, route pattern and status, never the
/// path's ids, headers, token or body. A valid `traceparent` from the client makes it a child of
/// the caller's trace; otherwise the request starts a trace. Writes store this span's context in
/// their events, so the projector and the licensing worker continue the same trace.
pub async fn trace_requests(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument as _;
    use tracing::field::Empty;
    // Known before routing (matched against the app's resource map), because a span's name cannot
    // change once it has started. OpenTelemetry's HTTP convention: `{method} {route}`, or the
    // method alone when no route matches.
    let route = req.match_pattern();
    let method = req.method().as_str();
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.to_owned(),
    };
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    if let Some(r) = &route {
        span.record("http.route", r.as_str());
    }
    // Matching the route runs the router's patterns again: http_metrics takes this one.
    req.extensions_mut().insert(RoutePattern(route));
    if let Some(parent) = handlers::client_trace_context(req.headers()) {
        roster_telemetry::trace::set_parent(&span, &parent);
    }
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    result
}

/// The route pattern trace_requests matched, handed to http_metrics in the request's extensions.
struct RoutePattern(Option<String>);

/// Records request count, latency and in-flight requests by route pattern (bounded cardinality:
/// `/scim/v2/accounts/{account}/Users/{id}`, never raw paths).
pub async fn http_metrics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let m = roster_telemetry::metrics();
    let method = req.method().clone();
    let matched = req.extensions_mut().remove::<RoutePattern>();
    let started = std::time::Instant::now();
    m.http_in_flight.inc();
    let result = next.call(req).await;
    m.http_in_flight.dec();
    let (route, status) = match (&result, matched) {
        (Ok(res), Some(RoutePattern(route))) => (route, res.status()),
        // Without trace_requests in front, the route comes from the request the response carries.
        (Ok(res), None) => (res.request().match_pattern(), res.status()),
        (Err(e), matched) => (matched.and_then(|m| m.0), e.as_response_error().status_code()),
    };
    let route = route.as_deref().unwrap_or("unmatched");
    m.http_duration.with_label_values(&[route, method.as_str()]).observe(started.elapsed().as_secs_f64());
    m.http_requests.with_label_values(&[route, method.as_str(), status.as_str()]).inc();
    result
}
