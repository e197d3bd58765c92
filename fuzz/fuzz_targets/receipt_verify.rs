//! Webhook authentication with arbitrary headers, secrets, URLs, bodies and clocks, for every
//! provider: `verify` never panics, and a request signed with `sign` at `now` verifies.
#![no_main]

use arbitrary::Arbitrary;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mensajero::config::{ProviderKind, Secret};
use mensajero::gateways::webhook::{self as receipts, WebhookRequest};

#[derive(Debug, Arbitrary)]
struct Input {
    provider: u8,
    secret: String,
    method: String,
    url: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Unix seconds of the verifier's clock.
    now: i64,
    /// Sign the request properly (then the arbitrary headers only add to it).
    sign: bool,
}

const PROVIDERS: [ProviderKind; 6] = [
    ProviderKind::Meta,
    ProviderKind::Waspy,
    ProviderKind::Whaapy,
    ProviderKind::Wazzup,
    ProviderKind::Seven,
    ProviderKind::Mock,
];

fuzz_target!(|input: Input| {
    let provider = PROVIDERS[usize::from(input.provider) % PROVIDERS.len()];
    let secret = Secret::new(input.secret.clone());
    let now = DateTime::<Utc>::from_timestamp(input.now, 0).unwrap_or_else(Utc::now);
    let mut headers = HeaderMap::new();
    let signed = input.sign
        && !input.secret.is_empty()
        && input.secret.bytes().all(|b| b.is_ascii_alphanumeric());
    if signed {
        for (name, value) in receipts::sign(
            provider,
            &secret,
            &input.method,
            &input.url,
            &input.body,
            now,
        ) {
            headers.insert(name, value);
        }
    }
    for (name, value) in &input.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_bytes(value),
        ) {
            // A properly signed request keeps its own headers; the others are noise around them.
            if !(signed && headers.contains_key(&name)) {
                headers.append(name, value);
            }
        }
    }
    let request = WebhookRequest {
        method: &input.method,
        url: &input.url,
        headers: &headers,
        query: input.query.as_deref(),
        body: &input.body,
    };
    let verdict = receipts::verify(provider, &secret, &request, now);
    if signed {
        assert_eq!(verdict, Ok(()), "{provider:?}: a signed request is refused");
    }
});
