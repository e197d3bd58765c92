//! The send job (SPEC §1) and its canonical message (SPEC §2): what producers publish, parsed and
//! checked before anything is sent.
//!
//! Parsing is two-phase. The body first becomes a `serde_json::Value` (duplicate keys refused, so
//! no two parsers can disagree about what a job says); then each piece is deserialized with
//! `serde_path_to_error`, so every error names its JSON path. Meta's tagged shapes
//! (`{"type": "x", "x": {…}}`) are split by hand: serde's internally tagged enums buffer their
//! content and lose the path of any error inside it.
//!
//! Shape errors (unknown, missing or mistyped fields) are reported before limit errors, and those
//! of the whole job before those of the envelope's values: a typo in a producer breaks every job
//! it sends, so it is the first thing worth fixing.
//!
//! # Layout
//!
//! - `envelope`: [`Job`], [`Priority`] and [`parse`], the entry point, with the envelope's rules.
//! - `message`: the canonical message types, [`Message`] and everything inside it.
//! - `wire`: the message's wire form, out (`Serialize` of the tagged shapes) and in (the readers
//!   that keep JSON paths).
//! - `limits`: Meta's limits on the message (SPEC §2).
//! - `error`: [`Rejection`], [`JobError`] and [`ErrorCode`].
//! - `strict`: JSON without duplicate keys, and the helpers that keep echoed input short.
//! - `schema`: the JSON Schema ([`json_schema_text`]).

mod envelope;
mod error;
mod limits;
mod message;
mod schema;
mod strict;
#[cfg(test)]
mod tests;
mod wire;

pub use envelope::{Job, Priority, normalize_e164, parse};
pub use error::{ErrorCode, JobError, Rejection};
pub use message::{
    Action, ButtonAction, ButtonIndex, ButtonSubType, Component, ComponentType, Contact,
    ContactAddress, ContactEmail, ContactName, ContactOrg, ContactPhone, ContactUrl, Content,
    Context, Currency, DateTimeParameter, Header, Interactive, InteractiveText, Language,
    ListAction, Location, Media, Message, Parameter, ParameterValue, Reaction, Reply, ReplyButton,
    ReplyButtonType, Row, Section, Template, Text,
};
pub use schema::json_schema_text;

/// Largest accepted AMQP body in bytes (SPEC §1).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted `metadata` object, measured as compact JSON, in bytes (SPEC §1).
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Path of errors about the body as a whole.
const ROOT: &str = "$";
const MAX_ID_CHARS: usize = 128;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 256;
// The channel becomes a segment of the outcome routing key, so it must stay a single word.
const MAX_CHANNEL_CHARS: usize = 64;

// Meta's limits (SPEC §2): checking them here turns a provider rejection after a network round
// trip, possibly on a retry, into an immediate `invalid` outcome that names the field.
const MAX_TEXT_BODY_CHARS: usize = 4096;
const MAX_CAPTION_CHARS: usize = 1024;
const MAX_TEMPLATE_NAME_CHARS: usize = 512;
const MAX_COUPON_CODE_CHARS: usize = 15;
const MAX_REPLY_BUTTONS: usize = 3;
const MAX_BUTTON_TITLE_CHARS: usize = 20;
const MAX_BUTTON_ID_CHARS: usize = 256;
const MAX_LIST_BUTTON_CHARS: usize = 20;
const MAX_SECTIONS: usize = 10;
const MAX_ROWS: usize = 10;
const MAX_SECTION_TITLE_CHARS: usize = 24;
const MAX_ROW_TITLE_CHARS: usize = 24;
const MAX_ROW_DESCRIPTION_CHARS: usize = 72;
const MAX_ROW_ID_CHARS: usize = 200;
const MAX_INTERACTIVE_BODY_CHARS: usize = 1024;
const MAX_FOOTER_CHARS: usize = 60;
const MAX_HEADER_TEXT_CHARS: usize = 60;

// Error texts echo producer input into outcomes and logs; these keep them short.
const MAX_ECHO_CHARS: usize = 64;
const MAX_RULE_CHARS: usize = 400;
