//! A thin blocking HTTP layer over `ureq` 3 that never turns a status code into an error, and a
//! [`Resp`] type whose assertions print the request and the response when they fail.

use std::time::Duration;

use serde_json::Value;

/// The longest a single request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An agent that reports 4xx/5xx as ordinary responses so tests can assert statuses and bodies.
pub fn agent() -> ureq::Agent {
    let config =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(REQUEST_TIMEOUT)).build();
    ureq::Agent::new_with_config(config)
}

/// One request to send: method, absolute URL, extra headers and an optional body.
#[derive(Clone, Debug)]
pub struct Req {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// Absolute URL, query string included (already encoded).
    pub url: String,
    /// Headers in order; an empty value means "do not send this header" (ureq semantics for
    /// `Accept` and `User-Agent`).
    pub headers: Vec<(String, String)>,
    /// The raw body, sent as is.
    pub body: Option<String>,
}

impl Req {
    /// A request without headers or body.
    pub fn new(method: &'static str, url: impl Into<String>) -> Self {
        Req { method, url: url.into(), headers: Vec::new(), body: None }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the raw body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends the request; a transport error (connection refused, reset, timeout) is returned.
    pub fn try_send(&self, agent: &ureq::Agent) -> Result<Resp, ureq::Error> {
        let result = match self.method {
            "GET" | "DELETE" | "HEAD" => {
                let mut rb = match self.method {
                    "GET" => agent.get(&self.url),
                    "HEAD" => agent.head(&self.url),
                    _ => agent.delete(&self.url),
                };
                for (k, v) in &self.headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                rb.call()
            }
            "POST" | "PUT" | "PATCH" => {
                let mut rb = match self.method {
                    "POST" => agent.post(&self.url),
                    "PUT" => agent.put(&self.url),
                    _ => agent.patch(&self.url),
                };
                for (k, v) in &self.headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                rb.send(self.body.clone().unwrap_or_default().into_bytes())
            }
            other => panic!("harness: unsupported method {other}"),
        };
        let mut resp = result?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let text = resp.body_mut().read_to_string()?;
        Ok(Resp { method: self.method, url: self.url.clone(), req_body: self.body.clone(), status, headers, text })
    }

    /// Sends the request and panics (with the request) on a transport error.
    #[track_caller]
    pub fn send(&self, agent: &ureq::Agent) -> Resp {
        match self.try_send(agent) {
            Ok(r) => r,
            Err(e) => panic!(
                "transport error on {} {}: {e}\nrequest body: {}",
                self.method,
                self.url,
                truncate(self.body.as_deref().unwrap_or(""))
            ),
        }
    }
}

/// A received response, with the request that produced it for failure messages.
#[derive(Clone, Debug)]
pub struct Resp {
    /// Request method.
    pub method: &'static str,
    /// Request URL.
    pub url: String,
    /// Request body, if any.
    pub req_body: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Response headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub text: String,
}

/// Truncates long bodies in panic messages.
pub fn truncate(s: &str) -> String {
    const MAX: usize = 6000;
    if s.len() <= MAX {
        s.to_owned()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes total)", &s[..end], s.len())
    }
}

impl Resp {
    /// A multi-line description of the exchange, for panic messages.
    pub fn describe(&self) -> String {
        let mut s = format!("--> {} {}\n", self.method, self.url);
        if let Some(b) = &self.req_body {
            s.push_str(&format!("    {}\n", truncate(b)));
        }
        s.push_str(&format!("<-- {}\n", self.status));
        for (k, v) in &self.headers {
            s.push_str(&format!("    {k}: {v}\n"));
        }
        s.push_str(&format!("    {}\n", truncate(&self.text)));
        s
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the exchange when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.text) {
            Ok(v) => v,
            Err(e) => panic!("response body is not JSON ({e}):\n{}", self.describe()),
        }
    }

    /// Asserts the status.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status (expected {status}):\n{}", self.describe());
        self
    }

    /// Asserts the status and that the body is JSON served as `application/scim+json`; returns it.
    #[track_caller]
    pub fn scim(&self, status: u16) -> Value {
        self.assert_status(status);
        self.assert_scim_content_type();
        self.json()
    }

    /// Asserts the status and that the body is JSON (any JSON content type); returns it.
    #[track_caller]
    pub fn expect_json(&self, status: u16) -> Value {
        self.assert_status(status);
        self.json()
    }

    /// Asserts the status and an empty body (204-style).
    #[track_caller]
    pub fn expect_empty(&self, status: u16) {
        self.assert_status(status);
        assert!(self.text.trim().is_empty(), "expected an empty body:\n{}", self.describe());
    }

    /// Asserts `Content-Type: application/scim+json` (parameters such as charset allowed).
    #[track_caller]
    pub fn assert_scim_content_type(&self) -> &Self {
        let ct = self.header("content-type").unwrap_or("<absent>");
        let media = ct.split(';').next().unwrap_or("").trim();
        assert!(
            media.eq_ignore_ascii_case("application/scim+json"),
            "expected Content-Type application/scim+json, got {ct}:\n{}",
            self.describe()
        );
        self
    }

    /// Asserts a SCIM error response: the status, the error schema, `status` as a string equal to
    /// the HTTP status, `scimType` when given, and the content type. Returns the body.
    #[track_caller]
    pub fn scim_error(&self, status: u16, scim_type: Option<&str>) -> Value {
        let body = self.scim(status);
        let schemas = body["schemas"].as_array().cloned().unwrap_or_default();
        assert!(
            schemas.iter().any(|s| s == super::ERROR_SCHEMA),
            "error body lacks the SCIM error schema:\n{}",
            self.describe()
        );
        assert_eq!(
            body["status"],
            Value::String(status.to_string()),
            "error body `status` must be the string \"{status}\":\n{}",
            self.describe()
        );
        if let Some(t) = scim_type {
            assert_eq!(body["scimType"], Value::String(t.to_owned()), "wrong scimType:\n{}", self.describe());
        }
        body
    }

    /// Asserts a 200 ListResponse with the mandatory members and returns its `Resources`.
    #[track_caller]
    pub fn list(&self) -> Vec<Value> {
        let body = self.scim(200);
        let schemas = body["schemas"].as_array().cloned().unwrap_or_default();
        assert!(schemas.iter().any(|s| s == super::LIST_SCHEMA), "not a ListResponse:\n{}", self.describe());
        let total = body["totalResults"].as_u64();
        assert!(total.is_some(), "ListResponse lacks numeric totalResults:\n{}", self.describe());
        assert!(body["startIndex"].as_u64().is_some(), "ListResponse lacks numeric startIndex:\n{}", self.describe());
        assert!(
            body["itemsPerPage"].as_u64().is_some(),
            "ListResponse lacks numeric itemsPerPage:\n{}",
            self.describe()
        );
        let resources = match body.get("Resources") {
            Some(Value::Array(a)) => a.clone(),
            _ => panic!("ListResponse lacks a `Resources` array (must be [] when empty):\n{}", self.describe()),
        };
        assert!(
            total.unwrap_or(0) >= resources.len() as u64,
            "totalResults smaller than the page:\n{}",
            self.describe()
        );
        resources
    }
}
