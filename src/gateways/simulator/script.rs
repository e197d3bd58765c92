//! Scripted errors: rules that answer chosen requests with chosen errors.
//!
//! Rules are tried in the order they were added; the first that matches a request answers
//! it. A rule with `times` is used up after that many answers and removed, so "the next 3
//! calls answer 503, then the gateway recovers" is one rule. A rule without `times` answers
//! until the script is cleared.

use std::time::Duration;

use crate::config::ScriptRule;

/// An error the simulator answers with instead of sending, rendered by each simulated API in
/// its own error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedError {
    /// HTTP status.
    pub status: u16,
    /// The gateway's error code, if the rule named one; else each API picks its generic code
    /// for `status`.
    pub code: Option<String>,
    /// A `Retry-After` to send; when unset a 429 still gets the simulator's one second, as
    /// before scripts existed.
    pub retry_after: Option<Duration>,
}

impl InjectedError {
    /// A random injection (`error_rate`): only a status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            code: None,
            retry_after: None,
        }
    }

    /// The `Retry-After` header value to send, if any: the rule's, else one second on a 429
    /// (what the simulator always did, so clients relying on it keep working).
    pub fn retry_after_header(&self) -> Option<String> {
        match self.retry_after {
            Some(after) => Some(after.as_secs().to_string()),
            None => (self.status == 429).then(|| "1".to_string()),
        }
    }
}

/// What a rule is matched against: the request's path and its recipient as the gateway's
/// API writes it (`+549…`, `549…`), if the body names one.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The request path (no query).
    pub path: &'a str,
    /// The recipient field of the body.
    pub to: Option<&'a str>,
}

/// A rule and how many answers it has left (`None`: until cleared).
#[derive(Debug, Clone)]
struct Entry {
    rule: ScriptRule,
    left: Option<u32>,
}

/// The rules in force, in order.
#[derive(Debug, Clone, Default)]
pub struct Script {
    entries: Vec<Entry>,
}

/// Only the digits of a phone number: each gateway writes them differently.
fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

fn matches(rule: &ScriptRule, target: Target<'_>) -> bool {
    let path_ok = rule
        .path
        .as_deref()
        .is_none_or(|pattern| path_matches(pattern, target.path));
    // A rule for a recipient never matches a request without one.
    let to_ok = rule
        .to
        .as_deref()
        .is_none_or(|want| target.to.is_some_and(|to| digits(to) == digits(want)));
    path_ok && to_ok
}

impl Script {
    /// Append rules after the ones in force.
    pub fn extend(&mut self, rules: impl IntoIterator<Item = ScriptRule>) {
        self.entries.extend(rules.into_iter().map(|rule| Entry {
            left: rule.times,
            rule,
        }));
    }

    /// Drop every rule; returns how many there were.
    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.entries).len()
    }

    /// The rules in force, each with its remaining `times`.
    pub fn rules(&self) -> Vec<ScriptRule> {
        self.entries
            .iter()
            .map(|e| ScriptRule {
                times: e.left,
                ..e.rule.clone()
            })
            .collect()
    }

    /// The error the first matching rule answers `target` with, using one of its `times`.
    pub fn answer(&mut self, target: Target<'_>) -> Option<InjectedError> {
        let at = self.entries.iter().position(|e| matches(&e.rule, target))?;
        let entry = &mut self.entries[at];
        let error = InjectedError {
            status: entry.rule.status,
            code: entry.rule.code.clone(),
            retry_after: entry.rule.retry_after.map(Duration::from_secs),
        };
        if let Some(left) = &mut entry.left {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.entries.remove(at);
            }
        }
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> ScriptRule {
        serde_json::from_value(json).expect("rule")
    }

    fn at<'a>(path: &'a str, to: Option<&'a str>) -> Target<'a> {
        Target { path, to }
    }

    #[test]
    fn a_rule_with_times_runs_out_then_the_next_one_answers() {
        let mut script = Script::default();
        script.extend([
            rule(serde_json::json!({"path": "/api/v2/messages", "status": 503, "times": 2})),
            rule(serde_json::json!({"status": 429, "retry_after": 7})),
        ]);
        let waspy = at("/api/v2/messages", Some("+5491126032641"));
        assert_eq!(script.answer(waspy).map(|e| e.status), Some(503));
        assert_eq!(script.rules()[0].times, Some(1), "one use left");
        assert_eq!(script.answer(waspy).map(|e| e.status), Some(503));
        assert_eq!(script.rules().len(), 1, "the used-up rule is gone");
        let next = script.answer(waspy).expect("the catch-all");
        assert_eq!(next.status, 429);
        assert_eq!(next.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(next.retry_after_header().as_deref(), Some("7"));
        // Without `times` it stays until cleared.
        assert!(script.answer(waspy).is_some());
        assert_eq!(script.clear(), 1);
        assert_eq!(script.answer(waspy), None);
    }

    #[test]
    fn recipients_match_by_digits_whatever_the_gateway_writes() {
        let mut script = Script::default();
        script.extend([rule(serde_json::json!({
            "to": "+54 9 11 2603-2641", "status": 403, "code": "SERVICE_WINDOW_EXPIRED"
        }))]);
        // Another recipient, and a request without one, do not match.
        assert_eq!(
            script.answer(at("/v3/message", Some("5491100000000"))),
            None
        );
        assert_eq!(script.answer(at("/v3/message", None)), None);
        // Meta/seven.io/Wazzup write digits, Waspy/Whaapy `+` and digits.
        let hit = script.answer(at("/v3/message", Some("5491126032641")));
        assert_eq!(
            hit.and_then(|e| e.code).as_deref(),
            Some("SERVICE_WINDOW_EXPIRED")
        );
        assert!(
            script
                .answer(at("/messages/v1", Some("+5491126032641")))
                .is_some()
        );
    }

    #[test]
    fn paths_match_exactly_or_by_a_trailing_star() {
        let mut script = Script::default();
        script.extend([
            rule(serde_json::json!({"path": "/v21.0/*", "status": 500})),
            rule(serde_json::json!({"path": "/api/waba/messages", "status": 502})),
        ]);
        let status = |s: &mut Script, p| s.answer(at(p, None)).map(|e| e.status);
        assert_eq!(
            status(&mut script, "/v21.0/106540352242922/messages"),
            Some(500)
        );
        assert_eq!(status(&mut script, "/api/waba/messages"), Some(502));
        assert_eq!(status(&mut script, "/api/waba/messages/1"), None);
        assert_eq!(status(&mut script, "/api/v2/messages"), None);
    }

    #[test]
    fn rules_are_tried_in_order() {
        let mut script = Script::default();
        script.extend([
            rule(serde_json::json!({"to": "4915112345678", "status": 400, "code": "7002001", "times": 1})),
            rule(serde_json::json!({"status": 503})),
        ]);
        let target = at("/api/waba/messages", Some("4915112345678"));
        assert_eq!(script.answer(target).map(|e| e.status), Some(400));
        assert_eq!(script.answer(target).map(|e| e.status), Some(503));
    }

    #[test]
    fn bad_rules_name_their_field() {
        let problem = |json| rule(json).problem().unwrap_or_default();
        assert!(problem(serde_json::json!({"status": 200})).starts_with("status"));
        assert!(problem(serde_json::json!({"status": 503, "times": 0})).starts_with("times"));
        assert!(problem(serde_json::json!({"status": 503, "to": "+"})).starts_with("to"));
        assert!(problem(serde_json::json!({"status": 503, "path": "x"})).starts_with("path"));
        assert_eq!(rule(serde_json::json!({"status": 503})).problem(), None);
        let unknown =
            serde_json::from_value::<ScriptRule>(serde_json::json!({"status": 503, "tiems": 1}));
        assert!(unknown.is_err(), "typos are refused");
    }

    #[test]
    fn random_injections_keep_their_one_second_on_429() {
        assert_eq!(
            InjectedError::status(429).retry_after_header().as_deref(),
            Some("1")
        );
        assert_eq!(InjectedError::status(503).retry_after_header(), None);
    }
}
