//! Errors: the [`Rejection`] of a body, and the [`JobError`] inside it, which names the JSON path
//! of the problem and the rule it breaks.

use std::fmt;

use serde::Serialize;

use super::MAX_RULE_CHARS;
use super::strict::truncate_chars;

/// Why a body was refused; carries what could still be read so the worker can publish a `failed` outcome.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    /// The first problem found.
    pub error: JobError,
    /// The body's `id`, when it was a valid one, so the outcome can name the job.
    pub job_id: Option<String>,
    /// The body's `channel`, when it was a valid name, so the outcome gets its routing key.
    pub channel: Option<String>,
}

/// One problem with a job: where it is (a JSON path, `$` for the body itself) and which rule it breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct JobError {
    /// Machine-readable kind, used as the outcome's error code.
    pub code: ErrorCode,
    /// JSON path of the offending value, e.g. `message.interactive.action.buttons[3]`; `$` for the whole body.
    pub path: String,
    /// The rule broken, for humans, e.g. `at most 3 reply buttons`.
    pub rule: String,
}

impl JobError {
    pub(super) fn new(code: ErrorCode, path: impl Into<String>, rule: impl Into<String>) -> Self {
        let mut rule = rule.into();
        truncate_chars(&mut rule, MAX_RULE_CHARS);
        JobError {
            code,
            path: path.into(),
            rule,
        }
    }
}

/// The kind of a [`JobError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is larger than [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
    Oversize,
    /// The body is not UTF-8, not JSON, or not a JSON object.
    Malformed,
    /// A field that the contract does not define (often a typo).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or breaks a limit.
    InvalidField,
    /// `to` is not an E.164 number.
    InvalidPhone,
}

impl ErrorCode {
    /// The wire name, e.g. `unknown_field`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::Oversize => "oversize",
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidPhone => "invalid_phone",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(super) fn invalid(path: impl Into<String>, rule: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::InvalidField, path, rule)
}

pub(super) fn missing(path: impl Into<String>, rule: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::MissingField, path, rule)
}

pub(super) fn unknown(path: impl Into<String>, rule: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::UnknownField, path, rule)
}
