//! `job::parse` on any bytes: it never panics, and a job it accepts serialises to a body it
//! accepts again as the same job (what a dead-letter replay relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mensajero::job::{self, MAX_BODY_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = job::parse(data) else {
        return;
    };
    let body = serde_json::to_vec(&parsed).expect("a parsed job serialises");
    // Re-serialising can grow a body (`1e5` becomes `100000.0`); only bodies within the limit
    // must come back.
    if body.len() <= MAX_BODY_BYTES {
        let again = job::parse(&body).unwrap_or_else(|e| {
            panic!(
                "a serialised job is refused: {e}\n{}",
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(again, parsed, "a job changes through serialising");
    }
});
