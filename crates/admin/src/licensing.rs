//! Licensing endpoints: the policy (get, set, preview), every user's license with its reason, seat use,
//! overrides, and mass-revocation holds.
//!
//! Reads go to the read model; writes are events (`license.*`, actor `admin`) appended to the log, answered
//! once the projector has decided them, exactly like SCIM writes.

// Helpers return a ready error response to short-circuit a handler; its size does not matter here.
#![allow(clippy::result_large_err)]

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Outcome, Payload, ResourceType};
use roster_license_policy::{Policy, allocate, parse_policy, preview};
use roster_store::accounts;
use roster_store::licensing;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{AdminState, authorized, error, internal};

/// Registers the licensing routes under `/admin/v1`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/accounts/{id}/license-policy", web::get().to(get_policy))
        .route("/accounts/{id}/license-policy", web::put().to(put_policy))
        .route("/accounts/{id}/license-policy/preview", web::post().to(preview_policy))
        .route("/accounts/{id}/licenses", web::get().to(list_licenses))
        .route("/accounts/{id}/seats", web::get().to(seats))
        .route("/accounts/{id}/users/{user_id}/license-override", web::put().to(put_override))
        .route("/accounts/{id}/users/{user_id}/license-override", web::delete().to(delete_override))
        .route("/accounts/{id}/license-holds", web::get().to(list_holds))
        .route("/accounts/{id}/license-holds/{hold_id}/confirm", web::post().to(confirm_hold))
        .route("/accounts/{id}/license-holds/{hold_id}/discard", web::post().to(discard_hold));
}

/// 404 unless the account exists.
async fn require_account(state: &AdminState, account: &str) -> Result<(), HttpResponse> {
    match accounts::get_account(&state.db, account).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, &format!("account {account:?} not found"))),
        Err(e) => Err(internal(e)),
    }
}

async fn current_policy(state: &AdminState, account: &str) -> Result<Policy, HttpResponse> {
    match licensing::get_policy(&state.db, account).await {
        Ok(p) => Ok(p.unwrap_or_else(Policy::empty)),
        Err(e) => Err(internal(e)),
    }
}

/// Parses and validates a policy body; the 400 lists every problem.
fn parse_body(body: &web::Bytes) -> Result<(Value, Policy), HttpResponse> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        HttpResponse::BadRequest()
            .json(json!({"error": "invalid license policy", "problems": [format!("the body is not JSON: {e}")]}))
    })?;
    match parse_policy(&value) {
        Ok(p) => Ok((value, p)),
        Err(e) => {
            Err(HttpResponse::BadRequest().json(json!({"error": "invalid license policy", "problems": e.messages()})))
        }
    }
}

fn envelope(account: &str, resource_type: ResourceType, resource_id: &str, payload: Payload) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: account.to_string(),
        resource_type,
        resource_id: resource_id.to_string(),
        time: roster_scim::time::now(),
        request_id: None,
        trace_context: None,
        actor: Actor::Admin,
        payload,
    }
}

/// Appends events (in order) and waits for the last one's outcome; a rejection becomes its HTTP status.
async fn submit(state: &AdminState, events: Vec<Envelope>) -> Result<Outcome, HttpResponse> {
    let settings = &state.licensing;
    match settings.waiter.submit(state.log.as_ref(), events, settings.apply_timeout).await {
        Ok(o) => match &o.error {
            Some(err) => Err(error(StatusCode::from_u16(o.status).unwrap_or(StatusCode::BAD_REQUEST), &err.detail)),
            None => Ok(o),
        },
        Err(e @ roster_ingress::SubmitError::Append(_)) => Err(internal(e)),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

async fn get_policy(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    require_admin!(req, state);
    tri!(require_account(&state, &path).await);
    let policy = tri!(current_policy(&state, &path).await);
    HttpResponse::Ok().json(policy)
}

async fn put_policy(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    require_admin!(req, state);
    let (value, policy) = tri!(parse_body(&body));
    tri!(require_account(&state, &path).await);
    let env = envelope(&path, ResourceType::Account, &path, Payload::LicensePolicySet { policy: value });
    tri!(submit(&state, vec![env]).await);
    HttpResponse::Ok().json(policy)
}

async fn preview_policy(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    require_admin!(req, state);
    let (_, proposed) = tri!(parse_body(&body));
    tri!(require_account(&state, &path).await);
    let current = tri!(current_policy(&state, &path).await);
    let snap = match licensing::snapshot(&state.db, &path).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let p = preview(&current, &proposed, &snap.inputs(), &snap.holdings());
    let would_hold = state.licensing.hold.as_ref().is_some_and(|t| p.would_hold(t));
    let mut out = serde_json::to_value(&p).unwrap_or(Value::Null);
    if let Some(o) = out.as_object_mut() {
        o.insert("would_hold".into(), would_hold.into());
    }
    HttpResponse::Ok().json(out)
}

async fn list_licenses(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    require_admin!(req, state);
    tri!(require_account(&state, &path).await);
    let policy = tri!(current_policy(&state, &path).await);
    let snap = match licensing::snapshot(&state.db, &path).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let holdings = snap.holdings();
    let allocation = allocate(&policy, &snap.inputs(), &holdings);
    let users: Vec<Value> = snap
        .users
        .iter()
        .map(|u| {
            let computed = allocation.assignments.get(&u.id);
            let mut v = json!({
                "id": u.id,
                "userName": u.user_name,
                "active": u.active,
                "license": u.license,
                "override": snap.overrides.get(&u.id),
            });
            // The reason: the current evaluation's when it agrees with what the user holds, else the one
            // recorded with the last change (the worker is about to apply the difference, or a hold waits).
            let reason = match computed {
                Some(a) if a.license == u.license => serde_json::to_value(&a.reason).ok(),
                _ => u.reason.clone(),
            };
            let detail = reason
                .as_ref()
                .and_then(|r| serde_json::from_value::<roster_license_policy::Reason>(r.clone()).ok())
                .map(|r| r.detail());
            if let Some(o) = v.as_object_mut() {
                o.insert("reason".into(), reason.unwrap_or(Value::Null));
                o.insert("reason_detail".into(), detail.map(Value::from).unwrap_or(Value::Null));
                if let Some(a) = computed.filter(|a| a.license != u.license) {
                    o.insert("pending".into(), json!({"license": a.license, "reason": a.reason}));
                }
            }
            v
        })
        .collect();
    HttpResponse::Ok().json(json!({ "users": users }))
}

async fn seats(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    require_admin!(req, state);
    tri!(require_account(&state, &path).await);
    let policy = tri!(current_policy(&state, &path).await);
    // One aggregate query (active holders, what the seat guard counts), not a load of the whole account.
    let held = match licensing::seat_counts(&state.db, &path).await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    let seats = roster_license_policy::seat_use_from_counts(&policy, &held);
    HttpResponse::Ok().json(json!({ "seats": seats }))
}

#[derive(Deserialize)]
struct OverrideBody {
    license: String,
}

async fn require_user(state: &AdminState, account: &str, user: &str) -> Result<(), HttpResponse> {
    match roster_store::write::find_user(&state.db, account, user).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, &format!("user {user:?} not found in account {account:?}"))),
        Err(e) => Err(internal(e)),
    }
}

async fn put_override(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    require_admin!(req, state);
    let (account, user) = path.into_inner();
    let license = match serde_json::from_slice::<OverrideBody>(&body) {
        Ok(b) => b.license,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected a JSON body {{\"license\": \"…\"}}: {e}")),
    };
    tri!(require_account(&state, &account).await);
    tri!(require_user(&state, &account, &user).await);
    let policy = tri!(current_policy(&state, &account).await);
    if policy.license(&license).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("license {license:?} is not defined by the account's license policy"),
        );
    }
    let payload = Payload::LicenseOverrideSet { user_id: user.clone(), license: license.clone() };
    tri!(submit(&state, vec![envelope(&account, ResourceType::User, &user, payload)]).await);
    HttpResponse::Ok().json(json!({"user_id": user, "license": license}))
}

async fn delete_override(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    require_admin!(req, state);
    let (account, user) = path.into_inner();
    tri!(require_account(&state, &account).await);
    tri!(require_user(&state, &account, &user).await);
    let payload = Payload::LicenseOverrideRemoved { user_id: user.clone() };
    tri!(submit(&state, vec![envelope(&account, ResourceType::User, &user, payload)]).await);
    HttpResponse::NoContent().finish()
}

async fn list_holds(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    require_admin!(req, state);
    tri!(require_account(&state, &path).await);
    match licensing::holds(&state.db, &path).await {
        Ok(h) => HttpResponse::Ok().json(json!({ "holds": h })),
        Err(e) => internal(e),
    }
}

async fn resolve(state: &AdminState, account: &str, hold_id: &str, confirm: bool) -> HttpResponse {
    tri!(require_account(state, account).await);
    let hold = match licensing::get_hold(&state.db, account, hold_id).await {
        Ok(Some(h)) => h,
        Ok(None) => return error(StatusCode::NOT_FOUND, &format!("license hold {hold_id:?} not found")),
        Err(e) => return internal(e),
    };
    if hold.status != "pending" {
        return error(StatusCode::CONFLICT, &format!("license hold {hold_id:?} is {}, not pending", hold.status));
    }
    let payload = Payload::LicenseHoldResolved { hold_id: hold_id.to_string(), confirm };
    tri!(submit(state, vec![envelope(account, ResourceType::Account, account, payload)]).await);
    let mut pinned = 0usize;
    if !confirm {
        // Discarding keeps everyone's current license: each held user is pinned at the license they hold, so
        // nobody loses a seat until an operator unpins them.
        let policy = tri!(current_policy(state, account).await);
        let changes: Vec<roster_license_policy::Change> =
            serde_json::from_value(hold.changes.clone()).unwrap_or_default();
        let events: Vec<Envelope> = changes
            .into_iter()
            .filter_map(|c| {
                let license = c.from.filter(|l| policy.license(l).is_some())?;
                Some(envelope(
                    account,
                    ResourceType::User,
                    &c.user,
                    Payload::LicenseOverrideSet { user_id: c.user.clone(), license },
                ))
            })
            .collect();
        pinned = events.len();
        for chunk in events.chunks(500) {
            tri!(submit(state, chunk.to_vec()).await);
        }
    }
    let status = if confirm { "confirmed" } else { "discarded" };
    HttpResponse::Ok().json(json!({"id": hold_id, "status": status, "pinned": pinned}))
}

async fn confirm_hold(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    require_admin!(req, state);
    let (account, hold) = path.into_inner();
    resolve(&state, &account, &hold, true).await
}

async fn discard_hold(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    require_admin!(req, state);
    let (account, hold) = path.into_inner();
    resolve(&state, &account, &hold, false).await
}
