//! The ops port: the admin API operators use to manage accounts and SCIM tokens, to read a
//! resource's history and to run licensing (policy, preview, overrides, holds), plus `/readyz`.
//!
//! It listens separately from the public SCIM port so it can stay on an internal network.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use roster_db::Db;
use roster_eventlog::EventLog;
use roster_ingress::OutcomeWaiter;
use roster_license_policy::HoldThreshold;
use roster_store::accounts::{self, AccountError};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// Accounts, tokens and history.
    pub db: Db,
    /// Checked by `/readyz`.
    pub log: Arc<dyn EventLog>,
    /// SHA-256 of the admin token (the secret itself is not kept around).
    pub admin_token_hash: [u8; 32],
    /// Public base URL, for `scim_base_url`.
    pub public_url: String,
    /// How licensing writes wait for the projector, and the hold threshold previews report against.
    pub licensing: LicensingSettings,
    /// For processes that serve SCIM: `/readyz` also requires the projector to be caught up this closely.
    pub projector_lag: Option<LagCheck>,
}

/// The readiness bound on the projector's lag for a process that answers SCIM requests: its writes wait
/// for the projector, so an ingress whose projector is far behind would only time out.
#[derive(Clone, Debug)]
pub struct LagCheck {
    /// The projector's consumer name (its stored positions).
    pub consumer: String,
    /// Most unapplied events (summed over partitions) at which the process still counts as ready.
    pub max_events: u64,
}

/// What the licensing endpoints need beyond the database: they append events and wait for their outcome
/// like the SCIM ingress does (read-your-writes).
#[derive(Clone)]
pub struct LicensingSettings {
    /// Waits for the projector's decision on an appended event.
    pub waiter: OutcomeWaiter,
    /// How long a write waits before answering 503 (the event stays durable).
    pub apply_timeout: Duration,
    /// The licensing worker's mass-revocation threshold (`None` = guard off), for `would_hold` in previews.
    pub hold: Option<HoldThreshold>,
}

impl AdminState {
    /// Builds the state, hashing the admin token.
    pub fn new(
        db: Db,
        log: Arc<dyn EventLog>,
        admin_token: &str,
        public_url: String,
        licensing: LicensingSettings,
    ) -> Self {
        Self {
            db,
            log,
            admin_token_hash: Sha256::digest(admin_token.as_bytes()).into(),
            public_url,
            licensing,
            projector_lag: None,
        }
    }

    /// Adds the projector-lag condition to `/readyz`.
    pub fn with_lag_check(mut self, check: Option<LagCheck>) -> Self {
        self.projector_lag = check;
        self
    }

    fn scim_base_url(&self, account: &str) -> String {
        format!("{}/scim/v2/accounts/{account}", self.public_url.trim_end_matches('/'))
    }
}

/// Registers `/readyz` and `/admin/v1/…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/readyz", web::get().to(readyz))
        .route("/healthz", web::get().to(|| async { HttpResponse::Ok().content_type("text/plain").body("ok\n") }))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/admin/v1")
                .route("/accounts", web::post().to(create_account))
                .route("/accounts", web::get().to(list_accounts))
                .route("/accounts/{id}/scim-tokens", web::post().to(create_token))
                .route("/accounts/{id}/scim-tokens", web::get().to(list_tokens))
                .route("/accounts/{id}/scim-tokens/{token_id}", web::delete().to(revoke_token))
                .route("/accounts/{id}/events", web::get().to(history))
                .configure(licensing::configure)
                .default_service(web::to(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })),
        );
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// Compares the presented token's hash with the configured one in constant time.
fn authorized(req: &HttpRequest, state: &AdminState) -> bool {
    let Some(presented) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    digest.iter().zip(state.admin_token_hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

macro_rules! require_admin {
    ($req:expr, $state:expr) => {
        if !authorized(&$req, &$state) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(json!({"error": "a valid admin token is required (Authorization: Bearer $ROSTER_ADMIN_TOKEN)"}));
        }
    };
}

mod licensing;

fn internal(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "admin API failure");
    error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable; retry shortly")
}

fn account_error(e: AccountError) -> HttpResponse {
    match e {
        AccountError::NameTaken(_) => error(StatusCode::CONFLICT, &e.to_string()),
        AccountError::NotFound(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        AccountError::InvalidName(_) | AccountError::InvalidExpiry(_) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        other => internal(other),
    }
}

/// Prometheus text exposition of this process's registry (unauthenticated, like most exporters:
/// the ops port belongs on an internal network).
async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(roster_telemetry::metrics().render())
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let db_ok = roster_db::ping(&state.db).await.is_ok();
    let migrated = roster_db::migrations_applied(&state.db).await.unwrap_or(false);
    let log_ok = state.log.check().await.is_ok();
    let mut body = json!({"database": db_ok, "migrations": migrated, "event_log": log_ok});
    let mut caught_up = true;
    if let Some(check) = &state.projector_lag
        && db_ok
        && log_ok
    {
        match projector_lag(&state, &check.consumer).await {
            Ok(lag) => {
                caught_up = lag <= check.max_events;
                body["projector_lag_events"] = json!(lag);
                body["projector_caught_up"] = json!(caught_up);
            }
            Err(e) => {
                caught_up = false;
                body["projector_caught_up"] = json!(false);
                body["projector_lag_error"] = json!(e);
            }
        }
    }
    if db_ok && migrated && log_ok && caught_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Unapplied events summed over the log's partitions, from the projector's stored positions.
async fn projector_lag(state: &AdminState, consumer: &str) -> Result<u64, String> {
    let ends = state.log.ends().await.map_err(|e| e.to_string())?;
    let mut lag: i64 = 0;
    for p in ends {
        let position = roster_store::write::consumer_position(&state.db, consumer, p.partition)
            .await
            .map_err(|e| e.to_string())?;
        lag += p.lag(position);
    }
    Ok(u64::try_from(lag).unwrap_or(0))
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

fn parse_name(body: &web::Bytes) -> Result<String, String> {
    serde_json::from_slice::<NameBody>(body)
        .map(|b| b.name)
        .map_err(|e| format!("expected a JSON body {{\"name\": \"…\"}}: {e}"))
}

async fn create_account(req: HttpRequest, state: web::Data<AdminState>, body: web::Bytes) -> HttpResponse {
    require_admin!(req, state);
    let name = match parse_name(&body) {
        Ok(n) => n,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    match accounts::create_account(&state.db, &name).await {
        Ok(a) => HttpResponse::Created().json(json!({
            "id": a.id, "name": a.name, "created_at": a.created_at, "scim_base_url": state.scim_base_url(&a.id),
        })),
        Err(e) => account_error(e),
    }
}

async fn list_accounts(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    require_admin!(req, state);
    match accounts::list_accounts(&state.db).await {
        Ok(list) => {
            let items: Vec<Value> = list
                .into_iter()
                .map(|a| json!({"id": a.id, "name": a.name, "created_at": a.created_at, "scim_base_url": state.scim_base_url(&a.id)}))
                .collect();
            HttpResponse::Ok().json(json!({ "accounts": items }))
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
    expires_at: Option<String>,
    expires_in_days: Option<u32>,
}

/// The body of `POST …/scim-tokens`: a name and at most one of `expires_at` / `expires_in_days`.
fn parse_token_body(body: &web::Bytes) -> Result<(String, accounts::Expiry), String> {
    let b = serde_json::from_slice::<TokenBody>(body).map_err(|e| {
        format!("expected a JSON body {{\"name\": \"…\"}} with optional \"expires_at\" (RFC 3339) or \"expires_in_days\": {e}")
    })?;
    let expiry = match (b.expires_at, b.expires_in_days) {
        (Some(_), Some(_)) => return Err("give expires_at or expires_in_days, not both".into()),
        (Some(at), None) => accounts::Expiry::At(at),
        (None, Some(days)) => accounts::Expiry::InDays(days),
        (None, None) => accounts::Expiry::Never,
    };
    Ok((b.name, expiry))
}

async fn create_token(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    require_admin!(req, state);
    let (name, expiry) = match parse_token_body(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    match accounts::create_token(&state.db, &path, &name, &expiry).await {
        Ok((info, secret)) => HttpResponse::Created().json(json!({
            "id": info.id, "name": info.name, "token": secret, "created_at": info.created_at,
            "expires_at": info.expires_at,
        })),
        Err(e) => account_error(e),
    }
}

async fn list_tokens(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    require_admin!(req, state);
    match accounts::get_account(&state.db, &path).await {
        Ok(None) => return error(StatusCode::NOT_FOUND, &format!("account {:?} not found", path.as_str())),
        Err(e) => return internal(e),
        Ok(Some(_)) => {}
    }
    match accounts::list_tokens(&state.db, &path).await {
        Ok(list) => HttpResponse::Ok().json(json!({ "tokens": list })),
        Err(e) => internal(e),
    }
}

async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    require_admin!(req, state);
    let (account, token) = path.into_inner();
    match accounts::revoke_token(&state.db, &account, &token).await {
        Ok(true) => HttpResponse::NoContent().finish(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no active token with that id in this account"),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    resource_id: Option<String>,
    limit: Option<u64>,
}

async fn history(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> HttpResponse {
    require_admin!(req, state);
    let Some(resource_id) = q.resource_id.as_deref().filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "the resource_id query parameter is required");
    };
    match roster_store::outcomes::history(&state.db, &path, resource_id, q.limit.unwrap_or(1000)).await {
        Ok(events) => HttpResponse::Ok().json(json!({ "events": events })),
        Err(e) => internal(e),
    }
}
