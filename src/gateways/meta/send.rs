//! Meta's WhatsApp Cloud API (`POST /{api_version}/{phone_number_id}/messages`), per SPEC §8
//! and the Meta section of `shared/providers/RECEIPTS.md` (Meta publishes no send document in
//! `shared/providers/`).
//!
//! - **Body**: the canonical message *is* Meta's message object (SPEC §2), so the request is
//!   that object plus `messaging_product: "whatsapp"`, `recipient_type: "individual"`, `to`
//!   (digits, no `+`) and `biz_opaque_callback_data` = the job id, which Meta echoes in its
//!   status webhooks. Every canonical type, reply context included, is expressible: nothing is
//!   ever refused as unsupported here.
//! - **Auth**: `Authorization: Bearer <system-user token>`; the sender (`phone_number_id`) is a
//!   path segment, the Graph API version comes from the channel's `api_version`.
//! - **Idempotency**: none. Meta sends every request it accepts, so a resend after an
//!   ambiguous attempt may duplicate; the channel's `on_ambiguous` decides (SPEC §4).
//! - **Errors**: `{"error":{"message","type","code","error_data":{"details"},"error_subcode",
//!   "fbtrace_id"}}`. The class follows `error.code` ([`ERROR_TABLE`]), not the HTTP status,
//!   which Meta sets to 400 for most of them.
//! - **Gaps**: Meta does not document `Retry-After` on its rate-limit errors (it is honoured
//!   if present); `131049` comes with a 24 h floor instead (see [`MARKETING_LIMIT_WAIT`]).

use std::ops::RangeInclusive;
use std::time::Duration;

use reqwest::Method;

use serde_json::{Map, Value};

use crate::config::{ChannelConfig, ProviderKind, Secret};
use crate::gateways::{self, Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure, Sent};

/// Graph API version used when the channel names none.
pub const DEFAULT_API_VERSION: &str = "v21.0";

/// Every error code RECEIPTS.md names for Meta (a range where Meta documents one), with its
/// SPEC §7 class. Looked up by `error.code`; the HTTP status only matters for unknown codes.
///
/// `auth` vs `channel`: both are retried slowly until an operator acts, and both make failover
/// safe. `auth` is for the token and the app's permissions (fixed by issuing a new token or
/// granting a permission); `channel` for the business account or number itself (blocked,
/// locked, unpaid: fixed in Business Manager), so the alert names the right thing to fix.
pub const ERROR_TABLE: &[(RangeInclusive<u32>, ErrorClass)] = &[
    // The 24 h customer-service window is closed: only a template can reach the user now.
    (131047..=131047, ErrorClass::WindowExpired),
    // Undeliverable (not on WhatsApp, old client, ecosystem protection): resending won't help.
    (131026..=131026, ErrorClass::Rejected),
    // "User's number is part of an experiment": Meta holds marketing back from this user
    // (seen in a failed status of the peer webhook corpus, pywa's message_status__failed).
    (130472..=130472, ErrorClass::Rejected),
    // Bad, missing or mismatched parameters and template errors: the job must change.
    (100..=100, ErrorClass::Invalid),
    (131008..=131008, ErrorClass::Invalid),
    (131009..=131009, ErrorClass::Invalid),
    (132000..=132000, ErrorClass::Invalid),
    (132001..=132001, ErrorClass::Invalid),
    (132012..=132012, ErrorClass::Invalid),
    // "Request for url … failed with error: 404 (Not Found)": the job's media link is dead
    // (courier's error_status fixture); unlike 131053's fetch trouble, a 404 does not pass.
    (131014..=131014, ErrorClass::Invalid),
    // "Message type is not currently supported" (the corpus' inbound `unsupported` items):
    // on a send, the job asked for a type this number cannot send.
    (131051..=131051, ErrorClass::Invalid),
    // Throughput of the whole number (80 msg/s by default).
    (130429..=130429, ErrorClass::RateLimited),
    // Pair rate limit: too many messages to this one user (~1 per 6 s); only this job waits.
    (131056..=131056, ErrorClass::RateLimited),
    // Spam rate limit: Meta wants a long pause; the retry schedule's later steps give it.
    (131048..=131048, ErrorClass::RateLimited),
    // Per-user marketing limit: Meta will not deliver more marketing to this user for a day.
    // Not `rejected`: the message is fine and a job whose producer allows it (max_age,
    // expires_at beyond 24 h) can still go out; retrying sooner is pointless, hence the
    // MARKETING_LIMIT_WAIT floor. A job that cannot wait ends `retries_exhausted`/`expired`,
    // which tells the producer truthfully that it was never sent.
    (131049..=131049, ErrorClass::RateLimited),
    // Graph API call-rate limits (app-level `4`, WABA-level `80007`): long backoff.
    (4..=4, ErrorClass::RateLimited),
    (80007..=80007, ErrorClass::RateLimited),
    // Register/deregister rate limit: nyaruka/courier (RapidPro's sender) treats it as
    // throttling, and retrying later is what clears it.
    (133016..=133016, ErrorClass::RateLimited),
    // Server-side trouble at Meta: unknown error, service unavailable, "something went wrong".
    (1..=1, ErrorClass::Transient),
    (2..=2, ErrorClass::Transient),
    (131000..=131000, ErrorClass::Transient),
    (131016..=131016, ErrorClass::Transient),
    // The number is being upgraded (maintenance mode): it passes on its own.
    (131057..=131057, ErrorClass::Transient),
    // Media could not be fetched or processed: often the host was briefly down; RECEIPTS says
    // retry a few times, and max_attempts bounds it if the link is really dead.
    (131053..=131053, ErrorClass::Transient),
    // The token: expired (190), refused (0 AuthException), lacking a capability (3) or a
    // permission (10, 200–299), or access to this number revoked (131005).
    (0..=0, ErrorClass::Auth),
    (3..=3, ErrorClass::Auth),
    (10..=10, ErrorClass::Auth),
    (190..=190, ErrorClass::Auth),
    (200..=299, ErrorClass::Auth),
    (131005..=131005, ErrorClass::Auth),
    // The account or number: blocked for policy violations (368), locked (131031), or unable
    // to pay (131042). No token change fixes these.
    (368..=368, ErrorClass::Channel),
    (131031..=131031, ErrorClass::Channel),
    (131042..=131042, ErrorClass::Channel),
];

/// `(code, error_subcode)` pairs whose class differs from the code's row in [`ERROR_TABLE`];
/// checked first.
pub const SUBCODE_TABLE: &[(u32, u32, ErrorClass)] = &[
    // Graph's "Object with ID '…' does not exist, cannot be loaded due to missing permissions":
    // with a send, the object is our phone_number_id, so the channel's `sender` (or the token's
    // access to it) is wrong. Failing every job as `invalid` would throw the backlog away over a
    // configuration typo; `channel` keeps it until an operator fixes it.
    (100, 33, ErrorClass::Channel),
];

/// Least wait after `131049` (per-user marketing limit): RECEIPTS.md says at least 24 h.
pub const MARKETING_LIMIT_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Meta's per-user marketing limit code, which carries [`MARKETING_LIMIT_WAIT`].
const MARKETING_LIMIT_CODE: u32 = 131049;

/// The Meta Cloud API adapter for one channel (one business phone number).
pub struct Meta {
    /// The business number's `phone_number_id`, a path segment of every send.
    sender: String,
    /// System-user or app access token, sent as a Bearer token.
    api_key: Secret,
    /// Graph API version path segment, e.g. `v21.0`.
    api_version: String,
}

impl Meta {
    /// An adapter sending from `sender` (`phone_number_id`) with `api_key`, on the channel's
    /// `api_version` (default [`DEFAULT_API_VERSION`]; `21.0` is read as `v21.0`).
    pub fn new(sender: String, api_key: Secret, channel: &ChannelConfig) -> Self {
        let version = channel
            .api_version
            .as_deref()
            .map(|v| v.trim().trim_matches('/'))
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_API_VERSION);
        let api_version = if version.starts_with('v') {
            version.to_string()
        } else {
            format!("v{version}")
        };
        Self {
            sender,
            api_key,
            api_version,
        }
    }
}

impl Adapter for Meta {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Meta
    }

    fn request(&self, job: &Job, _ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        // The sender becomes a path segment: anything but digits would address another object
        // (or another endpoint) of the Graph API. An operator fixes it, so `channel`.
        if self.sender.is_empty() || !self.sender.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Failure::new(
                ErrorClass::Channel,
                "bad_sender",
                "channel sender must be the numeric Meta phone_number_id",
            ));
        }
        let canonical = serde_json::to_value(&job.message)
            .map_err(|e| Failure::invalid("invalid_field", format!("message: {e}")))?;
        let Value::Object(message) = canonical else {
            return Err(Failure::invalid("invalid_field", "message: not an object"));
        };

        let mut body = Map::new();
        body.insert("messaging_product".into(), Value::from("whatsapp"));
        body.insert("recipient_type".into(), Value::from("individual"));
        body.insert("to".into(), Value::from(job.to_digits()));
        // `type`, the type's object and `context` go through untouched: no downgrade possible.
        body.extend(message);
        // Echoed in status webhooks, so a receipt names its job even before the wamid is stored.
        // Job ids are ≤ 128 printable ASCII characters; Meta allows 512.
        body.insert(
            "biz_opaque_callback_data".into(),
            Value::from(job.id.clone()),
        );
        gateways::merge_options(&mut body, job)?;

        let auth = gateways::bearer(&self.api_key)?;
        // No idempotency header: Meta has no such mechanism (see the module documentation).
        Ok(HttpCall {
            method: Method::POST,
            path: format!("/{}/{}/messages", self.api_version, self.sender),
            headers: vec![auth],
            body: Value::Object(body),
        })
    }

    fn code_class(&self, code: &str) -> Option<ErrorClass> {
        let code: u32 = code.trim().parse().ok()?;
        ERROR_TABLE
            .iter()
            .find(|(codes, _)| codes.contains(&code))
            .map(|(_, class)| *class)
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        let json = reply.json();
        // Meta errors always carry an `error` object; one on a 2xx is still a failure.
        if let Some(error) = json
            .as_ref()
            .and_then(|b| b.get("error"))
            .filter(|e| e.is_object())
        {
            return Err(classify_error(reply, error));
        }
        if !(200..300).contains(&reply.status) {
            return Err(classify_error(reply, &Value::Null));
        }
        let id = json
            .as_ref()
            .and_then(|b| b.pointer("/messages/0/id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        match id {
            Some(id) => Ok(Accepted {
                provider_message_id: id.to_string(),
                // Meta never replays: every accepted request is a new message.
                replayed: false,
            }),
            // Accepted but unreadable: it was probably sent. Meta has no idempotency, so this
            // is left to `on_ambiguous`.
            None => Err(Failure::new(
                ErrorClass::Transient,
                "bad_response",
                format!("HTTP {} without messages[0].id", reply.status),
            )
            .maybe_sent()),
        }
    }
}

/// Classify Meta's `error` object (or its absence, `Null`) through [`SUBCODE_TABLE`] and
/// [`ERROR_TABLE`], falling back on the HTTP status for codes neither names.
fn classify_error(reply: &HttpReply, error: &Value) -> Failure {
    let code = gateways::error_code(&serde_json::json!({ "error": error }));
    let numeric = code.as_deref().and_then(|c| c.parse::<u32>().ok());
    let subcode = error
        .get("error_subcode")
        .and_then(|s| s.as_u64().or_else(|| s.as_str()?.parse().ok()));
    let known = numeric.and_then(|code| {
        SUBCODE_TABLE
            .iter()
            .find(|(c, s, _)| *c == code && Some(u64::from(*s)) == subcode)
            .map(|(_, _, class)| *class)
            .or_else(|| {
                ERROR_TABLE
                    .iter()
                    .find(|(codes, _)| codes.contains(&code))
                    .map(|(_, class)| *class)
            })
    });
    // A code the tables name is Meta refusing the message; anything else follows the status.
    let (class, sent) = match known {
        Some(class) => (class, Sent::No),
        None => {
            tracing::warn!(
                provider = "meta",
                status = reply.status,
                code = code.as_deref().unwrap_or("-"),
                subcode = subcode.map(|s| s.to_string()).as_deref().unwrap_or("-"),
                "gateway answered an undocumented error; classifying by HTTP status"
            );
            (
                gateways::class_for_status(reply.status),
                gateways::sent_for_status(reply.status),
            )
        }
    };
    let mut retry_after = reply.retry_after();
    if numeric == Some(MARKETING_LIMIT_CODE) {
        retry_after =
            Some(retry_after.map_or(MARKETING_LIMIT_WAIT, |r| r.max(MARKETING_LIMIT_WAIT)));
    }
    let mut failure = Failure::new(
        class,
        code.clone()
            .unwrap_or_else(|| format!("http_{}", reply.status)),
        describe(reply.status, error, subcode),
    )
    .with_retry_after(retry_after)
    .with_sent(sent);
    if let Some(code) = code {
        failure = failure.with_provider_code(code);
    }
    failure
}

/// A human message from Meta's error: `message`, then `error_data.details` (which says which
/// parameter was wrong), the subcode and `fbtrace_id` (what Meta support asks for).
fn describe(status: u16, error: &Value, subcode: Option<u64>) -> String {
    let mut text = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    if let Some(details) = error.pointer("/error_data/details").and_then(Value::as_str)
        && !details.is_empty()
        && details != text
    {
        text.push_str(": ");
        text.push_str(details);
    }
    if let Some(subcode) = subcode {
        text.push_str(&format!(" (subcode {subcode})"));
    }
    if let Some(trace) = error.get("fbtrace_id").and_then(Value::as_str) {
        text.push_str(&format!(" [fbtrace_id {trace}]"));
    }
    text
}

#[cfg(test)]
mod tests {
    use reqwest::header::{AUTHORIZATION, HeaderValue};
    use reqwest::header::{HeaderMap, HeaderName};
    use serde_json::json;

    use super::*;
    use crate::retry::Sent;

    const SENDER: &str = "106540352242922";

    fn channel(extra: &str) -> ChannelConfig {
        toml::from_str(&format!(
            "provider = \"meta\"\nbase_url = \"https://graph.facebook.com\"\n{extra}"
        ))
        .expect("valid channel")
    }

    fn meta() -> Meta {
        Meta::new(SENDER.into(), Secret::new("EAAG_unit"), &channel(""))
    }

    fn reply(status: u16, body: Value, headers: &[(&str, &str)]) -> HttpReply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        HttpReply {
            status,
            headers: map,
            body: body.to_string().into(),
        }
    }

    /// Meta's error body, as RECEIPTS.md shows it.
    fn meta_error(code: u32) -> Value {
        json!({"error": {
            "message": format!("(#{code}) detalle"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "más detalle"},
            "error_subcode": 2494010,
            "fbtrace_id": "AbCdEf"
        }})
    }

    fn job(message: Value) -> Job {
        let body = json!({"id": "ord-1847-confirm", "channel": "meta-mx", "to": "+5491126032641",
                          "message": message});
        crate::job::parse(body.to_string().as_bytes()).expect("valid job")
    }

    fn ctx() -> SendContext<'static> {
        SendContext {
            idempotency_key: "pedido-1847",
            attempt: 1,
        }
    }

    fn fail(status: u16, body: Value) -> Failure {
        meta().response(&reply(status, body, &[])).unwrap_err()
    }

    fn assert_row(code: u32, class: ErrorClass) {
        // Meta answers 400 for most errors, 401 for token errors; the class must not care.
        for status in [400, 401, 403, 429, 500] {
            let failure = fail(status, meta_error(code));
            assert_eq!(failure.class, class, "{code} on HTTP {status}");
            assert_eq!(failure.code, code.to_string());
            assert_eq!(
                failure.provider_code.as_deref(),
                Some(code.to_string().as_str())
            );
            assert_eq!(failure.sent, Sent::No);
            assert_eq!(
                failure.message,
                format!("(#{code}) detalle: más detalle (subcode 2494010) [fbtrace_id AbCdEf]")
            );
        }
    }

    #[test]
    fn window_expired_131047() {
        assert_row(131047, ErrorClass::WindowExpired);
    }

    #[test]
    fn codes_from_the_peer_webhook_corpus_have_their_class() {
        assert_row(130472, ErrorClass::Rejected);
        assert_row(131014, ErrorClass::Invalid);
        assert_row(131051, ErrorClass::Invalid);
    }

    #[test]
    fn undeliverable_131026_is_rejected() {
        assert_row(131026, ErrorClass::Rejected);
    }

    #[test]
    fn parameter_errors_are_invalid() {
        assert_row(100, ErrorClass::Invalid);
        assert_row(131008, ErrorClass::Invalid);
        assert_row(131009, ErrorClass::Invalid);
    }

    #[test]
    fn template_errors_are_invalid() {
        assert_row(132000, ErrorClass::Invalid);
        assert_row(132001, ErrorClass::Invalid);
        assert_row(132012, ErrorClass::Invalid);
    }

    #[test]
    fn throughput_and_pair_limits_are_rate_limited() {
        assert_row(130429, ErrorClass::RateLimited);
        assert_row(131056, ErrorClass::RateLimited);
        assert_row(131048, ErrorClass::RateLimited);
        assert_row(4, ErrorClass::RateLimited);
        assert_row(80007, ErrorClass::RateLimited);
        assert_row(133016, ErrorClass::RateLimited);
    }

    #[test]
    fn marketing_limit_131049_waits_at_least_a_day() {
        assert_row(131049, ErrorClass::RateLimited);
        assert_eq!(
            fail(400, meta_error(131049)).retry_after,
            Some(MARKETING_LIMIT_WAIT)
        );
        let longer = meta()
            .response(&reply(
                400,
                meta_error(131049),
                &[("retry-after", "100000")],
            ))
            .unwrap_err();
        assert_eq!(longer.retry_after, Some(Duration::from_secs(100_000)));
    }

    #[test]
    fn server_side_errors_are_transient() {
        for code in [1, 2, 131000, 131016, 131057, 131053] {
            assert_row(code, ErrorClass::Transient);
        }
    }

    #[test]
    fn token_and_permission_errors_are_auth() {
        for code in [0, 3, 10, 190, 200, 250, 299, 131005] {
            assert_row(code, ErrorClass::Auth);
        }
        // Just outside the permission range.
        assert_eq!(fail(400, meta_error(300)).class, ErrorClass::Invalid);
        assert_eq!(fail(400, meta_error(199)).class, ErrorClass::Invalid);
    }

    #[test]
    fn account_state_errors_are_channel() {
        for code in [368, 131031, 131042] {
            assert_row(code, ErrorClass::Channel);
        }
    }

    #[test]
    fn every_table_row_is_covered_by_a_test() {
        // The per-class tests above name codes; this keeps them and the table in step.
        let tested: &[u32] = &[
            131047, 131026, 100, 131008, 131009, 132000, 132001, 132012, 130429, 131056, 131048,
            131049, 4, 80007, 133016, 1, 2, 131000, 131016, 131057, 131053, 0, 3, 10, 190, 200,
            299, 131005, 368, 131031, 131042, 130472, 131014, 131051,
        ];
        for (codes, _) in ERROR_TABLE {
            assert!(tested.contains(codes.start()), "{codes:?} untested");
            assert!(tested.contains(codes.end()), "{codes:?} untested");
        }
    }

    #[test]
    fn unknown_object_subcode_33_is_a_channel_problem() {
        let mut body = meta_error(100);
        body["error"]["error_subcode"] = json!(33);
        let failure = fail(400, body);
        assert_eq!(failure.class, ErrorClass::Channel);
        assert_eq!(failure.provider_code.as_deref(), Some("100"));
        assert!(failure.message.contains("(subcode 33)"));
    }

    #[test]
    fn undocumented_codes_fall_back_on_the_status() {
        for (status, class) in [
            (400, ErrorClass::Invalid),
            (404, ErrorClass::Invalid),
            (401, ErrorClass::Auth),
            (429, ErrorClass::RateLimited),
            (500, ErrorClass::Transient),
            (503, ErrorClass::Transient),
        ] {
            let failure = fail(status, meta_error(987654));
            assert_eq!(failure.class, class, "{status}");
            assert_eq!(failure.provider_code.as_deref(), Some("987654"));
        }
        // No Meta body at all (a proxy's HTML page): the status decides, the code names it.
        let failure = meta()
            .response(&HttpReply {
                status: 502,
                headers: HeaderMap::new(),
                body: "<html>Bad Gateway</html>".into(),
            })
            .unwrap_err();
        assert_eq!(
            (failure.class, failure.code.as_str(), failure.provider_code),
            (ErrorClass::Transient, "http_502", None)
        );
        assert_eq!(fail(422, json!({})).class, ErrorClass::Invalid);
    }

    #[test]
    fn codes_sent_as_strings_are_read() {
        let failure = fail(
            400,
            json!({"error": {"code": "131047", "error_subcode": "2494010", "message": "m"}}),
        );
        assert_eq!(failure.class, ErrorClass::WindowExpired);
        assert_eq!(failure.message, "m (subcode 2494010)");
    }

    #[test]
    fn retry_after_is_read_when_given() {
        let failure = meta()
            .response(&reply(429, meta_error(130429), &[("retry-after", "7")]))
            .unwrap_err();
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(fail(429, meta_error(130429)).retry_after, None);
    }

    #[test]
    fn a_200_with_an_error_body_is_a_failure() {
        let failure = fail(200, meta_error(131047));
        assert_eq!(failure.class, ErrorClass::WindowExpired);
        // An unknown code on a 2xx: the status says nothing, so retry (transient).
        let failure = fail(200, meta_error(987654));
        assert_eq!(failure.class, ErrorClass::Transient);
    }

    #[test]
    fn success_reads_the_wamid() {
        let body = json!({"messaging_product": "whatsapp",
            "contacts": [{"input": "5491126032641", "wa_id": "5491126032641"}],
            "messages": [{"id": "wamid.HBgNNTQ5MTEyNjAzMjY0MRUCABEYEjQ="}]});
        assert_eq!(
            meta().response(&reply(200, body, &[])).unwrap(),
            Accepted {
                provider_message_id: "wamid.HBgNNTQ5MTEyNjAzMjY0MRUCABEYEjQ=".into(),
                replayed: false,
            }
        );
    }

    #[test]
    fn a_2xx_without_an_id_is_an_ambiguous_failure() {
        for body in [
            json!({"messages": []}),
            json!({"messages": [{"id": ""}]}),
            json!(null),
        ] {
            let failure = fail(200, body);
            assert_eq!(
                (failure.class, failure.code.as_str(), failure.sent),
                (ErrorClass::Transient, "bad_response", Sent::Maybe)
            );
        }
    }

    #[test]
    fn request_has_path_auth_and_envelope() {
        let call = meta()
            .request(
                &job(json!({"type": "text", "text": {"body": "Hola!"}})),
                ctx(),
            )
            .unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, format!("/v21.0/{SENDER}/messages"));
        assert_eq!(
            call.headers.len(),
            1,
            "no idempotency header: Meta has none"
        );
        let (name, value) = &call.headers[0];
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Bearer EAAG_unit");
        assert!(value.is_sensitive());
        assert_eq!(
            call.body,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "5491126032641", "type": "text", "text": {"body": "Hola!"},
                   "biz_opaque_callback_data": "ord-1847-confirm"})
        );
    }

    #[test]
    fn api_version_comes_from_the_channel() {
        for (setting, path) in [
            ("api_version = \"v19.0\"", "/v19.0/"),
            ("api_version = \"20.0\"", "/v20.0/"),
            ("api_version = \"\"", "/v21.0/"),
            ("", "/v21.0/"),
        ] {
            let adapter = Meta::new(SENDER.into(), Secret::new("t"), &channel(setting));
            let call = adapter
                .request(&job(json!({"type": "text", "text": {"body": "x"}})), ctx())
                .unwrap();
            assert!(call.path.starts_with(path), "{setting}: {}", call.path);
        }
    }

    #[test]
    fn every_canonical_type_goes_through_whole_with_its_reply_context() {
        let messages = [
            json!({"type": "text", "text": {"body": "Hola", "preview_url": true}}),
            json!({"type": "image", "image": {"link": "https://e.com/i.jpg", "caption": "c"}}),
            json!({"type": "video", "video": {"id": "123", "caption": "c"}}),
            json!({"type": "audio", "audio": {"id": "123"}}),
            json!({"type": "document", "document": {"link": "https://e.com/f.pdf", "caption": "c", "filename": "f.pdf"}}),
            json!({"type": "sticker", "sticker": {"id": "123"}}),
            json!({"type": "template", "template": {"name": "t", "language": {"code": "es_AR"},
                   "components": [{"type": "button", "sub_type": "quick_reply", "index": "0",
                                   "parameters": [{"type": "payload", "payload": "p"}]}]}}),
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "b"},
                   "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
            json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "b"},
                   "footer": {"text": "f"}, "action": {"button": "Ver", "sections": [{"rows": [{"id": "r", "title": "R"}]}]}}}),
            json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38, "name": "n", "address": "a"}}),
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A B", "first_name": "A"},
                   "phones": [{"phone": "+34600000000", "type": "CELL"}]}]}),
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}),
        ];
        for message in messages {
            let mut with_context = message.clone();
            with_context["context"] = json!({"message_id": "wamid.PREV"});
            let call = meta().request(&job(with_context.clone()), ctx()).unwrap();
            let mut expected = with_context;
            expected["messaging_product"] = json!("whatsapp");
            expected["recipient_type"] = json!("individual");
            expected["to"] = json!("5491126032641");
            expected["biz_opaque_callback_data"] = json!("ord-1847-confirm");
            assert_eq!(call.body, expected, "{}", message["type"]);
        }
    }

    #[test]
    fn no_canonical_type_is_unsupported() {
        // SPEC §8: Meta expresses everything; an `unsupported_message_type` here would be a
        // regression. The canonical types are checked one by one above; this guards reactions
        // and stickers, the ones other gateways refuse.
        for message in [
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": ""}}),
            json!({"type": "sticker", "sticker": {"link": "https://e.com/s.webp"}}),
        ] {
            assert!(meta().request(&job(message), ctx()).is_ok());
        }
    }

    #[test]
    fn provider_options_add_fields_but_cannot_override() {
        let mut body = json!({"id": "j", "channel": "meta-mx", "to": "+5491126032641",
            "message": {"type": "text", "text": {"body": "x"}},
            "provider_options": {"status_callback_tag": "a"}});
        let job = crate::job::parse(body.to_string().as_bytes()).unwrap();
        let call = meta().request(&job, ctx()).unwrap();
        assert_eq!(call.body["status_callback_tag"], json!("a"));

        body["provider_options"] = json!({"to": "34600000000"});
        let job = crate::job::parse(body.to_string().as_bytes()).unwrap();
        let failure = meta().request(&job, ctx()).unwrap_err();
        assert_eq!(
            (failure.class, failure.code.as_str()),
            (ErrorClass::Invalid, "invalid_field")
        );
    }

    #[test]
    fn a_non_numeric_sender_fails_as_channel_before_sending() {
        for sender in ["", "106540352242922/../me", "abc"] {
            let adapter = Meta::new(sender.into(), Secret::new("t"), &channel(""));
            let failure = adapter
                .request(&job(json!({"type": "text", "text": {"body": "x"}})), ctx())
                .unwrap_err();
            assert_eq!(
                (failure.class, failure.code.as_str()),
                (ErrorClass::Channel, "bad_sender")
            );
        }
    }

    #[test]
    fn a_token_unfit_for_a_header_is_an_auth_failure() {
        let adapter = Meta::new(SENDER.into(), Secret::new("bad\ntoken"), &channel(""));
        let failure = adapter
            .request(&job(json!({"type": "text", "text": {"body": "x"}})), ctx())
            .unwrap_err();
        assert_eq!(failure.class, ErrorClass::Auth);
        assert!(!failure.message.contains("bad"));
    }
}
