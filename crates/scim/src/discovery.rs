//! Discovery documents (RFC 7644 §4, RFC 7643 §5–7) and the ListResponse envelope.
//!
//! Everything is rendered from the `schema` statics, so `/Schemas` always describes exactly what
//! validation, PATCH and filtering enforce. `base_url` is the SCIM root as clients see it
//! (e.g. `https://roster.example.com/scim/v2`); a trailing `/` is ignored.
//!
//! The common attributes `id`, `externalId` and `meta` are not listed inside the schema
//! resources (RFC 7643 §3.1 defines them outside any schema).

use serde_json::{Value, json};

use crate::schema::{
    AttrType, AttributeDef, ENTERPRISE_USER, GROUP, LIST_RESPONSE_SCHEMA, ROSTER_USER, ResourceKind, Schema, USER,
};

/// URN of schema resources served by `/Schemas`.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// URN of `/ResourceTypes` entries.
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// URN of the `/ServiceProviderConfig` document.
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// The schemas Roster advertises, in `/Schemas` order.
pub static SCHEMAS: [&Schema; 4] = [&USER, &ENTERPRISE_USER, &ROSTER_USER, &GROUP];

/// Limits advertised in `/ServiceProviderConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Bulk `maxOperations` (bulk is unsupported, but RFC 7643 §5 requires the field).
    pub max_operations: usize,
    /// Bulk `maxPayloadSize` in bytes (the server's request body limit).
    pub max_payload_size: usize,
    /// `filter.maxResults`: the most resources one list or query returns.
    pub max_results: usize,
}

fn base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// A ListResponse (RFC 7644 §3.4.2); `Resources` is present even when empty, as Entra expects.
pub fn list_response(resources: Vec<Value>, total: u64, start_index: u64, items_per_page: usize) -> Value {
    // Built by hand: `json!` would serialise `resources` into a copy of every resource.
    let mut out = serde_json::Map::new();
    out.insert("schemas".into(), Value::Array(vec![LIST_RESPONSE_SCHEMA.into()]));
    out.insert("totalResults".into(), total.into());
    out.insert("Resources".into(), Value::Array(resources));
    out.insert("startIndex".into(), start_index.into());
    out.insert("itemsPerPage".into(), items_per_page.into());
    Value::Object(out)
}

/// `GET /Schemas`: every schema Roster supports.
pub fn schemas_document(base_url: &str) -> Value {
    let resources: Vec<Value> = SCHEMAS.iter().map(|s| render_schema(s, base_url)).collect();
    let n = resources.len();
    list_response(resources, n as u64, 1, n)
}

/// `GET /Schemas/{id}`: one schema by URN (case-insensitive), or `None` for a 404.
pub fn schema_resource(id_urn: &str, base_url: &str) -> Option<Value> {
    SCHEMAS.iter().find(|s| s.id.eq_ignore_ascii_case(id_urn)).map(|s| render_schema(s, base_url))
}

fn render_schema(s: &Schema, base_url: &str) -> Value {
    let attributes: Vec<Value> =
        s.attributes.iter().filter(|a| !matches!(a.name, "id" | "externalId" | "meta")).map(render_attribute).collect();
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base(base_url), s.id),
        },
    })
}

fn render_attribute(a: &AttributeDef) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": a.ty.as_str(),
        "multiValued": a.multi_valued,
        "description": a.description,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": a.mutability.as_str(),
        "returned": a.returned.as_str(),
        "uniqueness": a.uniqueness.as_str(),
    });
    if let Some(obj) = v.as_object_mut() {
        if !a.canonical_values.is_empty() {
            obj.insert("canonicalValues".into(), json!(a.canonical_values));
        }
        if a.ty == AttrType::Reference {
            let types: &[&str] = if a.reference_types.is_empty() { &["external"] } else { a.reference_types };
            obj.insert("referenceTypes".into(), json!(types));
        }
        if a.ty == AttrType::Complex {
            let subs: Vec<Value> = a.sub_attributes.iter().map(render_attribute).collect();
            obj.insert("subAttributes".into(), Value::Array(subs));
        }
    }
    v
}

/// `GET /ResourceTypes`: User and Group.
pub fn resource_types_document(base_url: &str) -> Value {
    let resources: Vec<Value> =
        [ResourceKind::User, ResourceKind::Group].iter().map(|k| render_resource_type(*k, base_url)).collect();
    let n = resources.len();
    list_response(resources, n as u64, 1, n)
}

/// `GET /ResourceTypes/{name}` (`User` or `Group`, case-insensitive), or `None` for a 404.
pub fn resource_type(name: &str, base_url: &str) -> Option<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(name))
        .map(|k| render_resource_type(k, base_url))
}

fn render_resource_type(kind: ResourceKind, base_url: &str) -> Value {
    let (endpoint, description) = match kind {
        ResourceKind::User => ("/Users", "User Account"),
        ResourceKind::Group => ("/Groups", "Group"),
    };
    let extensions: Vec<Value> =
        kind.extensions().iter().map(|s| json!({ "schema": s.id, "required": false })).collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": kind.as_str(),
        "name": kind.as_str(),
        "endpoint": endpoint,
        "description": description,
        "schema": kind.core_schema().id,
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{}/ResourceTypes/{}", base(base_url), kind.as_str()),
        },
    })
}

/// `GET /ServiceProviderConfig`: PATCH, filter, sort and ETags supported; bulk and password
/// change not; bearer-token authentication.
pub fn service_provider_config(base_url: &str, cfg: &ProviderLimits) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": { "supported": true },
        "bulk": {
            "supported": false,
            "maxOperations": cfg.max_operations,
            "maxPayloadSize": cfg.max_payload_size,
        },
        "filter": { "supported": true, "maxResults": cfg.max_results },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token in the Authorization header (the Secret Token configured in Entra).",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base(base_url)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ROSTER_USER_SCHEMA, USER_SCHEMA};

    const BASE: &str = "https://roster.example.com/scim/v2/";

    #[test]
    fn empty_list_response_has_resources_array_and_paging_fields() {
        let v = list_response(vec![], 0, 1, 20);
        assert_eq!(
            v,
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[],"startIndex":1,"itemsPerPage":20})
        );
    }

    #[test]
    fn list_response_carries_resources_and_totals() {
        let v = list_response(vec![json!({"id": "a"})], 7, 3, 1);
        assert_eq!(v["Resources"][0]["id"], "a");
        assert_eq!(v["totalResults"], 7);
        assert_eq!(v["startIndex"], 3);
    }

    #[test]
    fn schemas_document_lists_all_four_schemas_with_locations() {
        let v = schemas_document(BASE);
        assert_eq!(v["totalResults"], 4);
        let ids: Vec<&str> = v["Resources"].as_array().into_iter().flatten().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, ROSTER_USER_SCHEMA, GROUP_SCHEMA]);
        assert_eq!(v["Resources"][0]["meta"]["resourceType"], "Schema");
        assert_eq!(
            v["Resources"][0]["meta"]["location"],
            format!("https://roster.example.com/scim/v2/Schemas/{USER_SCHEMA}")
        );
    }

    #[test]
    fn user_schema_describes_emails_with_sub_attributes_and_omits_common_attributes() {
        let v = schema_resource(USER_SCHEMA, BASE).unwrap_or_default();
        let attrs = v["attributes"].as_array().cloned().unwrap_or_default();
        assert!(attrs.iter().all(|a| a["name"] != "id" && a["name"] != "meta"));
        let emails = attrs.iter().find(|a| a["name"] == "emails").cloned().unwrap_or_default();
        assert_eq!(emails["multiValued"], true);
        assert_eq!(emails["type"], "complex");
        let subs: Vec<&str> =
            emails["subAttributes"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(subs, ["value", "display", "type", "primary"]);
        let user_name = attrs.iter().find(|a| a["name"] == "userName").cloned().unwrap_or_default();
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["uniqueness"], "server");
    }

    #[test]
    fn password_is_advertised_write_only_and_never_returned() {
        let v = schema_resource(USER_SCHEMA, BASE).unwrap_or_default();
        let pw = v["attributes"].as_array().into_iter().flatten().find(|a| a["name"] == "password").cloned();
        assert_eq!(pw.as_ref().map(|p| p["mutability"].clone()), Some(json!("writeOnly")));
        assert_eq!(pw.map(|p| p["returned"].clone()), Some(json!("never")));
    }

    #[test]
    fn roster_license_type_is_read_only() {
        let v = schema_resource(ROSTER_USER_SCHEMA, BASE).unwrap_or_default();
        assert_eq!(v["attributes"][0]["name"], "licenseType");
        assert_eq!(v["attributes"][0]["mutability"], "readOnly");
    }

    #[test]
    fn schema_lookup_is_case_insensitive_and_unknown_is_none() {
        assert!(schema_resource(&GROUP_SCHEMA.to_uppercase(), BASE).is_some());
        assert!(schema_resource("urn:example:nope", BASE).is_none());
    }

    #[test]
    fn resource_types_describe_endpoints_and_extensions() {
        let v = resource_types_document(BASE);
        assert_eq!(v["totalResults"], 2);
        let user = resource_type("user", BASE).unwrap_or_default();
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(user["schema"], USER_SCHEMA);
        assert_eq!(user["schemaExtensions"][0], json!({"schema": ENTERPRISE_USER_SCHEMA, "required": false}));
        assert_eq!(user["meta"]["location"], "https://roster.example.com/scim/v2/ResourceTypes/User");
        let group = resource_type("Group", BASE).unwrap_or_default();
        assert_eq!(group["schemaExtensions"], json!([]));
        assert!(resource_type("Device", BASE).is_none());
    }

    #[test]
    fn service_provider_config_advertises_capabilities_and_limits() {
        let cfg = ProviderLimits { max_operations: 1000, max_payload_size: 1_048_576, max_results: 200 };
        let v = service_provider_config(BASE, &cfg);
        assert_eq!(v["schemas"][0], SERVICE_PROVIDER_CONFIG_SCHEMA);
        assert_eq!(v["patch"]["supported"], true);
        assert_eq!(v["bulk"], json!({"supported": false, "maxOperations": 1000, "maxPayloadSize": 1_048_576}));
        assert_eq!(v["filter"], json!({"supported": true, "maxResults": 200}));
        assert_eq!(v["changePassword"]["supported"], false);
        assert_eq!(v["sort"]["supported"], true);
        assert_eq!(v["etag"]["supported"], true);
        assert_eq!(v["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert!(v["authenticationSchemes"][0]["name"].is_string());
        assert_eq!(v["meta"]["location"], "https://roster.example.com/scim/v2/ServiceProviderConfig");
    }
}
