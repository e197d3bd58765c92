//! `docs/job.schema.json` and `docs/inbound.schema.json` are generated from the code; these
//! fail when they are stale. Regenerate with `cargo run -- schema > docs/job.schema.json` and
//! `cargo run -- schema --inbound > docs/inbound.schema.json`.

/// The committed schema at `path` is `generated`, which is then returned parsed.
fn committed(path: &str, generated: &str, regenerate: &str) -> serde_json::Value {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is stale: run `{regenerate}`"
    );
    serde_json::from_str(generated).expect("schema is JSON")
}

/// Every one of `fields` is in the schema's top-level `required` list.
fn assert_required(schema: &serde_json::Value, fields: &[&str]) {
    let required = schema["required"].as_array().expect("a required list");
    for field in fields {
        assert!(required.iter().any(|r| r == field), "{field} is required");
    }
}

#[test]
fn committed_job_schema_matches_the_code() {
    let schema = committed(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/job.schema.json"),
        &mensajero::job::json_schema_text(),
        "cargo run -- schema > docs/job.schema.json",
    );
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown top-level fields are rejected"
    );
    assert_required(&schema, &["id", "channel", "to", "message"]);
}

#[test]
fn committed_inbound_schema_matches_the_code() {
    let schema = committed(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/inbound.schema.json"),
        &mensajero::inbound::json_schema_text(),
        "cargo run -- schema --inbound > docs/inbound.schema.json",
    );
    assert_required(
        &schema,
        &[
            "event_id",
            "channel",
            "provider",
            "provider_message_id",
            "received_at",
            "type",
            "raw",
        ],
    );
}
