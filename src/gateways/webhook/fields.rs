//! What every gateway file needs to read a webhook: JSON access that names the offending field,
//! tolerant timestamps, status tables, header and query lookups, and secret checks.
//!
//! Error messages name fields by their path (`entry[0].changes[1].value.statuses[2].id`) and
//! never echo values: a body may carry phone numbers, and a header may carry a secret.

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::{AuthError, ParseError, constant_time_eq};
use crate::config::Secret;
use crate::outcome::Status;

/// A JSON object.
pub(crate) type Object = Map<String, Value>;

/// Above this a numeric timestamp must be in milliseconds: 10^11 seconds is the year 5138,
/// while 10^11 milliseconds is 1973, so no real report is ambiguous.
const MILLIS_THRESHOLD: f64 = 1e11;

/// How much of an unexpected value a debug log shows (a status word can be any size).
const PREVIEW_CHARS: usize = 32;

/// The body as a JSON object. serde_json's recursion limit (128) makes deep nesting an error,
/// not a stack overflow; invalid UTF-8 is an error too.
pub(crate) fn body_object(body: &[u8]) -> Result<Object, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ParseError(format!(
            "body is a JSON {}, expected an object",
            kind(&other)
        ))),
    }
}

/// A stable id for an item a gateway posts without one: `sha256:` and the hex SHA-256 of
/// `bytes` (the raw body, or the item as JSON). A gateway's retry repeats the bytes, so it
/// yields the same id, and hence the same inbound event id.
pub(crate) fn content_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The JSON type of `value`, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The path of `key` inside the object at `at` (`""` is the body itself).
pub(crate) fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn wrong_type(at: &str, key: &str, expected: &str, found: &Value) -> ParseError {
    ParseError(format!(
        "{} must be {expected}, not a JSON {}",
        path(at, key),
        kind(found)
    ))
}

/// A value that must be an object (an array element, usually).
pub(crate) fn as_object<'a>(value: &'a Value, at: &str) -> Result<&'a Object, ParseError> {
    value.as_object().ok_or_else(|| {
        ParseError(format!(
            "{at} must be an object, not a JSON {}",
            kind(value)
        ))
    })
}

/// `obj[key]` absent or null → `None`, present → `Some` (a gateway's "no value" is either).
fn present<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// An optional object member.
pub(crate) fn opt_object<'a>(
    obj: &'a Object,
    key: &str,
    at: &str,
) -> Result<Option<&'a Object>, ParseError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(wrong_type(at, key, "an object", other)),
    }
}

/// An optional array member.
pub(crate) fn opt_array<'a>(
    obj: &'a Object,
    key: &str,
    at: &str,
) -> Result<Option<&'a [Value]>, ParseError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.as_slice())),
        Some(other) => Err(wrong_type(at, key, "an array", other)),
    }
}

/// An optional string member.
pub(crate) fn opt_str<'a>(
    obj: &'a Object,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, ParseError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(wrong_type(at, key, "a string", other)),
    }
}

/// A required, non-empty string member.
pub(crate) fn req_str<'a>(obj: &'a Object, key: &str, at: &str) -> Result<&'a str, ParseError> {
    match opt_str(obj, key, at)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(ParseError(format!("{} is empty", path(at, key)))),
        None => Err(ParseError(format!("missing {}", path(at, key)))),
    }
}

/// An optional id or code that gateways send as a string or as an integer (Meta's error codes
/// are numbers; seven.io's ids may be). An empty string counts as absent.
pub(crate) fn opt_text(obj: &Object, key: &str, at: &str) -> Result<Option<String>, ParseError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(wrong_type(at, key, "a string or an integer", other)),
    }
}

/// An optional timestamp: unix seconds (or milliseconds, see [`MILLIS_THRESHOLD`]) as a number
/// or a numeric string, fractions allowed; RFC 3339; or `YYYY-MM-DD HH:MM:SS`, read as UTC.
pub(crate) fn opt_timestamp(
    obj: &Object,
    key: &str,
    at: &str,
) -> Result<Option<DateTime<Utc>>, ParseError> {
    let unreadable = || ParseError(format!("{} is not a readable timestamp", path(at, key)));
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => from_unix_int(i),
            None => n.as_f64().and_then(from_unix_float),
        }
        .map(Some)
        .ok_or_else(unreadable),
        Some(Value::String(s)) => parse_time_text(s.trim()).map(Some).ok_or_else(unreadable),
        Some(other) => Err(wrong_type(at, key, "a timestamp", other)),
    }
}

fn from_unix_int(value: i64) -> Option<DateTime<Utc>> {
    if value < 0 {
        None
    } else if value as f64 >= MILLIS_THRESHOLD {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    }
}

fn from_unix_float(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let seconds = if value >= MILLIS_THRESHOLD {
        value / 1000.0
    } else {
        value
    };
    let whole = seconds.trunc();
    // Clamped: rounding 0.9999999999 s must not yield an out-of-range nanosecond count.
    let nanos = (((seconds - whole) * 1e9).round() as u32).min(999_999_999);
    DateTime::from_timestamp(whole as i64, nanos)
}

fn parse_time_text(text: &str) -> Option<DateTime<Utc>> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().and_then(from_unix_int);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return text.parse::<f64>().ok().and_then(from_unix_float);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|naive| naive.and_utc())
}

/// The status a gateway's word means, by its table (case-insensitive: gateways disagree on case).
pub(crate) fn lookup(table: &[(&str, Status)], word: &str) -> Option<Status> {
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, status)| *status)
}

/// The start of `text`, for a debug log line.
pub(crate) fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

/// The secret's bytes, or `NotConfigured` when it is empty (an empty key would let anyone
/// forge a valid HMAC or match an empty header).
pub(crate) fn secret_bytes(secret: &Secret) -> Result<&[u8], AuthError> {
    let bytes = secret.expose().as_bytes();
    if bytes.is_empty() {
        Err(AuthError::NotConfigured)
    } else {
        Ok(bytes)
    }
}

/// Whether a received hex digest (any case, surrounding spaces tolerated) equals ours, compared
/// in constant time.
pub(crate) fn hex_matches(expected_hex: &str, received: &[u8]) -> bool {
    constant_time_eq(
        expected_hex.as_bytes(),
        received.trim_ascii().to_ascii_lowercase().as_slice(),
    )
}

/// The first value of query parameter `name`, URL-decoded (`+` is a space).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    let mut url = reqwest::Url::parse("http://query.invalid/").ok()?;
    url.set_query(Some(query.strip_prefix('?').unwrap_or(query)));
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A header to send. `None` when `value` cannot be a header value (a secret with a newline):
/// the receiving side then reports the header missing, which is the truth.
pub(crate) fn header(
    name: &'static str,
    value: &str,
    sensitive: bool,
) -> Option<(HeaderName, HeaderValue)> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(sensitive);
    Some((HeaderName::from_static(name), value))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building requests the way the listener would.

    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

    /// Headers from `(name, value)` pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Headers from what a `sign` function returned.
    pub fn signed(pairs: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
        pairs.into_iter().collect()
    }

    /// Inputs no parser may panic on, and must refuse.
    pub fn hostile_bodies() -> Vec<Vec<u8>> {
        vec![
            b"".to_vec(),
            b"not json".to_vec(),
            b"[]".to_vec(),
            b"\"text\"".to_vec(),
            b"null".to_vec(),
            vec![0xff, 0xfe, b'{', 0x80],
            "[".repeat(100_000).into_bytes(),
            format!("{}1", "{\"a\":".repeat(50_000)).into_bytes(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn time_of(value: Value) -> Result<Option<DateTime<Utc>>, ParseError> {
        let obj = json!({ "t": value });
        opt_timestamp(obj.as_object().unwrap(), "t", "x")
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(time_of(json!(1_700_000_000)), Ok(Some(at)));
        assert_eq!(time_of(json!("1700000000")), Ok(Some(at)));
        assert_eq!(time_of(json!(1_700_000_000_000_i64)), Ok(Some(at)));
        assert_eq!(time_of(json!("2023-11-14T22:13:20Z")), Ok(Some(at)));
        assert_eq!(time_of(json!("2023-11-14T23:13:20+01:00")), Ok(Some(at)));
        assert_eq!(time_of(json!("2023-11-14 22:13:20")), Ok(Some(at)));
        assert_eq!(
            time_of(json!("1700000000.5")),
            Ok(Some(Utc.timestamp_opt(1_700_000_000, 500_000_000).unwrap()))
        );
        assert_eq!(time_of(json!(null)), Ok(None));
    }

    #[test]
    fn unreadable_timestamps_name_the_field() {
        for bad in [
            json!("yesterday"),
            json!(-5),
            json!(true),
            json!("1.2.3"),
            json!({}),
        ] {
            let err = time_of(bad).unwrap_err();
            assert!(err.0.contains("x.t"), "{err}");
        }
    }

    #[test]
    fn query_values_are_url_decoded() {
        let q = "hub.mode=subscribe&hub.verify_token=a%26b+c&hub.challenge=12";
        assert_eq!(query_param(q, "hub.verify_token").as_deref(), Some("a&b c"));
        assert_eq!(query_param(q, "hub.challenge").as_deref(), Some("12"));
        assert_eq!(query_param(q, "absent"), None);
    }

    #[test]
    fn hostile_bodies_are_refused_without_panicking() {
        for body in testing::hostile_bodies() {
            assert!(body_object(&body).is_err());
        }
    }
}
