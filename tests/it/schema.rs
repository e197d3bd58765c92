//! `docs/job.schema.json` is generated from the code; this fails when it is stale.
//! Regenerate with `cargo run -- schema > docs/job.schema.json`.

#[test]
fn committed_job_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/job.schema.json");
    let generated = mensajero::job::json_schema_text();
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/job.schema.json is stale: run `cargo run -- schema > docs/job.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&generated).expect("schema is JSON");
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown top-level fields are rejected"
    );
    for field in ["id", "channel", "to", "message"] {
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == field),
            "{field} is required"
        );
    }
}
