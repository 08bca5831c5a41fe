//! Event log records (Kafka messages or rows of the embedded log): decoding arbitrary bytes must
//! never panic, and anything that decodes must re-encode to a record that decodes to the same
//! envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_events::Envelope;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(env) = Envelope::from_json(text) else { return };
    let Ok(encoded) = env.to_json() else { panic!("a decoded envelope must encode") };
    let again = match Envelope::from_json(&encoded) {
        Ok(e) => e,
        Err(e) => panic!("re-encoded envelope does not decode: {e}\n{encoded}"),
    };
    let Ok(encoded_again) = again.to_json() else { panic!("a decoded envelope must encode") };
    assert_eq!(encoded, encoded_again, "encoding is not stable");
});
