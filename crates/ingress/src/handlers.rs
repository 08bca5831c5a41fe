//! The SCIM endpoints.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use roster_db::Reads;
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Member, Outcome, Payload, ResourceType, TraceContext};
use roster_scim::filter::{self, AttrPath, Filter};
use roster_scim::patch::PatchRequest;
use roster_scim::resource::{AttributeSelection, normalize};
use roster_scim::schema::ResourceKind;
use roster_scim::{ScimError, discovery};
use roster_store::read::{self, ListQuery};
use serde_json::Value;
use uuid::Uuid;

use crate::IngressState;
use crate::auth::authenticate;
use crate::response::{ApiError, resource_response, scim_response};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).service(
        web::scope("/scim/v2/accounts/{account}")
            .route("/Users", web::get().to(list_users))
            .route("/Users", web::post().to(create_user))
            .route("/Users/{id}", web::get().to(get_user))
            .route("/Users/{id}", web::put().to(replace_user))
            .route("/Users/{id}", web::patch().to(patch_user))
            .route("/Users/{id}", web::delete().to(delete_user))
            .route("/Groups", web::get().to(list_groups))
            .route("/Groups", web::post().to(create_group))
            .route("/Groups/{id}", web::get().to(get_group))
            .route("/Groups/{id}", web::put().to(replace_group))
            .route("/Groups/{id}", web::patch().to(patch_group))
            .route("/Groups/{id}", web::delete().to(delete_group))
            .route("/ServiceProviderConfig", web::get().to(service_provider_config))
            .route("/ResourceTypes", web::get().to(resource_types))
            .route("/ResourceTypes/{name}", web::get().to(resource_type))
            .route("/Schemas", web::get().to(schemas))
            .route("/Schemas/{urn}", web::get().to(schema))
            .default_service(web::to(not_found)),
    );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn not_found(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    let account = req.match_info().get("account").unwrap_or_default().to_string();
    authenticate(&req, &state, &state.db, &account).await?;
    Err(ScimError::not_found(format!("no SCIM endpoint at {} {}", req.method(), req.path())).into())
}

fn account(req: &HttpRequest) -> String {
    req.match_info().get("account").unwrap_or_default().to_string()
}

/// The `{id}` of the URL; ids that cannot exist are 404 here, before the database or the log.
fn resource_id(req: &HttpRequest, kind: ResourceKind) -> Result<String> {
    let id = req.match_info().get("id").unwrap_or_default();
    if !roster_scim::resource::is_possible_id(id) {
        let shown: String = id.chars().take(64).collect();
        return Err(ScimError::not_found(format!("{} {shown:?} not found", kind.as_str())).into());
    }
    Ok(id.to_string())
}

/// Query parameters as (name, value) pairs; unknown ones (Entra's `aadOptscim062020`) are ignored.
fn query(req: &HttpRequest) -> Result<Vec<(String, String)>> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ScimError::invalid_syntax(format!("malformed query string: {e}")).into())
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

async fn body_json(payload: web::Payload, state: &IngressState) -> Result<Value> {
    let limit = state.config.max_body_bytes;
    let bytes = match payload.to_bytes_limited(limit).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(ScimError::invalid_syntax(format!("could not read the request body: {e}")).into()),
        Err(_) => {
            return Err(ScimError::status(413, format!("The request body exceeds the limit of {limit} bytes.")).into());
        }
    };
    // Strict: duplicate keys are 400 too (roster_scim::body explains why).
    Ok(roster_scim::body::parse_json(&bytes, state.config.max_json_depth)?)
}

/// `If-Match: W/"3"` → `Some(3)`; `*` or absent → `None`.
fn if_match(req: &HttpRequest) -> Result<Option<u64>> {
    let Some(v) = req.headers().get(header::IF_MATCH) else { return Ok(None) };
    let s = v.to_str().map_err(|_| ScimError::precondition_failed("If-Match header is not valid text"))?.trim();
    if s == "*" {
        return Ok(None);
    }
    let inner = s.trim_start_matches("W/").trim_matches('"');
    inner.parse::<u64>().map(Some).map_err(|_| {
        ScimError::precondition_failed(format!("If-Match {s} does not name a version of this resource")).into()
    })
}

/// The W3C trace context a client sent (`traceparent`, `tracestate`), if well-formed.
pub fn client_trace_context(headers: &header::HeaderMap) -> Option<TraceContext> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::parse(get(roster_events::TRACEPARENT), get(roster_events::TRACESTATE))
}

/// The trace context an event of this request carries: the request span's when spans are
/// exported (the projector's span becomes its child), else the client's own, passed through so
/// the caller's trace still links up downstream.
fn trace_context(req: &HttpRequest) -> Option<TraceContext> {
    roster_telemetry::trace::current_context().or_else(|| client_trace_context(req.headers()))
}

/// Appends one event made at `time` and waits for the projector's decision on it (read-your-writes).
#[allow(clippy::too_many_arguments)]
async fn submit(
    req: &HttpRequest,
    state: &IngressState,
    account: &str,
    token_id: String,
    resource_type: ResourceType,
    resource_id: String,
    payload: Payload,
    time: String,
) -> Result<Outcome> {
    let env = Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: account.to_string(),
        resource_type,
        resource_id,
        time,
        request_id: req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect()),
        trace_context: trace_context(req),
        actor: Actor::ScimToken { token_id },
        payload,
    };
    let outcome = state
        .waiter
        .submit(state.log.as_ref(), vec![env], state.config.apply_timeout)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    match &outcome.error {
        Some(err) => Err(ScimError {
            status: outcome.status,
            scim_type: err.scim_type.as_deref().and_then(roster_scim::ScimType::parse),
            detail: err.detail.clone(),
        }
        .into()),
        None => Ok(outcome),
    }
}

fn selection(kind: ResourceKind, q: &[(String, String)]) -> Result<AttributeSelection> {
    Ok(AttributeSelection::parse(kind, param(q, "attributes"), param(q, "excludedAttributes"))?)
}

async fn render_user_by_id<R: Reads>(
    state: &IngressState,
    db: &R,
    account: &str,
    id: &str,
    sel: &AttributeSelection,
) -> Result<Option<Value>> {
    let Some(row) = read::get_user(db, account, id).await? else { return Ok(None) };
    let base = state.base_url(account);
    let groups =
        if sel.wants(ResourceKind::User, "groups") { Some(read::member_of(db, account, id).await?) } else { None };
    Ok(Some(sel.apply(ResourceKind::User, read::render_user(row, &base, groups.as_deref()))))
}

async fn render_group_by_id<R: Reads>(
    state: &IngressState,
    db: &R,
    account: &str,
    id: &str,
    sel: &AttributeSelection,
) -> Result<Option<Value>> {
    let Some(row) = read::get_group(db, account, id).await? else { return Ok(None) };
    let base = state.base_url(account);
    let members = if sel.wants(ResourceKind::Group, "members") {
        Some(read::group_members(db, account, id).await?)
    } else {
        None
    };
    Ok(Some(sel.apply(ResourceKind::Group, read::render_group(row, &base, members.as_deref()))))
}

fn parse_filter(kind: ResourceKind, text: &str, state: &IngressState) -> Result<Filter> {
    let f = filter::parse(text, &state.config.filter_limits)?;
    filter::validate(&f, kind)?;
    Ok(f)
}

fn parse_u64(q: &[(String, String)], name: &str) -> Result<Option<i64>> {
    match param(q, name) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, got {s:?}")).into()),
    }
}

async fn list(req: HttpRequest, state: web::Data<IngressState>, kind: ResourceKind) -> Result<HttpResponse> {
    let account = account(&req);
    let db = state.db.session();
    authenticate(&req, &state, &db, &account).await?;
    let q = query(&req)?;
    let filter =
        param(&q, "filter").filter(|s| !s.trim().is_empty()).map(|s| parse_filter(kind, s, &state)).transpose()?;
    let sort_by: Option<AttrPath> = match param(&q, "sortBy").filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(s) => {
            let parsed = roster_scim::patch::parse_path(s)
                .map_err(|_| ScimError::invalid_value(format!("sortBy {s:?} is not an attribute path")))?;
            if parsed.filter.is_some() {
                return Err(ScimError::invalid_value("sortBy cannot contain a filter").into());
            }
            Some(parsed.attr)
        }
    };
    let descending = match param(&q, "sortOrder").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("ascending") => false,
        Some("descending") => true,
        Some(other) => {
            return Err(
                ScimError::invalid_value(format!("sortOrder must be ascending or descending, got {other:?}")).into()
            );
        }
    };
    let start_index = parse_u64(&q, "startIndex")?.unwrap_or(1).max(1) as u64;
    let count = parse_u64(&q, "count")?
        .map(|c| c.max(0) as u64)
        .unwrap_or(state.config.default_count)
        .min(state.config.max_count);
    let sel = selection(kind, &q)?;
    let lq = ListQuery { filter: filter.as_ref(), sort_by: sort_by.as_ref(), descending, start_index, count };
    let base = state.base_url(&account);
    match kind {
        ResourceKind::User => {
            // The groups come in a statement of their own, for the page's users only: as a
            // correlated subquery in the page's statement, SQLite computed them for every row
            // it sorted, before the LIMIT and OFFSET (a page of 100,000 users took seconds).
            let (total, rows) = read::list_users(&db, &account, &lq).await?;
            let mut groups = if sel.wants(kind, "groups") && !rows.is_empty() {
                let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                Some(read::member_of_many(&db, &account, &ids).await?)
            } else {
                None
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let of = groups.as_mut().map(|g| g.remove(&row.id).unwrap_or_default());
                out.push(sel.apply(kind, read::render_user(row, &base, of.as_deref())));
            }
            Ok(list_body(out, total, start_index))
        }
        ResourceKind::Group => {
            let (total, rows) = read::list_groups(&db, &account, &lq).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let members = if sel.wants(kind, "members") {
                    Some(read::group_members(&db, &account, &row.id).await?)
                } else {
                    None
                };
                out.push(sel.apply(kind, read::render_group(row, &base, members.as_deref())));
            }
            Ok(list_body(out, total, start_index))
        }
    }
}

fn list_body(resources: Vec<Value>, total: u64, start_index: u64) -> HttpResponse {
    let n = resources.len();
    scim_response(StatusCode::OK, &discovery::list_response(resources, total, start_index, n))
}

async fn list_users(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    list(req, state, ResourceKind::User).await
}

async fn list_groups(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    list(req, state, ResourceKind::Group).await
}

async fn get_one(req: HttpRequest, state: web::Data<IngressState>, kind: ResourceKind) -> Result<HttpResponse> {
    let account = account(&req);
    let db = state.db.session();
    authenticate(&req, &state, &db, &account).await?;
    let id = resource_id(&req, kind)?;
    let q = query(&req)?;
    let sel = selection(kind, &q)?;
    // Entra's reference-attribute check sends `GET /Users/{id}?filter=…`: the resource must also match.
    let filter =
        param(&q, "filter").filter(|s| !s.trim().is_empty()).map(|s| parse_filter(kind, s, &state)).transpose()?;
    let full = AttributeSelection::all();
    let rendered = match kind {
        ResourceKind::User => render_user_by_id(&state, &db, &account, &id, &full).await?,
        ResourceKind::Group => render_group_by_id(&state, &db, &account, &id, &full).await?,
    };
    let Some(resource) = rendered else {
        return Err(ScimError::not_found(format!("{} {id:?} not found", kind.as_str())).into());
    };
    if let Some(f) = &filter
        && !filter::matches(f, kind, &resource)
    {
        return Err(ScimError::not_found(format!("{} {id:?} does not match the filter", kind.as_str())).into());
    }
    Ok(resource_response(StatusCode::OK, &sel.apply(kind, resource)))
}

async fn get_user(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    get_one(req, state, ResourceKind::User).await
}

async fn get_group(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    get_one(req, state, ResourceKind::Group).await
}

/// Answers a successful write: the resource (201/200) or nothing (204).
async fn write_response(
    state: &IngressState,
    account: &str,
    kind: ResourceKind,
    id: &str,
    outcome: &Outcome,
) -> Result<HttpResponse> {
    if outcome.status == 204 {
        return Ok(HttpResponse::NoContent().finish());
    }
    let full = AttributeSelection::all();
    let rendered = match kind {
        ResourceKind::User => render_user_by_id(state, &state.db, account, id, &full).await?,
        ResourceKind::Group => render_group_by_id(state, &state.db, account, id, &full).await?,
    };
    match rendered {
        Some(body) => Ok(resource_response(StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK), &body)),
        // Deleted by a later event between our commit and this read.
        None => Err(ScimError::not_found(format!("{} {id:?} not found", kind.as_str())).into()),
    }
}

fn members_of(n: &roster_scim::resource::Normalized) -> Vec<Member> {
    n.members.iter().flatten().map(|m| Member { value: m.value.clone() }).collect()
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngressState>,
    kind: ResourceKind,
) -> Result<HttpResponse> {
    let account = account(&req);
    let token = authenticate(&req, &state, &state.db, &account).await?;
    let body = body_json(payload, &state).await?;
    let n = normalize(kind, &body)?;
    // Time-ordered ids put new rows at the right edge of every index keyed by id, and let a walk of
    // an account in id order (a re-licensing) touch neighbouring pages instead of random ones.
    let id = Uuid::now_v7().to_string();
    let (rt, p) = match kind {
        ResourceKind::User => {
            // A created user is exactly the event's attributes at the event's time, with version 1,
            // no groups (its id is new) and no license yet: answered from the event, without
            // reading back the row the projector just wrote (two queries per create).
            let time = roster_scim::time::now();
            let row = roster_store::write::UserRow::from_attributes(
                id.clone(),
                n.attributes.clone(),
                time.clone(),
                time.clone(),
                1,
                None,
            );
            let payload = Payload::UserCreated { attributes: n.attributes };
            let outcome = submit(&req, &state, &account, token, ResourceType::User, id, payload, time).await?;
            let body = read::render_user(row, &state.base_url(&account), Some(&[]));
            return Ok(resource_response(
                StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::CREATED),
                &AttributeSelection::all().apply(ResourceKind::User, body),
            ));
        }
        ResourceKind::Group => {
            let members = members_of(&n);
            (ResourceType::Group, Payload::GroupCreated { attributes: n.attributes, members })
        }
    };
    let outcome = submit(&req, &state, &account, token, rt, id.clone(), p, roster_scim::time::now()).await?;
    write_response(&state, &account, kind, &id, &outcome).await
}

async fn create_user(req: HttpRequest, payload: web::Payload, state: web::Data<IngressState>) -> Result<HttpResponse> {
    create(req, payload, state, ResourceKind::User).await
}

async fn create_group(req: HttpRequest, payload: web::Payload, state: web::Data<IngressState>) -> Result<HttpResponse> {
    create(req, payload, state, ResourceKind::Group).await
}

async fn replace(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngressState>,
    kind: ResourceKind,
) -> Result<HttpResponse> {
    let account = account(&req);
    let token = authenticate(&req, &state, &state.db, &account).await?;
    let id = resource_id(&req, kind)?;
    let if_match = if_match(&req)?;
    let body = body_json(payload, &state).await?;
    let n = normalize(kind, &body)?;
    let (rt, p) = match kind {
        ResourceKind::User => (ResourceType::User, Payload::UserReplaced { attributes: n.attributes, if_match }),
        ResourceKind::Group => {
            let members = members_of(&n);
            (ResourceType::Group, Payload::GroupReplaced { attributes: n.attributes, members, if_match })
        }
    };
    let outcome = submit(&req, &state, &account, token, rt, id.clone(), p, roster_scim::time::now()).await?;
    write_response(&state, &account, kind, &id, &outcome).await
}

async fn replace_user(req: HttpRequest, payload: web::Payload, state: web::Data<IngressState>) -> Result<HttpResponse> {
    replace(req, payload, state, ResourceKind::User).await
}

async fn replace_group(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngressState>,
) -> Result<HttpResponse> {
    replace(req, payload, state, ResourceKind::Group).await
}

async fn patch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngressState>,
    kind: ResourceKind,
) -> Result<HttpResponse> {
    let account = account(&req);
    let token = authenticate(&req, &state, &state.db, &account).await?;
    let id = resource_id(&req, kind)?;
    let if_match = if_match(&req)?;
    let body = body_json(payload, &state).await?;
    // Syntax is checked here so malformed requests never reach the log; semantics (targets,
    // members, uniqueness) are decided by the projector against the state at that point.
    PatchRequest::parse(&body, &state.config.patch_limits)?;
    let (rt, p) = match kind {
        ResourceKind::User => (ResourceType::User, Payload::UserPatched { patch: body, if_match }),
        ResourceKind::Group => (ResourceType::Group, Payload::GroupPatched { patch: body, if_match }),
    };
    let outcome = submit(&req, &state, &account, token, rt, id.clone(), p, roster_scim::time::now()).await?;
    write_response(&state, &account, kind, &id, &outcome).await
}

async fn patch_user(req: HttpRequest, payload: web::Payload, state: web::Data<IngressState>) -> Result<HttpResponse> {
    patch(req, payload, state, ResourceKind::User).await
}

async fn patch_group(req: HttpRequest, payload: web::Payload, state: web::Data<IngressState>) -> Result<HttpResponse> {
    patch(req, payload, state, ResourceKind::Group).await
}

async fn delete(req: HttpRequest, state: web::Data<IngressState>, kind: ResourceKind) -> Result<HttpResponse> {
    let account = account(&req);
    let token = authenticate(&req, &state, &state.db, &account).await?;
    let id = resource_id(&req, kind)?;
    let if_match = if_match(&req)?;
    let (rt, p) = match kind {
        ResourceKind::User => (ResourceType::User, Payload::UserDeleted { if_match }),
        ResourceKind::Group => (ResourceType::Group, Payload::GroupDeleted { if_match }),
    };
    submit(&req, &state, &account, token, rt, id, p, roster_scim::time::now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn delete_user(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    delete(req, state, ResourceKind::User).await
}

async fn delete_group(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    delete(req, state, ResourceKind::Group).await
}

async fn service_provider_config(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    let account = account(&req);
    authenticate(&req, &state, &state.db, &account).await?;
    let body = discovery::service_provider_config(&state.base_url(&account), &state.config.provider_limits());
    Ok(scim_response(StatusCode::OK, &body))
}

async fn resource_types(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    let account = account(&req);
    authenticate(&req, &state, &state.db, &account).await?;
    Ok(scim_response(StatusCode::OK, &discovery::resource_types_document(&state.base_url(&account))))
}

async fn resource_type(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    let account = account(&req);
    authenticate(&req, &state, &state.db, &account).await?;
    let name = req.match_info().get("name").unwrap_or_default();
    match discovery::resource_type(name, &state.base_url(&account)) {
        Some(body) => Ok(scim_response(StatusCode::OK, &body)),
        None => Err(ScimError::not_found(format!("resource type {name:?} not found")).into()),
    }
}

async fn schemas(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    let account = account(&req);
    authenticate(&req, &state, &state.db, &account).await?;
    Ok(scim_response(StatusCode::OK, &discovery::schemas_document(&state.base_url(&account))))
}

async fn schema(req: HttpRequest, state: web::Data<IngressState>) -> Result<HttpResponse> {
    let account = account(&req);
    authenticate(&req, &state, &state.db, &account).await?;
    let urn = req.match_info().get("urn").unwrap_or_default();
    match discovery::schema_resource(urn, &state.base_url(&account)) {
        Some(body) => Ok(scim_response(StatusCode::OK, &body)),
        None => Err(ScimError::not_found(format!("schema {urn:?} not found")).into()),
    }
}
