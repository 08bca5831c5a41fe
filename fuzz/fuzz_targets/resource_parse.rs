//! POST/PUT bodies: the ingress's strict body parser, then `normalize` for users and groups.
//! Errors must be 4xx, and a normalized resource must pass the same checks when read back as a
//! stored form (what PATCH re-validates).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_scim::body::parse_json;
use roster_scim::resource::{normalize, validate_stored};
use roster_scim::schema::ResourceKind;

fuzz_target!(|data: &[u8]| {
    // The ingress's own body parser (strict: unique keys, 32 levels, no NUL).
    let body = match parse_json(data, roster_scim::body::MAX_DEPTH) {
        Ok(b) => b,
        Err(e) => {
            assert_eq!(e.status, 400, "body error is not a 400: {e:?}");
            return;
        }
    };
    for kind in [ResourceKind::User, ResourceKind::Group] {
        match normalize(kind, &body) {
            Ok(n) => {
                if let Err(e) = validate_stored(kind, &n.attributes) {
                    panic!("normalized {kind:?} fails validate_stored: {e:?}\n{:?}", n.attributes);
                }
            }
            Err(e) => assert!((400..500).contains(&e.status), "normalize error is not a 4xx: {e:?}"),
        }
    }
});
