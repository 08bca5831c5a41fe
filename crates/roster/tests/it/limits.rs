//! Every configurable limit, on servers started with small limits: the status and `scimType` of
//! the answer, that nothing was written, and what `/ServiceProviderConfig` advertises.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::scim::{id_of, patch_op};
use crate::harness::{Scim, Server, Spec, USER_SCHEMA, agent, enc, uid};

static SMALL: OnceLock<Server> = OnceLock::new();

/// A server whose request-shape limits are small enough to reach in a test.
fn small() -> &'static Server {
    SMALL.get_or_init(|| {
        let mut spec = Spec::fresh();
        spec.env.extend(
            [
                ("ROSTER_MAX_BODY_BYTES", "4096"),
                ("ROSTER_MAX_JSON_DEPTH", "8"),
                ("ROSTER_MAX_FILTER_LENGTH", "120"),
                ("ROSTER_MAX_FILTER_NODES", "3"),
                ("ROSTER_MAX_PATCH_OPERATIONS", "3"),
                ("ROSTER_MAX_PATCH_MEMBERS", "4"),
                ("ROSTER_MAX_PAGE_SIZE", "2"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Server::launch(spec)
    })
}

/// A client of one account that talks to a single process (rate and concurrency limits are per
/// process, so requests must not be spread over replicas).
fn pinned(srv: &Server) -> Scim {
    let t = srv.tenant();
    let origin = srv.public_origins().first().cloned().unwrap_or_else(|| srv.public.clone());
    Scim::new(format!("{origin}/scim/v2/accounts/{}", t.account_id), t.account_id.clone(), t.token.clone(), agent())
}

#[test]
fn service_provider_config_advertises_the_configured_limits() {
    let scim = small().tenant();
    let b = scim.get("/ServiceProviderConfig").scim(200);
    assert_eq!(b["bulk"]["maxOperations"], 3, "PATCH operations per request: {b}");
    assert_eq!(b["bulk"]["maxPayloadSize"], 4096, "request body limit: {b}");
    assert_eq!(b["filter"]["maxResults"], 2, "page size cap: {b}");
}

#[test]
fn a_body_over_the_size_limit_is_413_and_creates_nothing() {
    let scim = small().tenant();
    let big = json!({"schemas": [USER_SCHEMA], "userName": "big@contoso.com", "displayName": "x".repeat(5000)});
    scim.post("/Users", &big).scim_error(413, None);
    assert!(scim.filter_users("userName eq \"big@contoso.com\"").is_empty());
}

#[test]
fn json_nested_deeper_than_the_limit_is_400_invalid_syntax_naming_the_limit() {
    let scim = small().tenant();
    // Depth 9: the object, then eight levels of arrays.
    let body = format!(
        r#"{{"schemas":["{USER_SCHEMA}"],"userName":"deep@contoso.com","x":{}1{}}}"#,
        "[".repeat(8),
        "]".repeat(8)
    );
    let err = scim.raw("POST", "/Users", &body).scim_error(400, Some("invalidSyntax"));
    assert!(err["detail"].as_str().is_some_and(|d| d.contains("8 levels")), "{err}");
    assert!(scim.filter_users("userName eq \"deep@contoso.com\"").is_empty());
    // Depth 8 is accepted (and the unknown attribute is a normal SCIM validation matter).
    let ok =
        format!(r#"{{"schemas":["{USER_SCHEMA}"],"userName":"deep@contoso.com","phoneNumbers":[{{"value":"1"}}]}}"#);
    scim.raw("POST", "/Users", &ok).assert_status(201);
}

#[test]
fn a_filter_over_the_length_limit_is_400_invalid_filter() {
    let scim = small().tenant();
    let long = format!("userName eq \"{}@contoso.com\"", "a".repeat(120));
    let err = scim.get(&format!("/Users?filter={}", enc(&long))).scim_error(400, Some("invalidFilter"));
    assert!(err["detail"].as_str().is_some_and(|d| d.contains("120")), "{err}");
    scim.get(&format!("/Users?filter={}", enc("userName eq \"short@contoso.com\""))).list();
}

#[test]
fn a_filter_with_more_nodes_than_the_limit_is_400_invalid_filter() {
    let scim = small().tenant();
    let three = "userName eq \"a\" or userName eq \"b\"";
    scim.get(&format!("/Users?filter={}", enc(three))).list();
    let five = "userName eq \"a\" or userName eq \"b\" or userName eq \"c\"";
    scim.get(&format!("/Users?filter={}", enc(five))).scim_error(400, Some("invalidFilter"));
}

#[test]
fn a_patch_with_more_operations_than_the_limit_is_400_too_many_and_changes_nothing() {
    let scim = small().tenant();
    let id = scim.user_id("ops@contoso.com");
    let op = |v: &str| json!({"op": "replace", "path": "displayName", "value": v});
    let err = scim
        .patch(&format!("/Users/{id}"), &patch_op(json!([op("1"), op("2"), op("3"), op("4")])))
        .scim_error(400, Some("tooMany"));
    assert!(err["detail"].as_str().is_some_and(|d| d.contains('3')), "{err}");
    assert!(scim.get_user(&id).get("displayName").is_none_or(Value::is_null), "nothing applied");
    scim.patch_user_ok(&id, json!([op("1"), op("2"), op("3")]));
}

#[test]
fn a_patch_naming_more_members_than_the_limit_is_400_too_many_and_changes_nothing() {
    let scim = small().tenant();
    let users: Vec<String> = (0..5).map(|i| scim.user_id(&format!("m{i}-{}@contoso.com", uid()))).collect();
    let gid = id_of(&scim.create_group("limited"));
    let members = |ids: &[String]| Value::Array(ids.iter().map(|u| json!({"value": u})).collect());
    scim.patch(
        &format!("/Groups/{gid}"),
        &patch_op(json!([{"op": "add", "path": "members", "value": members(&users)}])),
    )
    .scim_error(400, Some("tooMany"));
    assert!(crate::harness::member_ids(&scim.get_group(&gid)).is_empty(), "nothing applied");
    scim.patch_group_ok(&gid, json!([{"op": "add", "path": "members", "value": members(&users[..4])}]));
    // A group created with more members than a PATCH may name is not a PATCH: not limited here.
    assert_eq!(crate::harness::member_ids(&scim.get_group(&gid)).len(), 4);
}

#[test]
fn count_above_the_page_size_cap_is_capped_not_rejected() {
    let scim = small().tenant();
    for i in 0..3 {
        scim.user_id(&format!("page{i}@contoso.com"));
    }
    let b = scim.get("/Users?count=50").scim(200);
    assert_eq!(b["totalResults"], 3, "{b}");
    assert_eq!(b["itemsPerPage"], 2, "capped at ROSTER_MAX_PAGE_SIZE: {b}");
    assert_eq!(b["Resources"].as_array().map(Vec::len), Some(2), "{b}");
    // Without `count` the default page (100) is capped too.
    let b = scim.get("/Users").scim(200);
    assert_eq!(b["Resources"].as_array().map(Vec::len), Some(2), "{b}");
}

static THROTTLED: OnceLock<Server> = OnceLock::new();
/// The throttled server's tests take turns: one holds every request slot on purpose.
static THROTTLED_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A server with a tiny per-account rate, two concurrent requests, a short request timeout and a
/// PATCH operations limit raised above the default.
fn throttled() -> &'static Server {
    THROTTLED.get_or_init(|| {
        let mut spec = Spec::fresh();
        spec.env.extend(
            [
                ("ROSTER_RATE_LIMIT_PER_ACCOUNT", "0.1"),
                ("ROSTER_RATE_LIMIT_BURST", "4"),
                ("ROSTER_MAX_CONCURRENT_REQUESTS", "2"),
                ("ROSTER_APPLY_TIMEOUT_SECS", "3"),
                ("ROSTER_REQUEST_TIMEOUT_SECS", "4"),
                ("ROSTER_MAX_PATCH_OPERATIONS", "1500"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Server::launch(spec)
    })
}

#[test]
fn an_account_over_its_rate_gets_429_with_retry_after_and_other_accounts_do_not() {
    let _turn = THROTTLED_TURN.lock().unwrap_or_else(|p| p.into_inner());
    let srv = throttled();
    let a = pinned(srv);
    let b = pinned(srv);
    for _ in 0..4 {
        a.get("/Users").list();
    }
    let r = a.get("/Users");
    r.scim_error(429, None);
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=10).contains(&retry), "Retry-After in whole seconds until the next token:\n{}", r.describe());
    b.get("/Users").list();
}

#[test]
fn a_patch_within_a_raised_limit_is_applied_not_rejected_by_the_projectors_defaults() {
    let _turn = THROTTLED_TURN.lock().unwrap_or_else(|p| p.into_inner());
    let scim = pinned(throttled());
    let id = scim.user_id("many-ops@contoso.com");
    let ops: Vec<Value> =
        (0..1001).map(|i| json!({"op": "replace", "path": "displayName", "value": format!("v{i}")})).collect();
    let user = scim.patch(&format!("/Users/{id}"), &patch_op(Value::Array(ops))).scim(200);
    assert_eq!(user["displayName"], "v1000", "all 1001 operations applied in order: {user}");
}

/// Sends the headers of a POST with a body that never arrives; the connection holds a request slot.
fn stalled_post(scim: &Scim) -> TcpStream {
    let url = scim.url("/Users");
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).expect("connect to the public port");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{{",
        scim.token
    )
    .expect("send headers");
    s
}

/// Reads one HTTP/1.1 response: (status, body).
fn read_response(s: &mut TcpStream, within: Duration) -> (u16, String) {
    s.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (status, text[end + 4..].to_owned());
            }
        }
        let n = s.read(&mut chunk).expect("response before the read timeout");
        assert!(n > 0, "connection closed before a full response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_saturated_process_sheds_with_503_and_a_stalled_request_times_out_with_503() {
    let _turn = THROTTLED_TURN.lock().unwrap_or_else(|p| p.into_inner());
    let srv = throttled();
    let scim = pinned(srv);
    let started = Instant::now();
    let mut held = [stalled_post(&scim), stalled_post(&scim)];
    std::thread::sleep(Duration::from_millis(500));

    let r = scim.get("/Groups");
    let err = r.scim_error(503, None);
    assert_eq!(r.header("retry-after"), Some("1"), "{}", r.describe());
    assert!(err["detail"].as_str().is_some_and(|d| d.contains("overloaded")), "{err}");
    let origin = scim.base.split("/scim/").next().unwrap_or_default().to_owned();
    let health = crate::harness::Req::new("GET", format!("{origin}/healthz")).send(scim.agent());
    assert_eq!(health.status, 200, "/healthz is never shed:\n{}", health.describe());

    for s in &mut held {
        let (status, body) = read_response(s, Duration::from_secs(15));
        assert_eq!(status, 503, "a request stalled past ROSTER_REQUEST_TIMEOUT_SECS: {body}");
        let body: Value = serde_json::from_str(&body).expect("SCIM error body");
        assert!(body["detail"].as_str().is_some_and(|d| d.contains("4 seconds")), "{body}");
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(3500) && waited < Duration::from_secs(12), "timed out after {waited:?}");
    // The slots are free again, and the stalled creates never happened.
    assert!(scim.get("/Users").list().is_empty());
}

#[test]
fn a_request_timeout_not_above_the_apply_timeout_is_refused_at_start() {
    let dir = crate::harness::TestDir::new("timeouts");
    let db = dir.sqlite_url("roster.db");
    let args = ["serve", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--request-timeout-secs", "10"];
    let env = [("ROSTER_DATABASE_URL", db.as_str()), ("ROSTER_APPLY_TIMEOUT_SECS", "10")];
    let out = crate::harness::run_roster_with(&args, &env, Duration::from_secs(60));
    assert!(!out.status.success(), "writes would be cut off before their own deadline:\n{}", out.stdout);
    assert!(out.stderr.contains("--request-timeout-secs"), "the error names the flag:\n{}", out.stderr);
    let out = crate::harness::run_roster_with(
        &["serve", "--max-json-depth", "101"],
        &[("ROSTER_DATABASE_URL", db.as_str())],
        Duration::from_secs(60),
    );
    assert!(
        !out.status.success() && out.stderr.contains("max-json-depth"),
        "depth above 100 is refused:\n{}",
        out.stderr
    );
}
