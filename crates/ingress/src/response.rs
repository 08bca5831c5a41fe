//! SCIM responses and the mapping of every failure to a SCIM error body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use roster_scim::ScimError;
use serde_json::Value;

/// The media type of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// An error answered as a SCIM error body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client or protocol error with its status and `scimType`.
    #[error(transparent)]
    Scim(#[from] ScimError),
    /// Something failed on our side; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// The event log or database is unavailable; the client should retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Missing or invalid credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The account exceeded its request rate; retry after the given delay.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    /// The process is at its concurrency limit.
    #[error("overloaded")]
    Overloaded,
    /// The request took longer than the request timeout; a write may or may not have been applied.
    #[error("request timed out")]
    TimedOut(std::time::Duration),
}

impl From<roster_db::StoreError> for ApiError {
    fn from(e: roster_db::StoreError) -> Self {
        match e {
            roster_db::StoreError::Db(_) => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<roster_store::read::QueryError> for ApiError {
    fn from(e: roster_store::read::QueryError) -> Self {
        match e {
            roster_store::read::QueryError::Scim(s) => ApiError::Scim(s),
            roster_store::read::QueryError::Store(s) => s.into(),
        }
    }
}

impl ApiError {
    fn scim(&self) -> ScimError {
        match self {
            ApiError::Scim(e) => e.clone(),
            ApiError::Internal(_) => ScimError::status(500, "An internal error occurred; it has been logged."),
            ApiError::Unavailable(_) => {
                ScimError::status(503, "The service is temporarily unavailable; retry the request shortly.")
            }
            ApiError::Unauthorized => ScimError::status(
                401,
                "Authorization failed: send a valid SCIM token of this account as a Bearer token.",
            ),
            ApiError::RateLimited(_) => {
                ScimError::status(429, "Too many requests for this account; retry after the Retry-After delay.")
            }
            ApiError::Overloaded => ScimError::status(503, "The service is overloaded; retry shortly."),
            ApiError::TimedOut(limit) => ScimError::status(
                503,
                format!(
                    "The request did not complete within the server's limit of {} seconds; retry it. \
                     A write may already have been applied: read the resource before repeating it.",
                    limit.as_secs()
                ),
            ),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.scim().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            ApiError::Unavailable(e) => tracing::warn!(error = %e, "unavailable"),
            _ => {}
        }
        let err = self.scim();
        roster_telemetry::metrics()
            .scim_errors
            .with_label_values(&[err.scim_type.map(|t| t.as_str()).unwrap_or("none"), err.status.to_string().as_str()])
            .inc();
        let mut resp = scim_response(self.status_code(), &err.to_json());
        match self {
            ApiError::Unauthorized => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) | ApiError::Overloaded | ApiError::TimedOut(_) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// A response with a SCIM JSON body.
pub fn scim_response(status: StatusCode, body: &Value) -> HttpResponse {
    // `to_vec` writes straight into the buffer; `to_string` goes through `fmt::Display`, which cost
    // 4% of the server's CPU in lookups. A `Value` always serialises; the fallback is never taken.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| body.to_string().into_bytes());
    HttpResponse::build(status).insert_header((header::CONTENT_TYPE, SCIM_JSON)).body(bytes)
}

/// A SCIM resource response with its `ETag` (and `Location` when created).
pub fn resource_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut resp = scim_response(status, body);
    if let Some(v) = body.pointer("/meta/version").and_then(Value::as_str)
        && let Ok(h) = HeaderValue::from_str(v)
    {
        resp.headers_mut().insert(header::ETAG, h);
    }
    if status == StatusCode::CREATED
        && let Some(loc) = body.pointer("/meta/location").and_then(Value::as_str)
        && let Ok(h) = HeaderValue::from_str(loc)
    {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    resp
}
