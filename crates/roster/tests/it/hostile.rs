//! Hostile input (issue 6, item 4): every request of the corpus in
//! `tests/data/hostile/cases.jsonl` gets its documented status (and `scimType`), never a 5xx, a
//! panic or a hang, and leaves both accounts exactly as they were.
//!
//! Corpus format, one JSON object per line:
//! - `name`: `<category>/<case>`; `method`; `path`: relative to the account's SCIM base, or to
//!   the server's origin when `base` is `"origin"`; already percent-encoded.
//! - `query`: `[name, value]` pairs, encoded by the test; `raw_query`: sent as is.
//! - `headers`: added to or replacing the defaults (`Authorization: Bearer <token>`, Entra's
//!   `Content-Type` when there is a body); `null` removes a default.
//! - Body: `body` (a JSON value, serialized), `body_raw` (a string sent byte for byte),
//!   `body_b64` (bytes, for invalid UTF-8) or `gen` (a large body, query or `{gen}` path segment
//!   built by [`generate`]; a `body` may accompany a `gen` that builds no body).
//! - `status`, optional `scimType`, optional `total` (`totalResults` of a 200 list response).
//! - Placeholders in paths, bodies and headers: `{account}`, `{user}` (alice), `{user2}` (bob),
//!   `{group}` (alice and bob), `{empty_group}`, `{other_account}`, `{other_user}`,
//!   `{other_group}`, `{other_token}`, `{USER_UPPER}` (alice's id in upper case).
//!
//! "Unchanged" means: both accounts' users and groups (every attribute, `meta.version` and
//! `meta.lastModified` included) are equal before and after, and every event the corpus added to
//! a seeded resource's history was rejected (4xx) or applied as a no-op (200 at the same version).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::harness::scim::id_of;
use crate::harness::{ENTERPRISE, ERROR_SCHEMA, GROUP_SCHEMA, PATCH_OP, Scim, Server, USER_SCHEMA, enc};

const CASES: &str = include_str!("../data/hostile/cases.jsonl");
/// Requests in flight at once: enough to finish in seconds, far below the rate limits.
const WORKERS: usize = 8;
/// The default `--max-body-bytes`.
const MAX_BODY: usize = 1024 * 1024;

/// alice, exactly as seeded; the corpus PUTs this body back with read-only junk added.
fn alice() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": "alice@contoso.com",
        "externalId": "alice",
        "active": true,
        "displayName": "Alice Liddell",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}],
        ENTERPRISE: {"employeeNumber": "1001", "department": "Research"}
    })
}

/// The seeded accounts and the placeholder values of the corpus.
struct Fixture {
    scim: Scim,
    other: Scim,
    vars: Vec<(&'static str, String)>,
    /// (account, resource id) of every seeded resource, for the history check.
    resources: Vec<(String, String)>,
}

fn seed(srv: &Server) -> Fixture {
    let scim = srv.tenant();
    let other = srv.tenant();
    let user = id_of(&scim.create_user(&alice()));
    let user2 =
        id_of(&scim.create_user(&json!({"schemas": [USER_SCHEMA], "userName": "bob@contoso.com", "active": true})));
    let user3 = id_of(&scim.create_user(&json!({
        "schemas": [USER_SCHEMA], "userName": "carol@contoso.com", "active": false,
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}]
    })));
    let group = id_of(
        &scim
            .post(
                "/Groups",
                &json!({
                    "schemas": [GROUP_SCHEMA], "displayName": "Engineering",
                    "members": [{"value": user}, {"value": user2}]
                }),
            )
            .scim(201),
    );
    let empty_group = id_of(&scim.create_group("Empty"));
    let other_user = id_of(&other.create_user(&json!({"schemas": [USER_SCHEMA], "userName": "mallory@fabrikam.com"})));
    let other_group = id_of(
        &other
            .post(
                "/Groups",
                &json!({
                    "schemas": [GROUP_SCHEMA], "displayName": "Fabrikam", "members": [{"value": other_user}]
                }),
            )
            .scim(201),
    );
    let resources = [&user, &user2, &user3, &group, &empty_group]
        .into_iter()
        .map(|id| (scim.account_id.clone(), id.clone()))
        .chain([&other_user, &other_group].into_iter().map(|id| (other.account_id.clone(), id.clone())))
        .collect();
    let vars = vec![
        ("{account}", scim.account_id.clone()),
        ("{USER_UPPER}", user.to_uppercase()),
        ("{user}", user),
        ("{user2}", user2),
        ("{group}", group),
        ("{empty_group}", empty_group),
        ("{other_account}", other.account_id.clone()),
        ("{other_user}", other_user),
        ("{other_group}", other_group),
        ("{other_token}", other.token.clone()),
    ];
    Fixture { scim, other, vars, resources }
}

impl Fixture {
    fn fill(&self, s: &str) -> String {
        self.vars.iter().fold(s.to_owned(), |acc, (k, v)| acc.replace(k, v))
    }
}

/// Both accounts' users and groups, by id, and the history of every seeded resource.
#[derive(Debug, PartialEq)]
struct Snapshot {
    resources: BTreeMap<String, Value>,
    histories: BTreeMap<String, Vec<Value>>,
}

fn snapshot(srv: &Server, fx: &Fixture) -> Snapshot {
    let mut resources = BTreeMap::new();
    for scim in [&fx.scim, &fx.other] {
        for path in ["/Users", "/Groups"] {
            for r in scim.list_all(path) {
                resources.insert(format!("{}{path}/{}", scim.account_id, id_of(&r)), r);
            }
        }
    }
    let histories = fx.resources.iter().map(|(acct, id)| (id.clone(), srv.events(acct, id))).collect();
    Snapshot { resources, histories }
}

/// One corpus entry made concrete.
struct Prepared {
    name: String,
    method: String,
    url: String,
    headers: Vec<(String, Option<String>)>,
    body: Option<Vec<u8>>,
    status: u16,
    scim_type: Option<String>,
    total: Option<u64>,
}

fn nest(levels: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(levels), "]".repeat(levels))
}

fn patch_body(ops: Value) -> String {
    json!({"schemas": [PATCH_OP], "Operations": ops}).to_string()
}

/// Builds the large inputs the corpus names by `gen`: (path replacement for `{gen}`, query, body).
fn generate(name: &str) -> (Option<String>, Vec<(String, String)>, Option<String>) {
    let big = |n: usize| "x".repeat(n);
    let body = match name {
        "body_over_limit" => {
            json!({"schemas": [USER_SCHEMA], "userName": "huge", "displayName": big(MAX_BODY + 1024)}).to_string()
        }
        "huge_string_then_bad_op" => patch_body(json!([
            {"op": "replace", "path": "displayName", "value": big(900_000)},
            {"op": "replace", "path": "id", "value": "x"}
        ])),
        "huge_string_duplicate_user" => {
            json!({"schemas": [USER_SCHEMA], "userName": "alice@contoso.com", "displayName": big(900_000)}).to_string()
        }
        "huge_array_of_emails_duplicate_user" => {
            let emails: Vec<Value> = (0..20_000).map(|i| json!({"value": format!("a{i}@x.io")})).collect();
            json!({"schemas": [USER_SCHEMA], "userName": "alice@contoso.com", "emails": emails}).to_string()
        }
        "too_many_operations" => {
            patch_body(Value::Array(vec![json!({"op": "replace", "path": "active", "value": true}); 1001]))
        }
        "too_many_members" => {
            let members: Vec<Value> = (0..10_001).map(|i| json!({"value": format!("m{i}")})).collect();
            patch_body(json!([{"op": "add", "path": "members", "value": members}]))
        }
        "too_many_members_put" => {
            let members: Vec<Value> = (0..10_001).map(|i| json!({"value": format!("m{i}")})).collect();
            json!({"displayName": "Engineering", "members": members}).to_string()
        }
        "deep_nesting_arrays" => format!(r#"{{"userName":{}}}"#, nest(200, "1")),
        "deep_nesting_objects" => format!(
            r#"{{"schemas":["{PATCH_OP}"],"Operations":[{{"op":"add","path":"displayName","value":{}1{}}}]}}"#,
            r#"{"a":"#.repeat(500),
            "}".repeat(500)
        ),
        // Beyond the ingress's 32 levels but within serde_json's 128.
        "deep_nesting_in_unknown_attribute" => format!(r#"{{"userName":"alice@contoso.com","x":{}}}"#, nest(120, "1")),
        // 32 levels in all: the most a body may nest.
        "deep_nesting_at_limit_in_unknown_attribute" => {
            format!(r#"{{"userName":"alice@contoso.com","x":{}}}"#, nest(31, "1"))
        }
        "deep_nesting_at_limit_in_patch_value" => format!(
            r#"{{"schemas":["{PATCH_OP}"],"Operations":[{{"op":"add","path":"isAdmin","value":{}}}]}}"#,
            nest(29, "1")
        ),
        // Parsed fine by serde_json alone, but no longer decodable once wrapped in an event.
        "deep_nesting_under_parser_limit_in_patch_value" => format!(
            r#"{{"schemas":["{PATCH_OP}"],"Operations":[{{"op":"add","path":"isAdmin","value":{}}}]}}"#,
            nest(124, "1")
        ),
        "huge_patch_path" => patch_body(json!([{"op": "replace", "path": big(5000), "value": "x"}])),
        "huge_filter" => return (None, vec![("filter".into(), format!(r#"userName eq "{}""#, big(5000)))], None),
        "deep_filter" => {
            return (None, vec![("filter".into(), format!("{}userName pr{}", "(".repeat(100), ")".repeat(100)))], None);
        }
        "wide_filter" => return (None, vec![("filter".into(), format!("{}id pr", "id pr or ".repeat(210)))], None),
        "long_id" => return (Some(big(3000)), Vec::new(), None),
        other => panic!("hostile corpus: unknown generator {other:?}"),
    };
    (None, Vec::new(), Some(body))
}

fn prepare(fx: &Fixture, line: &str) -> Prepared {
    let c: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line is not JSON ({e}): {line}"));
    let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = s("name").expect("case name");
    let method = s("method").expect("method");
    let (gen_path, mut query, gen_body) = s("gen").map(|g| generate(&g)).unwrap_or_default();
    let mut path = fx.fill(&s("path").expect("path"));
    if let Some(p) = gen_path {
        path = path.replace("{gen}", &p);
    }
    if let Some(Value::Array(pairs)) = c.get("query") {
        for p in pairs {
            let kv = p.as_array().expect("query pair");
            query.push((fx.fill(kv[0].as_str().expect("name")), fx.fill(kv[1].as_str().expect("value"))));
        }
    }
    let mut qs: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    if let Some(raw) = s("raw_query") {
        qs.push(raw);
    }
    let full = if qs.is_empty() { path } else { format!("{path}?{}", qs.join("&")) };
    let url = match s("base").as_deref() {
        Some("origin") => {
            let routed = fx.scim.url("");
            let suffix = format!("/scim/v2/accounts/{}", fx.scim.account_id);
            format!("{}{full}", routed.strip_suffix(&suffix).expect("a SCIM base ends with the account path"))
        }
        _ => fx.scim.url(&full),
    };
    let body: Option<Vec<u8>> = if let Some(b) = gen_body {
        Some(b.into_bytes())
    } else if let Some(v) = c.get("body") {
        Some(fx.fill(&v.to_string()).into_bytes())
    } else if let Some(raw) = s("body_raw") {
        Some(fx.fill(&raw).into_bytes())
    } else {
        s("body_b64").map(|b| b64_decode(&b))
    };
    let mut headers: Vec<(String, Option<String>)> =
        vec![("Authorization".into(), Some(format!("Bearer {}", fx.scim.token)))];
    if body.is_some() {
        headers.push(("Content-Type".into(), Some("application/scim+json; charset=utf-8".into())));
    }
    if let Some(Value::Object(h)) = c.get("headers") {
        for (k, v) in h {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.as_str().map(|v| fx.fill(v))));
        }
    }
    Prepared {
        name,
        method,
        url,
        headers,
        body,
        status: c["status"].as_u64().expect("status") as u16,
        scim_type: s("scimType"),
        total: c.get("total").and_then(Value::as_u64),
    }
}

fn b64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap_or_else(|| panic!("bad base64 in corpus: {s}"));
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Sends a prepared request byte for byte; returns (status, content type, body).
fn send(agent: &ureq::Agent, p: &Prepared) -> Result<(u16, String, String), String> {
    let mut builder = ureq::http::Request::builder().method(p.method.as_str()).uri(&p.url);
    for (k, v) in &p.headers {
        if let Some(v) = v {
            builder = builder.header(k.as_str(), v.as_str());
        }
    }
    let req = builder.body(p.body.clone().unwrap_or_default()).map_err(|e| format!("building the request: {e}"))?;
    let mut resp = agent.run(req).map_err(|e| format!("transport error: {e}"))?;
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(|e| format!("reading the body: {e}"))?;
    Ok((status, ct, text))
}

/// What is wrong with the answer to `p`, if anything.
fn check(p: &Prepared, answer: Result<(u16, String, String), String>) -> Option<String> {
    let (status, ct, text) = match answer {
        Ok(a) => a,
        Err(e) => return Some(e),
    };
    let short: String = text.chars().take(300).collect();
    if status >= 500 {
        return Some(format!("server error {status}: {short}"));
    }
    if status != p.status {
        return Some(format!("status {status}, expected {}: {short}", p.status));
    }
    let body: Option<Value> = serde_json::from_str(&text).ok();
    if status >= 400 {
        let Some(body) = &body else { return Some(format!("the {status} body is not JSON: {short}")) };
        if !ct.to_ascii_lowercase().starts_with("application/scim+json") {
            return Some(format!("the {status} answer has Content-Type {ct:?}"));
        }
        if body["schemas"] != json!([ERROR_SCHEMA]) || body["status"] != json!(status.to_string()) {
            return Some(format!("not a SCIM error body: {short}"));
        }
        if body["detail"].as_str().is_none_or(str::is_empty) {
            return Some(format!("the SCIM error has no detail: {short}"));
        }
        let got = body.get("scimType").and_then(Value::as_str);
        if got != p.scim_type.as_deref() {
            return Some(format!("scimType {got:?}, expected {:?}: {short}", p.scim_type));
        }
    }
    if let Some(total) = p.total {
        let got = body.as_ref().and_then(|b| b["totalResults"].as_u64());
        if got != Some(total) {
            return Some(format!("totalResults {got:?}, expected {total}: {short}"));
        }
    }
    None
}

/// The events a case added to a seeded resource's history must have changed nothing.
fn new_events_changed_nothing(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, old) in &before.histories {
        let new = &after.histories[id];
        if new.len() < old.len() || new[..old.len()] != old[..] {
            problems.push(format!("the history of {id} was rewritten"));
            continue;
        }
        let version = old.iter().rev().find_map(|e| e["outcome"]["version"].as_u64());
        for e in &new[old.len()..] {
            let status = e["outcome"]["status"].as_u64().unwrap_or(0);
            let no_op = status == 200 && e["outcome"]["version"].as_u64() == version;
            if !(400..500).contains(&status) && !no_op {
                problems.push(format!("an accepted event changed {id}: {e}"));
            }
        }
    }
    problems
}

#[test]
fn hostile_corpus_gets_its_statuses_and_changes_nothing() {
    let srv = Server::start();
    let fx = seed(&srv);
    // `ROSTER_IT_HOSTILE=<text>` runs only the cases whose name contains it (for debugging).
    let only = std::env::var("ROSTER_IT_HOSTILE").ok();
    let cases: Vec<Prepared> = CASES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| prepare(&fx, l))
        .filter(|p| only.as_deref().is_none_or(|o| p.name.contains(o)))
        .collect();
    assert!(
        only.is_some() || cases.len() >= 200,
        "the hostile corpus must hold at least 200 requests, has {}",
        cases.len()
    );
    let before = snapshot(&srv, &fx);

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                let agent = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build(),
                );
                while let Some(p) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Some(problem) = check(p, send(&agent, p)) {
                        failures.lock().expect("lock").push(format!("{} ({} {}): {problem}", p.name, p.method, p.url));
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let mut failures = failures.into_inner().expect("lock");
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were answered wrongly:\n{}\n\nserver logs:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        srv.logs()
    );

    for origin in srv.public_origins() {
        let r = crate::harness::Req::new("GET", format!("{origin}/healthz")).send(fx.scim.agent());
        r.assert_status(200);
    }
    let after = snapshot(&srv, &fx);
    let changed: Vec<String> = before
        .resources
        .keys()
        .chain(after.resources.keys())
        .filter(|k| before.resources.get(*k) != after.resources.get(*k))
        .map(|k| format!("{k}:\n  before: {:?}\n  after:  {:?}", before.resources.get(k), after.resources.get(k)))
        .collect();
    assert!(changed.is_empty(), "the hostile corpus changed the accounts' resources:\n{}", changed.join("\n"));
    let problems = new_events_changed_nothing(&before, &after);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("hostile corpus: {} requests in {elapsed:?}", cases.len());
}

#[test]
fn corpus_names_are_unique_and_categorised() {
    let mut seen = Map::new();
    for line in CASES.lines().filter(|l| !l.trim().is_empty()) {
        let c: Value = serde_json::from_str(line).expect("corpus line is JSON");
        let name = c["name"].as_str().expect("name").to_owned();
        assert!(name.contains('/'), "{name}: names are <category>/<case>");
        assert!(seen.insert(name.clone(), Value::Null).is_none(), "duplicate case name {name}");
    }
}
