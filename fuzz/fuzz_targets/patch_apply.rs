//! PATCH bodies: `PatchRequest::parse` then `apply` against a fixed user and a fixed group. An
//! error must leave the resource untouched, a success must leave a stored form that passes the
//! create rules, and every error must be a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_scim::body::parse_json;
use roster_scim::patch::{PatchLimits, PatchRequest, apply};
use roster_scim::resource::{normalize, validate_stored};
use roster_scim::schema::ResourceKind;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    // The ingress's own body parser (strict: unique keys, 32 levels, no NUL).
    let body = match parse_json(data, roster_scim::body::MAX_DEPTH) {
        Ok(b) => b,
        Err(e) => {
            assert_eq!(e.status, 400, "body error is not a 400: {e:?}");
            return;
        }
    };
    let req = match PatchRequest::parse(&body, &PatchLimits::default()) {
        Ok(r) => r,
        Err(e) => {
            assert!((400..500).contains(&e.status), "parse error is not a 4xx: {e:?}");
            return;
        }
    };
    let user = json!({
        "userName": "bjensen@example.com",
        "externalId": "bjensen",
        "active": true,
        "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "country": "USA"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        }
    });
    let group = json!({
        "displayName": "Tour Guides",
        "externalId": "tour-guides",
        "members": [{"value": "2819c223-7f76-453a-919d-413861904646"}]
    });
    for (kind, body) in [(ResourceKind::User, user), (ResourceKind::Group, group)] {
        let Ok(stored) = normalize(kind, &body) else { panic!("the fixed {kind:?} must normalize") };
        let before = stored.attributes.clone();
        let mut resource = stored.attributes;
        match apply(kind, &mut resource, &req) {
            Ok(_) => {
                if let Err(e) = validate_stored(kind, &resource) {
                    panic!("a successful PATCH left an invalid {kind:?}: {e:?}\n{resource:?}");
                }
            }
            Err(e) => {
                assert!((400..500).contains(&e.status), "apply error is not a 4xx: {e:?}");
                assert_eq!(resource, before, "a failed PATCH changed the {kind:?}");
            }
        }
    }
});
