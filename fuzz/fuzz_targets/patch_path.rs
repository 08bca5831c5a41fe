//! PATCH `path` strings (`emails[type eq "work"].value`): parsing must never panic, and every
//! failure must be a 400 `invalidPath`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_scim::ScimType;
use roster_scim::patch::parse_path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_path(text) {
        Ok(p) => {
            let _ = p.to_string();
            let _ = p.target_sub();
        }
        Err(e) => {
            assert_eq!(e.status, 400, "{text:?}: {e:?}");
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{text:?}: {e:?}");
        }
    }
});
