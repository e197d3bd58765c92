//! Inbound messages end to end (SPEC §10): customers' messages posted to the webhook listener
//! become events on the inbound exchange, once, carrying the job they answer; the 24-hour
//! window holds free-form messages back or sends the job's fallback template; Meta webhooks
//! are routed by `phone_number_id`; the peer corpus of 180 real Meta webhook bodies, read at
//! run time from `../shared/peer/meta-webhooks/`, goes through the whole path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use mensajero::config::{MockOptions, ProviderKind, ScriptRule, Secret};
use mensajero::gateways::webhook::{self as webhooks, Inbound, Receipt};
use mensajero::inbound::{Content, InboundEvent, InboundType, Reaction, Reply, ReplyKind, Text};
use mensajero::outcome::{Outcome, Status};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, HOOK_SECRET, TestApp, header, unique_prefix};

const TO: &str = "+5491126032641";
const META_SENDER: &str = "106540352242922";

/// A worker with every gateway channel on a fresh mock gateway, plus `extra` TOML.
async fn app(
    test: &str,
    options: MockOptions,
    extra: &str,
) -> (
    TestApp,
    mensajero::gateways::simulator::MockCore,
    tokio_util::sync::CancellationToken,
) {
    let (core, url, stop) = common::start_gateway(options).await;
    let prefix = unique_prefix(test);
    let extra = extra.replace("{gateway}", &url);
    let config = common::config(
        &prefix,
        &format!("{extra}\n{}", common::gateway_channels(&url)),
        common::GATEWAY_ENV,
    );
    (TestApp::spawn(config).await, core, stop)
}

/// POST `body` to `channel`'s webhook, signed the way `provider` signs.
async fn post(app: &TestApp, channel: &str, provider: ProviderKind, body: &[u8]) -> StatusCode {
    let url = app.url(&format!("/webhooks/{channel}"));
    let headers = webhooks::sign(
        provider,
        &Secret::new(HOOK_SECRET),
        "POST",
        &url,
        body,
        Utc::now(),
    );
    let mut request = reqwest::Client::new().post(&url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.expect("listener answers").status()
}

/// Send a job and return its `sent` outcome (after its `queued`).
async fn send(app: &TestApp, job: Value) -> Outcome {
    let id = job["id"].as_str().expect("id").to_owned();
    app.enqueue(&job).await;
    let queued = app.next_outcome().await;
    assert_eq!(
        (queued.job_id.as_str(), queued.status),
        (id.as_str(), Status::Queued)
    );
    let sent = app.next_outcome().await;
    assert_eq!(
        (sent.job_id.as_str(), sent.status),
        (id.as_str(), Status::Sent),
        "{sent:#?}"
    );
    sent
}

fn text_job(id: &str, channel: &str) -> Value {
    json!({
        "id": id, "channel": channel, "to": TO,
        "message": {"type": "interactive", "interactive": {
            "type": "button",
            "body": {"text": "¿Confirmás la entrega del pedido #1847?"},
            "action": {"buttons": [
                {"type": "reply", "reply": {"id": "yes", "title": "Sí"}},
                {"type": "reply", "reply": {"id": "no", "title": "No"}}
            ]}
        }},
        "metadata": {"order": 1847}
    })
}

fn customer_message(id: &str, content: Content, context_id: Option<&str>) -> Inbound {
    Inbound {
        provider_message_id: id.to_owned(),
        from: Some(TO.to_owned()),
        user_id: None,
        profile_name: Some("Ana".to_owned()),
        timestamp: Some(Utc::now()),
        content,
        context_id: context_id.map(str::to_owned),
        sender: None,
        raw: Value::Null,
    }
}

fn metadata_1847() -> Option<serde_json::Map<String, Value>> {
    json!({"order": 1847}).as_object().cloned()
}

/// The Meta button answer to a job's message, and a reaction to it, arrive with the job's id,
/// key and metadata; a quote of a message mensajero never sent keeps its id without a job; a
/// repeat of the webhook publishes nothing.
#[tokio::test]
async fn meta_replies_and_reactions_carry_their_job() {
    let (app, _core, _stop) = app("in-meta-reply", MockOptions::default(), "").await;
    let sent = send(&app, text_job("ord-1847", "meta-mx")).await;
    let wamid = sent.provider_message_id.expect("wamid");

    let answer = customer_message(
        "wamid.answer-1",
        Content::Reply(Reply {
            kind: ReplyKind::Button,
            id: Some("yes".into()),
            title: Some("Sí".into()),
            description: None,
            payload: None,
        }),
        Some(&wamid),
    );
    let body = webhooks::render_inbound(ProviderKind::Meta, &answer).expect("meta renders");
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, &body).await,
        StatusCode::OK
    );
    let event = &app.inbound_events(1).await[0];
    assert_eq!(event.routing_key(), "reply.meta-mx");
    assert_eq!(event.from.as_deref(), Some(TO));
    assert_eq!(event.profile_name.as_deref(), Some("Ana"));
    assert_eq!(event.provider, "meta");
    assert_eq!(
        event.event_id,
        mensajero::inbound::event_id("meta", "wamid.answer-1")
    );
    let context = event.context.as_ref().expect("context");
    assert_eq!(context.message_id, wamid);
    assert_eq!(context.job_id.as_deref(), Some("ord-1847"));
    assert_eq!(context.idempotency_key.as_deref(), Some("ord-1847"));
    assert_eq!(context.metadata, metadata_1847());
    assert_eq!(event.raw["interactive"]["button_reply"]["id"], "yes");

    // Meta retries: the same webhook again publishes nothing.
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, &body).await,
        StatusCode::OK
    );

    let reaction = customer_message(
        "wamid.reaction-1",
        Content::Reaction(Reaction {
            message_id: wamid.clone(),
            emoji: Some("👍".into()),
        }),
        Some(&wamid),
    );
    let body = webhooks::render_inbound(ProviderKind::Meta, &reaction).expect("meta renders");
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, &body).await,
        StatusCode::OK
    );
    let event = &app.inbound_events(1).await[0];
    assert_eq!(
        event.kind,
        InboundType::Reaction,
        "the repeat published nothing"
    );
    let context = event.context.as_ref().expect("context");
    assert_eq!(context.job_id.as_deref(), Some("ord-1847"));
    assert_eq!(context.metadata, metadata_1847());

    let stranger = customer_message(
        "wamid.quote-1",
        Content::Text(Text {
            body: "¿y esto?".into(),
        }),
        Some("wamid.not-ours"),
    );
    let body = webhooks::render_inbound(ProviderKind::Meta, &stranger).expect("meta renders");
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, &body).await,
        StatusCode::OK
    );
    let event = &app.inbound_events(1).await[0];
    let context = event.context.as_ref().expect("context");
    assert_eq!(context.message_id, "wamid.not-ours");
    assert_eq!(
        (context.job_id.as_ref(), context.metadata.as_ref()),
        (None, None)
    );
    assert!(
        app.try_next_inbound(Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        app.try_next_outcome(Duration::from_millis(100))
            .await
            .is_none()
    );
}

/// Every other gateway, as far as its documentation goes: Wazzup's quote of a sent message
/// carries that job; Waspy's and seven.io's texts arrive as `text` (neither documents a reply
/// context); Whaapy's `message.received` arrives as `unsupported` with its body in `raw`.
#[tokio::test]
async fn every_gateway_posts_what_its_documentation_allows() {
    let (app, _core, _stop) = app("in-gateways", MockOptions::default(), "").await;
    let sent = send(&app, text_job("wz-1847", "wazzup-ru")).await;
    let wazzup_id = sent.provider_message_id.expect("wazzup message id");
    let cases: [(&str, ProviderKind, Inbound, InboundType, Option<&str>); 4] = [
        (
            "wazzup-ru",
            ProviderKind::Wazzup,
            customer_message(
                "wz-in-1",
                Content::Text(Text { body: "Sí".into() }),
                Some(&wazzup_id),
            ),
            InboundType::Text,
            Some("wz-1847"),
        ),
        (
            "waspy-ar",
            ProviderKind::Waspy,
            customer_message("wp-in-1", Content::Text(Text { body: "Sí".into() }), None),
            InboundType::Text,
            None,
        ),
        (
            "seven-de",
            ProviderKind::Seven,
            customer_message(
                "ignored: seven.io posts no id",
                Content::Text(Text { body: "Sí".into() }),
                None,
            ),
            InboundType::Text,
            None,
        ),
        (
            "whaapy-mx",
            ProviderKind::Whaapy,
            customer_message("wh-in-1", Content::Text(Text { body: "Sí".into() }), None),
            InboundType::Unsupported,
            None,
        ),
    ];
    for (channel, provider, message, kind, job) in cases {
        let body = webhooks::render_inbound(provider, &message).expect("renders inbound");
        assert_eq!(
            post(&app, channel, provider, &body).await,
            StatusCode::OK,
            "{channel}"
        );
        let event = &app.inbound_events(1).await[0];
        assert_eq!(
            (event.channel.as_str(), event.kind),
            (channel, kind),
            "{event:#?}"
        );
        assert!(event.raw.is_object(), "{channel}: raw kept");
        if kind == InboundType::Text {
            assert_eq!(event.from.as_deref(), Some(TO), "{channel}");
            assert_eq!(event.content, Content::Text(Text { body: "Sí".into() }));
        }
        assert_eq!(
            event.context.as_ref().and_then(|c| c.job_id.as_deref()),
            job,
            "{channel}"
        );
        if job.is_some() {
            assert_eq!(event.context.as_ref().unwrap().metadata, metadata_1847());
        }
        // The gateway's retry publishes nothing new.
        assert_eq!(post(&app, channel, provider, &body).await, StatusCode::OK);
    }
    assert!(
        app.try_next_inbound(Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(app.settled_queue_len(&app.topology.dead_queue, 0).await, 0);
}

/// Two Meta numbers on one app callback URL: every status and message goes to the channel
/// whose sender its `phone_number_id` is, whichever channel's URL was called.
#[tokio::test]
async fn two_meta_channels_share_one_callback_url() {
    let extra = r#"
[channels.meta-b]
provider = "meta"
sender = "200000000000002"
base_url = "{gateway}"
api_key_env = "T_KEY"
webhook_secret_env = "T_HOOK"
timeout = "2s"
"#;
    let (app, _core, _stop) = app("in-meta-shared", MockOptions::default(), extra).await;
    let a = send(&app, text_job("job-a", "meta-mx")).await;
    let b = send(&app, text_job("job-b", "meta-b")).await;
    let (id_a, id_b) = (
        a.provider_message_id.unwrap(),
        b.provider_message_id.unwrap(),
    );
    let change = |number: &str, key: &str, item: Value| {
        json!({"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": number, "phone_number_id": number},
            key: [item]}})
    };
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [
        change(META_SENDER, "statuses", json!({"id": id_a, "status": "delivered", "timestamp": "1750263780", "recipient_id": "5491126032641"})),
        change("200000000000002", "statuses", json!({"id": id_b, "status": "delivered", "timestamp": "1750263780", "recipient_id": "5491126032641"})),
        change("200000000000002", "messages", json!({"from": "5491126032641", "id": "wamid.to-b", "timestamp": "1750263790", "type": "text", "text": {"body": "hola b"}})),
    ]}]});
    // Posted to the first channel's URL, authenticated with its secret.
    let body = body.to_string();
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, body.as_bytes()).await,
        StatusCode::OK
    );
    let mut delivered: Vec<(String, String)> = app
        .outcomes(2)
        .await
        .into_iter()
        .map(|o| (o.channel, o.job_id))
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            ("meta-b".into(), "job-b".into()),
            ("meta-mx".into(), "job-a".into())
        ]
    );
    let event = &app.inbound_events(1).await[0];
    assert_eq!(event.channel, "meta-b");
    assert_eq!(event.routing_key(), "text.meta-b");
}

/// One malformed status no longer spoils the POST: its valid neighbour is applied, and the
/// body is dead-lettered `invalid_receipt` naming the bad item.
#[tokio::test]
async fn a_malformed_status_dead_letters_only_itself() {
    let (app, _core, _stop) = app("in-meta-partial", MockOptions::default(), "").await;
    let sent = send(&app, text_job("job-p", "meta-mx")).await;
    let id = sent.provider_message_id.unwrap();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
    "statuses": [
        {"status": "delivered", "timestamp": "1750263780"},
        {"id": id, "status": "delivered", "timestamp": "1750263780"}
    ]}}]}]});
    let body = body.to_string();
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, body.as_bytes()).await,
        StatusCode::OK
    );
    let delivered = app.next_outcome().await;
    assert_eq!(
        (delivered.job_id.as_str(), delivered.status),
        ("job-p", Status::Delivered)
    );
    let (dead, headers) = app.next_dead_letter().await;
    assert_eq!(dead, body.as_bytes());
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("invalid_receipt")
    );
    let error = header(&headers, "x-mensajero-error").unwrap_or_default();
    assert!(error.contains("statuses[0].id"), "{error}");
}

/// `receipts.unknown = "count"`: a receipt of a message that is not ours (another tool on the
/// same number) is counted and dropped once its retry window is over, not dead-lettered.
#[tokio::test]
async fn unknown_receipts_can_be_counted_instead_of_dead_lettered() {
    let extra = "[receipts]\nunknown_retry = \"1s\"\nunknown = \"count\"\n";
    let (app, _core, _stop) = app("in-unknown-count", MockOptions::default(), extra).await;
    let receipt = Receipt {
        provider_message_id: "wamid.someone-elses".into(),
        status: Status::Delivered,
        job_id: None,
        error: None,
        occurred_at: Some(Utc::now()),
        sender: None,
    };
    let body = webhooks::render(ProviderKind::Meta, &receipt);
    assert_eq!(
        post(&app, "meta-mx", ProviderKind::Meta, &body).await,
        StatusCode::OK
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let series = "mensajero_receipts_total{provider=\"meta\",result=\"unknown_dropped\"} 1";
    loop {
        let metrics = reqwest::get(app.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(series) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.settled_queue_len(&app.topology.dead_queue, 0).await, 0);
}

/// A channel whose gateway refuses free-form messages outside the window.
fn window_channel(name: &str, sender: &str, window: &str) -> String {
    format!(
        r#"
[channels.{name}]
provider = "meta"
sender = "{sender}"
base_url = "{{gateway}}"
api_key_env = "T_KEY"
webhook_secret_env = "T_HOOK"
timeout = "2s"
window = "{window}"
"#
    )
}

fn fallback_job(id: &str, channel: &str) -> Value {
    let mut job = text_job(id, channel);
    job["message"] = json!({"type": "text", "text": {"body": "Tu pedido #1847 salió hoy"}});
    job["fallback"] = json!({"type": "template", "template": {
        "name": "order_shipped", "language": {"code": "es_AR"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "1847"}]}]
    }});
    job
}

/// Under `track`, a free-form job to a customer who never wrote goes out as its fallback
/// template after the gateway's window-expired answer: one refused send, one template send.
#[tokio::test]
async fn track_sends_the_fallback_after_the_gateways_window_answer() {
    let options = MockOptions {
        script: vec![ScriptRule {
            path: None,
            to: None,
            status: 400,
            code: Some("131047".into()),
            times: Some(1),
            retry_after: None,
        }],
        ..MockOptions::default()
    };
    let extra = window_channel("meta-track", "300000000000003", "track");
    let (app, core, _stop) = app("in-window-track", options, &extra).await;
    let sent = send(&app, fallback_job("fb-track", "meta-track")).await;
    assert!(sent.fallback, "{sent:#?}");
    let stats = core.stats();
    assert_eq!(
        (stats.requests, stats.scripted, stats.sent),
        (2, 1, 1),
        "{stats:#?}"
    );
    app.assert_quiet(Duration::from_millis(300)).await;
}

/// Under `enforce`, the template goes at once (one gateway call); a customer who wrote an
/// hour ago gets the free-form message; without a fallback, a job outside the window fails
/// `window_expired` without calling the gateway.
#[tokio::test]
async fn enforce_follows_what_the_customer_last_wrote() {
    let extra = window_channel("meta-enforce", "400000000000004", "enforce");
    let (app, core, _stop) = app("in-window-enforce", MockOptions::default(), &extra).await;

    let sent = send(&app, fallback_job("fb-closed", "meta-enforce")).await;
    assert!(sent.fallback);
    assert_eq!(core.stats().requests, 1);

    let mut no_fallback = fallback_job("fb-none", "meta-enforce");
    no_fallback.as_object_mut().unwrap().remove("fallback");
    app.enqueue(&no_fallback).await;
    let events = app.outcomes(2).await;
    assert_eq!(events[1].status, Status::Failed);
    let error = events[1].error.as_ref().expect("error");
    assert_eq!(
        (error.class.as_str(), error.code.as_str()),
        ("window_expired", "window_expired")
    );
    assert_eq!(core.stats().requests, 1, "no gateway call");
    let (_, headers) = app.next_dead_letter().await;
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("window_expired")
    );

    // The customer writes (an hour ago, by their message's timestamp): the window is open.
    let mut wrote = customer_message(
        "wamid.wrote",
        Content::Text(Text {
            body: "hola".into(),
        }),
        None,
    );
    wrote.timestamp = Some(Utc::now() - chrono::Duration::hours(1));
    wrote.sender = Some("400000000000004".into());
    let body = webhooks::render_inbound(ProviderKind::Meta, &wrote).unwrap();
    assert_eq!(
        post(&app, "meta-enforce", ProviderKind::Meta, &body).await,
        StatusCode::OK
    );
    assert_eq!(app.inbound_events(1).await[0].channel, "meta-enforce");
    let sent = send(&app, fallback_job("fb-open", "meta-enforce")).await;
    assert!(!sent.fallback, "the free-form message went: {sent:#?}");
    assert_eq!(core.stats().requests, 2);
}

// ---------------------------------------------------------------------------------------------
// The peer corpus
// ---------------------------------------------------------------------------------------------

/// `../shared/peer/meta-webhooks/`, beside the repository.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peer/meta-webhooks")
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(corpus_dir()).expect("corpus directory") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).expect("corpus subdirectory") {
            let file = file.expect("entry").path();
            if file.extension().is_some_and(|e| e == "json") {
                files.push(file);
            }
        }
    }
    files.sort();
    files
}

/// The inbound type a Meta message item must give, read independently of the parser.
fn expected_type(item: &Value) -> InboundType {
    let kind = item["type"].as_str().unwrap_or("");
    match kind {
        "text" if item["text"]["body"].is_string() => InboundType::Text,
        "image" => InboundType::Image,
        "video" => InboundType::Video,
        "audio" => InboundType::Audio,
        "document" => InboundType::Document,
        "sticker" => InboundType::Sticker,
        // Degrees must be numbers (or numeric text): placeholders are kept as unsupported.
        "location" => {
            let degrees = |key: &str| match &item["location"][key] {
                Value::String(text) => text.parse::<f64>().is_ok(),
                other => other.is_number(),
            };
            if degrees("latitude") && degrees("longitude") {
                InboundType::Location
            } else {
                InboundType::Unsupported
            }
        }
        "contacts" => InboundType::Contacts,
        "button" => InboundType::Reply,
        "interactive" => match item["interactive"]["type"].as_str() {
            Some("button_reply" | "list_reply" | "nfm_reply") => InboundType::Reply,
            _ => InboundType::Unsupported,
        },
        "reaction" => InboundType::Reaction,
        "order" => InboundType::Order,
        "system" => InboundType::System,
        _ => InboundType::Unsupported,
    }
}

/// What a fixture holds, as the test reads it.
#[derive(Default)]
struct Fixture {
    body: Vec<u8>,
    /// Message items (their ids rewritten unique), with the type each must give.
    messages: Vec<(String, InboundType)>,
    /// Status words in `messages` changes, each needing a sent message to land on.
    statuses: Vec<String>,
}

/// Every `messages` change's `value` in a parsed body.
fn message_values(root: &mut Value) -> Vec<&mut Value> {
    let mut values = Vec::new();
    if root["object"] != "whatsapp_business_account" {
        return values;
    }
    if let Some(entries) = root["entry"].as_array_mut() {
        for entry in entries {
            if let Some(changes) = entry["changes"].as_array_mut() {
                for change in changes {
                    if change["field"] == "messages" {
                        values.push(&mut change["value"]);
                    }
                }
            }
        }
    }
    values
}

/// The whole peer corpus, posted signed to a Meta channel: every inbound message gives exactly
/// one event of its type, statuses rewritten to real sent ids become their outcomes, other
/// fields give nothing, only the invalid-JSON file is dead-lettered; posting it all again
/// publishes nothing.
#[tokio::test]
async fn the_meta_peer_corpus_end_to_end() {
    if !corpus_dir().is_dir() {
        eprintln!(
            "SKIPPED: {} is not there (../shared is beside the repository in CI)",
            corpus_dir().display()
        );
        return;
    }
    let (app, _core, _stop) = app("in-corpus", MockOptions::default(), "").await;
    let files = corpus_files();
    assert_eq!(files.len(), 180, "the corpus has 180 webhook bodies");

    let mut fixtures: BTreeMap<String, Fixture> = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut sent_jobs = 0;
    for path in &files {
        let name = path
            .strip_prefix(corpus_dir())
            .unwrap()
            .display()
            .to_string();
        let raw = std::fs::read(path).expect("fixture");
        let Ok(mut root) = serde_json::from_slice::<Value>(&raw) else {
            invalid.push(name.clone());
            fixtures.insert(
                name.clone(),
                Fixture {
                    body: raw,
                    ..Fixture::default()
                },
            );
            continue;
        };
        let mut fixture = Fixture::default();
        let mut statuses = Vec::new();
        for value in message_values(&mut root) {
            if let Some(items) = value["messages"].as_array_mut() {
                for item in items.iter_mut() {
                    // Placeholder ids (`wamid.ID`, `external_id`) repeat across fixtures.
                    let id = format!("{name}#{}", fixture.messages.len());
                    item["id"] = json!(id);
                    fixture.messages.push((id, expected_type(item)));
                }
            }
            if let Some(items) = value["statuses"].as_array_mut() {
                for item in items {
                    statuses.push(item);
                }
            }
        }
        for item in statuses {
            // Each status lands on a message of its own, sent for it.
            let job_id = format!("corpus-{sent_jobs}");
            sent_jobs += 1;
            let sent = send(&app, text_job(&job_id, "meta-mx")).await;
            item["id"] = json!(sent.provider_message_id.unwrap());
            item["biz_opaque_callback_data"] = json!(job_id);
            fixture
                .statuses
                .push(item["status"].as_str().unwrap_or("").to_owned());
        }
        fixture.body = serde_json::to_vec(&root).unwrap();
        fixtures.insert(name, fixture);
    }
    assert_eq!(invalid.len(), 1, "one fixture is not JSON: {invalid:?}");

    let mut want_inbound: BTreeMap<String, InboundType> = BTreeMap::new();
    let mut want_outcomes = 0;
    for (name, fixture) in &fixtures {
        assert_eq!(
            post(&app, "meta-mx", ProviderKind::Meta, &fixture.body).await,
            StatusCode::OK,
            "{name}"
        );
        want_inbound.extend(fixture.messages.iter().cloned());
        want_outcomes += fixture
            .statuses
            .iter()
            .map(|word| match word.as_str() {
                "delivered" | "failed" => 1,
                "read" => 2, // delivered (inferred), then read
                _ => 0,      // `sent` again, or a word mensajero does not track
            })
            .sum::<usize>();
    }
    assert!(
        want_inbound.len() >= 100,
        "{} inbound messages",
        want_inbound.len()
    );

    // Collected until all are in or none came for a while (a reply quoting a message that
    // is not ours waits about ten seconds for its record), so a shortfall shows which ones.
    let mut events = Vec::new();
    while events.len() < want_inbound.len()
        && let Some(event) = app.try_next_inbound(Duration::from_secs(20)).await
    {
        events.push(event);
    }
    if let Some(extra) = app.try_next_inbound(Duration::from_secs(1)).await {
        events.push(extra);
    }
    let got: BTreeMap<String, InboundType> = events
        .iter()
        .map(|e| (e.provider_message_id.clone(), e.kind))
        .collect();
    assert_eq!(got.len(), events.len(), "each message published once");
    assert_eq!(got, want_inbound);
    for event in &events {
        let typed: InboundEvent =
            serde_json::from_value(serde_json::to_value(event).unwrap()).unwrap();
        assert_eq!(&typed, event);
        assert_eq!(event.channel, "meta-mx");
        assert!(
            event.raw.is_object(),
            "raw item kept: {}",
            event.provider_message_id
        );
    }
    let outcomes = app.outcomes(want_outcomes).await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.status != Status::Queued && o.status != Status::Sent)
    );

    // The invalid-JSON file, and nothing else, is dead-lettered.
    let (_, headers) = app.next_dead_letter().await;
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("invalid_receipt")
    );
    assert_eq!(app.settled_queue_len(&app.topology.dead_queue, 0).await, 0);

    // Everything again: Meta's retries publish nothing new.
    for (name, fixture) in &fixtures {
        assert_eq!(
            post(&app, "meta-mx", ProviderKind::Meta, &fixture.body).await,
            StatusCode::OK,
            "{name}"
        );
    }
    let (_, headers) = app.next_dead_letter().await;
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("invalid_receipt")
    );
    assert!(app.try_next_inbound(Duration::from_secs(2)).await.is_none());
    assert!(
        app.try_next_outcome(Duration::from_millis(200))
            .await
            .is_none()
    );

    // What was counted rather than published.
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "mensajero_webhook_errors_total{provider=\"meta\",code=\"0\"}",
        "mensajero_receipt_statuses_ignored_total{provider=\"meta\",status=\"deleted\"}",
        "mensajero_receipt_statuses_ignored_total{provider=\"meta\",status=\"played\"}",
        "mensajero_inbound_total{channel=\"meta-mx\",type=\"unsupported\"}",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_default();
        assert!(
            !line.ends_with(" 0") && !line.is_empty(),
            "{series}: {line:?}"
        );
    }
}
