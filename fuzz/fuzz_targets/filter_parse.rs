//! Filter text from a query string (`GET /Users?filter=…`): parse, validate against both resource
//! kinds, evaluate in memory and translate to SQL for both dialects. None of it may panic, and the
//! in-memory and SQL paths must agree on which filters are valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_filter_sql::{Dialect, where_clause};
use roster_scim::filter::{self, FilterLimits};
use roster_scim::schema::ResourceKind;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    // The ingress only ever sees filters as percent-decoded UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(f) = filter::parse(text, &FilterLimits::default()) else { return };
    let user = json!({
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"},
        "meta": {"created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z", "version": "W/\"1\""}
    });
    let group = json!({
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "externalId": "tg",
        "members": [{"value": "2819c223-7f76-453a-919d-413861904646"}]
    });
    for (kind, resource) in [(ResourceKind::User, &user), (ResourceKind::Group, &group)] {
        if filter::validate(&f, kind).is_err() {
            continue;
        }
        let _ = filter::matches(&f, kind, resource);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            // A validated filter may still be untranslatable (400 invalidFilter), never a 500.
            if let Err(e) = where_clause(&f, kind, dialect, "r", 2) {
                assert!(e.status < 500, "validated filter {text:?} failed SQL translation with {e:?}");
            }
        }
    }
});
