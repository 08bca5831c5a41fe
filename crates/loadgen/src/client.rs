//! Blocking HTTP clients (ureq 3) for the SCIM API of one account and for the admin API, which time every
//! request and record it in a [`Stats`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use ureq::config::AutoHeaderValue;

use crate::Error;
use crate::stats::{Kind, Stats};

/// How long each stage of a request (send, wait for the response, receive the body) may take before the request
/// counts as a transport error.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a TCP connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read (a group of 100,000 members is a few tens of MB).
pub(crate) const MAX_BODY: u64 = 1 << 30;
/// The content type Entra puts on request bodies.
pub(crate) const SCIM_JSON: &str = "application/scim+json; charset=utf-8";

/// An agent that never turns a status into an error and keeps up to `pool` idle keep-alive connections.
///
/// There is deliberately no global or per-call timeout: ureq bounds name resolution by those, and a bounded
/// resolution runs on a freshly spawned thread, once per request (it dominated the load generator's CPU). The
/// phases after resolution are bounded instead.
pub fn agent(pool: usize) -> ureq::Agent {
    let pool = pool.max(1);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_send_request(Some(REQUEST_TIMEOUT))
        .timeout_send_body(Some(REQUEST_TIMEOUT))
        .timeout_recv_response(Some(REQUEST_TIMEOUT))
        .timeout_recv_body(Some(REQUEST_TIMEOUT))
        .max_idle_connections(pool)
        .max_idle_connections_per_host(pool)
        .max_idle_age(Duration::from_secs(300))
        // Entra has been seen sending no User-Agent.
        .user_agent(AutoHeaderValue::None)
        .no_delay(true)
        .build();
    ureq::Agent::new_with_config(config)
}

/// A response: status, raw body and latency.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Raw body.
    pub body: Vec<u8>,
    /// Time from sending to the end of the body, in microseconds.
    pub micros: u32,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `id` member of a JSON body.
    pub fn id(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct IdOnly {
            id: String,
        }
        serde_json::from_slice::<IdOnly>(&self.body).ok().map(|x| x.id)
    }

    /// The body, shortened, for error examples.
    pub fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(300).collect()
    }
}

/// `totalResults` of a ListResponse, found without parsing the whole body (lookups are the hot path).
pub fn total_results(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"totalResults\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)?;
    let rest = &body[at + KEY.len()..];
    let mut i = 0;
    while i < rest.len() && (rest[i] == b':' || rest[i].is_ascii_whitespace()) {
        i += 1;
    }
    let start = i;
    while i < rest.len() && rest[i].is_ascii_digit() {
        i += 1;
    }
    std::str::from_utf8(&rest[start..i]).ok()?.parse().ok()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && haystack.windows(n.len()).any(|w| w == n)
}

pub(crate) fn micros_since(t: Instant) -> u32 {
    u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Sends one request; `Err` carries a transport error message.
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    auth: &str,
    body: Option<&str>,
) -> Result<(u16, Option<Duration>, Vec<u8>), String> {
    let result = match (method, body) {
        ("GET", _) => agent.get(url).header("Authorization", auth).call(),
        ("DELETE", _) => agent.delete(url).header("Authorization", auth).call(),
        ("POST", b) => {
            agent.post(url).header("Authorization", auth).header("Content-Type", SCIM_JSON).send(b.unwrap_or(""))
        }
        ("PATCH", b) => {
            agent.patch(url).header("Authorization", auth).header("Content-Type", SCIM_JSON).send(b.unwrap_or(""))
        }
        (m, _) => return Err(format!("unsupported method {m}")),
    };
    let mut resp = result.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let body = resp.body_mut().with_config().limit(MAX_BODY).read_to_vec().map_err(|e| e.to_string())?;
    Ok((status, retry_after, body))
}

/// `Retry-After` in seconds (fractions accepted); an HTTP date or garbage gives `None`.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Statuses after which a request is retried once `Retry-After` has passed.
const RETRYABLE: [u16; 2] = [429, 503];
/// Wait before a retry when the server sent no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest wait before a retry, whatever the server asks.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long to wait before retrying an answer with `status`, or `None` when the answer is final: a 429 or 503
/// that was not expected is retried after its `Retry-After` (capped), `max_retries` times at most.
pub(crate) fn retry_wait(
    status: u16,
    retry_after: Option<Duration>,
    expect: &[u16],
    attempt: u32,
    max_retries: u32,
) -> Option<Duration> {
    (RETRYABLE.contains(&status) && !expect.contains(&status) && attempt < max_retries)
        .then(|| retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER))
}

/// Distinguishes [`Scim`] clients in the per-thread agent table.
static NEXT_CLIENT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each worker thread's own agent (one keep-alive connection) per client.
    static AGENTS: RefCell<HashMap<usize, ureq::Agent>> = RefCell::new(HashMap::new());
}

/// The SCIM API of one account: base URL, bearer token, and one keep-alive connection per worker thread.
///
/// Every thread that calls [`Scim::call`] gets its own ureq agent (a pool of one connection), so concurrent
/// workers never contend for a shared pool; the connection lives as long as the worker thread.
#[derive(Clone)]
pub struct Scim {
    id: usize,
    base: Arc<str>,
    auth: Arc<str>,
    progress: Arc<AtomicU64>,
    max_retries: u32,
}

impl Scim {
    /// A client for `base` (the account's SCIM base URL, without a trailing slash) with `token`; `progress` is
    /// incremented once per request; a 429 or 503 is retried after its `Retry-After` up to `max_retries` times.
    pub fn new(base: &str, token: &str, progress: Arc<AtomicU64>, max_retries: u32) -> Self {
        Scim {
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            base: base.trim_end_matches('/').into(),
            auth: format!("Bearer {token}").into(),
            progress,
            max_retries,
        }
    }

    /// The account's SCIM base URL, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The `Authorization` header's value.
    pub(crate) fn auth(&self) -> &str {
        &self.auth
    }

    /// How many times a 429 or 503 is retried.
    pub(crate) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Counts one request sent, for the progress bar.
    pub(crate) fn count_request(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// This thread's agent for this client.
    fn agent(&self) -> ureq::Agent {
        AGENTS.with(|m| m.borrow_mut().entry(self.id).or_insert_with(|| agent(1)).clone())
    }

    /// Sends `method base+path` and records it under `kind`: a status in `expect` is a success, anything else
    /// (or a transport error) an error. A 429 or 503 is counted as throttled and retried after its
    /// `Retry-After` (at most `max_retries` times; the throttled attempts are not latency samples). Returns the
    /// answer when the status was expected.
    pub fn call(
        &self,
        stats: &mut Stats,
        kind: Kind,
        method: &str,
        path: &str,
        body: Option<&str>,
        expect: &[u16],
    ) -> Option<Answer> {
        let url = format!("{}{}", self.base, path);
        let agent = self.agent();
        let mut attempt = 0;
        let (result, micros) = loop {
            let t = Instant::now();
            let result = send(&agent, method, &url, &self.auth, body);
            let micros = micros_since(t);
            self.count_request();
            if let Ok((status, retry_after, _)) = &result
                && let Some(wait) = retry_wait(*status, *retry_after, expect, attempt, self.max_retries)
            {
                attempt += 1;
                stats.throttled(kind, *status);
                std::thread::sleep(wait);
                continue;
            }
            break (result, micros);
        };
        if kind.is_write() {
            stats.note_write(Instant::now());
        }
        match result {
            Ok((status, _, body)) => {
                let answer = Answer { status, body, micros };
                if expect.contains(&status) {
                    stats.ok(kind, micros);
                    Some(answer)
                } else {
                    stats.fail(kind, micros, &status.to_string(), || {
                        format!("{method} {path} -> {status}: {}", answer.snippet())
                    });
                    None
                }
            }
            Err(e) => {
                stats.fail(kind, micros, "transport", || format!("{method} {path} -> transport error: {e}"));
                None
            }
        }
    }

    /// Records that a request answered with an expected status but unexpected content (e.g. a lookup that found
    /// nothing): its latency stays recorded and it is counted as an error under `unexpected-result`.
    pub fn unexpected(stats: &mut Stats, kind: Kind, what: impl FnOnce() -> String) {
        stats.count_error(kind, "unexpected-result", what);
    }
}

/// The admin API on the ops port.
#[derive(Clone)]
pub struct Admin {
    agent: ureq::Agent,
    url: String,
    auth: String,
}

/// An account created for the run, with its SCIM base URL and token.
#[derive(Clone, Debug)]
pub struct AccountAccess {
    /// Account id.
    pub id: String,
    /// Account name.
    pub name: String,
    /// SCIM base URL (possibly rewritten to `--public-url`).
    pub scim_base_url: String,
    /// SCIM bearer token.
    pub token: String,
}

/// Rewrites the scheme, host and port of `scim_base_url` to those of `public_url`, keeping the path.
pub fn rebase(scim_base_url: &str, public_url: &str) -> String {
    let after_scheme = scim_base_url.find("://").map_or(0, |i| i + 3);
    let path = scim_base_url[after_scheme..].find('/').map_or("", |i| &scim_base_url[after_scheme + i..]);
    format!("{}{}", public_url.trim_end_matches('/'), path)
}

impl Admin {
    /// A client for the admin API at `url` (the ops origin) with the admin bearer `token`.
    pub fn new(url: &str, token: &str) -> Self {
        Admin { agent: agent(4), url: url.trim_end_matches('/').to_owned(), auth: format!("Bearer {token}") }
    }

    fn post(&self, stats: &mut Stats, path: &str, body: &Value) -> Result<Value, Error> {
        self.call(stats, "POST", path, Some(body))
    }

    /// Sends one admin request and returns its JSON answer; any status but 200/201 is an error.
    fn call(&self, stats: &mut Stats, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let url = format!("{}{}", self.url, path);
        let t = Instant::now();
        let body = body.map(Value::to_string).unwrap_or_default();
        let result = match method {
            "GET" => self.agent.get(&url).header("Authorization", &self.auth).call(),
            "PUT" => self
                .agent
                .put(&url)
                .header("Authorization", &self.auth)
                .header("Content-Type", "application/json")
                .send(body),
            _ => self
                .agent
                .post(&url)
                .header("Authorization", &self.auth)
                .header("Content-Type", "application/json")
                .send(body),
        };
        let micros = micros_since(t);
        let mut resp = result.map_err(|e| Error::new(format!("admin {method} {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| Error::new(format!("admin {method} {url}: {e}")))?;
        if status != 201 && status != 200 {
            stats.fail(Kind::Admin, micros, &status.to_string(), || format!("{method} {path} -> {status}: {text}"));
            return Err(Error::new(format!("admin {method} {url} answered {status}: {text}")));
        }
        stats.ok(Kind::Admin, micros);
        serde_json::from_str(&text).map_err(|e| Error::new(format!("admin {method} {url}: bad JSON ({e}): {text}")))
    }

    /// Sets an account's license policy (`PUT …/license-policy`); returns once the event has been applied.
    pub fn put_license_policy(&self, stats: &mut Stats, account: &str, policy: &Value) -> Result<(), Error> {
        self.call(stats, "PUT", &format!("/admin/v1/accounts/{account}/license-policy"), Some(policy)).map(|_| ())
    }

    /// Seat use per license (`GET …/seats`): license name to users holding it.
    pub fn seats_used(&self, stats: &mut Stats, account: &str) -> Result<BTreeMap<String, u64>, Error> {
        let v = self.call(stats, "GET", &format!("/admin/v1/accounts/{account}/seats"), None)?;
        let seats = v["seats"].as_object().ok_or_else(|| Error::new(format!("seats answer lacks `seats`: {v}")))?;
        Ok(seats.iter().map(|(k, s)| (k.clone(), s["used"].as_u64().unwrap_or(0))).collect())
    }

    /// Creates an account and a SCIM token for it; the SCIM base URL is rebased onto `public_url` when given.
    pub fn create_account(
        &self,
        stats: &mut Stats,
        name: &str,
        public_url: Option<&str>,
    ) -> Result<AccountAccess, Error> {
        let acct = self.post(stats, "/admin/v1/accounts", &json!({"name": name}))?;
        let field = |v: &Value, k: &str| {
            v[k].as_str().map(str::to_owned).ok_or_else(|| Error::new(format!("admin answer lacks `{k}`: {v}")))
        };
        let id = field(&acct, "id")?;
        let base = field(&acct, "scim_base_url")?;
        let tok = self.post(stats, &format!("/admin/v1/accounts/{id}/scim-tokens"), &json!({"name": "loadgen"}))?;
        let token = field(&tok, "token")?;
        let scim_base_url = match public_url {
            Some(p) => rebase(&base, p),
            None => base,
        };
        Ok(AccountAccess { id, name: name.to_owned(), scim_base_url, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_results_is_found_without_parsing() {
        let b = br#"{"schemas":["x"],"totalResults":1,"Resources":[{"id":"abc"}]}"#;
        assert_eq!(total_results(b), Some(1));
        assert_eq!(total_results(br#"{"totalResults" : 12345 ,"x":1}"#), Some(12345));
        assert_eq!(total_results(b"{}"), None);
        assert!(contains(b, "\"abc\""));
        assert!(!contains(b, "\"abd\""));
        assert!(!contains(b, ""));
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn rebase_keeps_the_path() {
        assert_eq!(
            rebase("http://0.0.0.0:8080/scim/v2/accounts/a1", "http://127.0.0.1:9000/"),
            "http://127.0.0.1:9000/scim/v2/accounts/a1"
        );
        assert_eq!(rebase("http://h:1", "http://x:2"), "http://x:2");
    }
}
