//! The seven receipt parser on any body: it never panics (the consumer dead-letters what it
//! cannot read, as `invalid_receipt`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mensajero::gateways::seven::webhook::parse(data);
});
