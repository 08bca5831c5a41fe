//! A SCIM client bound to one account's base URL and token, sending requests the way Entra does
//! (`Content-Type: application/scim+json; charset=utf-8`, no SCIM `Accept`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{Req, Resp};
use super::{ENTERPRISE, GROUP_SCHEMA, PATCH_OP, Router, USER_SCHEMA, enc};

/// Entra's request content type.
pub const ENTRA_CT: &str = "application/scim+json; charset=utf-8";

/// A SCIM client for `{base}` with a bearer token.
#[derive(Clone)]
pub struct Scim {
    /// `http://127.0.0.1:<port>/scim/v2/accounts/<account_id>`.
    pub base: String,
    /// The account id.
    pub account_id: String,
    /// The SCIM bearer token.
    pub token: String,
    agent: ureq::Agent,
    /// Spreads requests built by this client over the server's ingress replicas.
    router: Option<Arc<Router>>,
}

impl Scim {
    /// A client for `base` with `token`.
    pub fn new(base: String, account_id: String, token: String, agent: ureq::Agent) -> Self {
        Scim { base, account_id, token, agent, router: None }
    }

    /// The same client, sending each request to the next ingress replica of `router`.
    pub fn routed(self, router: Arc<Router>) -> Scim {
        Scim { router: Some(router), ..self }
    }

    /// The URL of `{base}{path}` on the replica that gets the next request.
    pub fn url(&self, path: &str) -> String {
        let url = format!("{}{}", self.base, path);
        match &self.router {
            Some(r) => r.route(&url),
            None => url,
        }
    }

    /// The same account with another token.
    pub fn with_token(&self, token: &str) -> Scim {
        Scim { token: token.to_owned(), ..self.clone() }
    }

    /// The same token against another base URL (e.g. another account's).
    pub fn with_base(&self, base: &str) -> Scim {
        Scim { base: base.to_owned(), ..self.clone() }
    }

    /// The underlying agent.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// A request to `{base}{path}` with the bearer token and, for bodies, Entra's content type.
    pub fn req(&self, method: &'static str, path: &str, body: Option<&Value>) -> Req {
        let mut r = Req::new(method, self.url(path)).header("Authorization", &format!("Bearer {}", self.token));
        if let Some(b) = body {
            r = r.header("Content-Type", ENTRA_CT).body(b.to_string());
        }
        r
    }

    /// GET `{base}{path}`.
    #[track_caller]
    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None).send(&self.agent)
    }

    /// POST a JSON body.
    #[track_caller]
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.req("POST", path, Some(body)).send(&self.agent)
    }

    /// PUT a JSON body.
    #[track_caller]
    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.req("PUT", path, Some(body)).send(&self.agent)
    }

    /// PATCH a JSON body.
    #[track_caller]
    pub fn patch(&self, path: &str, body: &Value) -> Resp {
        self.req("PATCH", path, Some(body)).send(&self.agent)
    }

    /// DELETE.
    #[track_caller]
    pub fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, None).send(&self.agent)
    }

    /// Sends `body` byte for byte (for Entra's verbatim bodies) with Entra's content type.
    #[track_caller]
    pub fn raw(&self, method: &'static str, path: &str, body: &str) -> Resp {
        let r = Req::new(method, self.url(path))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", ENTRA_CT)
            .body(body);
        r.send(&self.agent)
    }

    /// Sends a prepared request with this client's agent.
    #[track_caller]
    pub fn send(&self, req: &Req) -> Resp {
        req.send(&self.agent)
    }

    /// POST /Users expecting 201; returns the created user.
    #[track_caller]
    pub fn create_user(&self, body: &Value) -> Value {
        self.post("/Users", body).scim(201)
    }

    /// Creates a user with our Entra mapping body for `user_name` (`given`/`family` as name).
    #[track_caller]
    pub fn create_mapped_user(&self, user_name: &str, given: &str, family: &str) -> Value {
        self.create_user(&mapped_user(user_name, given, family))
    }

    /// Creates a minimal user; returns its id.
    #[track_caller]
    pub fn user_id(&self, user_name: &str) -> String {
        let u = self.create_user(&json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true}));
        id_of(&u)
    }

    /// POST /Groups expecting 201; returns the created group.
    #[track_caller]
    pub fn create_group(&self, display_name: &str) -> Value {
        self.post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": display_name})).scim(201)
    }

    /// GET /Users/{id} expecting 200.
    #[track_caller]
    pub fn get_user(&self, id: &str) -> Value {
        self.get(&format!("/Users/{id}")).scim(200)
    }

    /// GET /Groups/{id} expecting 200.
    #[track_caller]
    pub fn get_group(&self, id: &str) -> Value {
        self.get(&format!("/Groups/{id}")).scim(200)
    }

    /// GET /Users?filter=<filter> (encoded like Entra) → Resources.
    #[track_caller]
    pub fn filter_users(&self, filter: &str) -> Vec<Value> {
        self.get(&format!("/Users?filter={}", enc(filter))).list()
    }

    /// GET /Groups?filter=<filter> → Resources.
    #[track_caller]
    pub fn filter_groups(&self, filter: &str) -> Vec<Value> {
        self.get(&format!("/Groups?filter={}", enc(filter))).list()
    }

    /// PATCH /Groups/{id} with operations, expecting 204 and an empty body.
    #[track_caller]
    pub fn patch_group_ok(&self, id: &str, ops: Value) {
        self.patch(&format!("/Groups/{id}"), &patch_op(ops)).expect_empty(204);
    }

    /// PATCH /Users/{id} with operations, expecting 200; returns the user.
    #[track_caller]
    pub fn patch_user_ok(&self, id: &str, ops: Value) -> Value {
        self.patch(&format!("/Users/{id}"), &patch_op(ops)).scim(200)
    }

    /// Every resource under `path` (`/Users` or `/Groups`), following pagination.
    #[track_caller]
    pub fn list_all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut start = 1u64;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = self.get(&format!("{path}{sep}startIndex={start}&count=200"));
            let page = r.list();
            let total = r.json()["totalResults"].as_u64().unwrap_or(0);
            let n = page.len() as u64;
            out.extend(page);
            if n == 0 || out.len() as u64 >= total {
                assert_eq!(out.len() as u64, total, "pagination lost resources:\n{}", r.describe());
                return out;
            }
            start += n;
        }
    }
}

/// Wraps operations into a PatchOp message.
pub fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// Our Entra attribute mapping as a POST body (entra-behavior.md §1.3, reconstructed body).
pub fn mapped_user(user_name: &str, given: &str, family: &str) -> Value {
    let nick = user_name.split('@').next().unwrap_or(user_name);
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": nick,
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": family, "givenName": given}
    })
}

/// The `id` of a resource.
#[track_caller]
pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("resource without string id: {v}")).to_owned()
}

/// The `value` of the work email, if any.
pub fn work_email(user: &Value) -> Option<String> {
    user["emails"].as_array()?.iter().find(|e| e["type"] == "work").and_then(|e| e["value"].as_str()).map(str::to_owned)
}
