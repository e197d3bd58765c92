//! The Whaapy receipt parser on any body, with and without an `X-Webhook-Event` header value:
//! it never panics. The input's first line (when there is one and it is UTF-8) is the header
//! value, the rest the body; the body alone is parsed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mensajero::gateways::whaapy::webhook as whaapy;

fuzz_target!(|data: &[u8]| {
    let _ = whaapy::parse(data);
    if let Some(newline) = data.iter().position(|&b| b == b'\n')
        && let Ok(event) = std::str::from_utf8(&data[..newline])
    {
        let _ = whaapy::parse_with_event(&data[newline + 1..], Some(event));
    }
});
