//! The breaking-change guard of the event contract.
//!
//! `samples/` holds records the gateway actually produced: one per body encoding in
//! structured mode, and binary-mode ones; one a poller produced, one a schedule did. Every sample must still decode and validate
//! against the schema of its `dataschema`: a change that would reject what v1 consumers
//! already receive fails here. And the v1 schema itself is pinned by its hash: changing
//! it is a decision (additive changes only within v1, see docs/events.md#compatibility;
//! anything else is `urn:hookgate:webhook:v2`, with its own schema file).

mod support;

use std::collections::BTreeSet;

use hookgate_event::{
    decode, BodyEncoding, EventData, Record, POLL_SCHEMA, POLL_SCHEMA_JSON, REJECTION_SCHEMA,
    REJECTION_SCHEMA_JSON, SCHEDULE_SCHEMA, SCHEDULE_SCHEMA_JSON, WEBHOOK_SCHEMA,
    WEBHOOK_SCHEMA_JSON,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn every_recorded_sample_decodes_and_validates() {
    let validator = |text: &str| {
        let schema: Value = serde_json::from_str(text).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    };
    let (webhook, poll) = (validator(WEBHOOK_SCHEMA_JSON), validator(POLL_SCHEMA_JSON));
    let rejection = validator(REJECTION_SCHEMA_JSON);
    let schedule = validator(SCHEDULE_SCHEMA_JSON);
    let mut encodings = BTreeSet::new();
    let mut binary = 0;
    let mut polls = 0;
    let mut rejections = 0;
    let mut schedules = 0;
    for sample in support::samples() {
        let name = &sample.name;
        let event = decode(Record {
            headers: &sample.borrowed_headers(),
            value: Some(&sample.value),
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let validator = match event.dataschema.as_deref() {
            Some(WEBHOOK_SCHEMA) => &webhook,
            Some(POLL_SCHEMA) => {
                polls += 1;
                &poll
            }
            Some(schema @ (REJECTION_SCHEMA | SCHEDULE_SCHEMA)) => {
                let (validator, count) = if schema == REJECTION_SCHEMA {
                    (&rejection, &mut rejections)
                } else {
                    (&schedule, &mut schedules)
                };
                let errors: Vec<String> = validator
                    .iter_errors(&sample.json["value"])
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{name} no longer validates: {errors:?}");
                *count += 1;
                continue;
            }
            other => panic!("{name}: dataschema {other:?}"),
        };
        match &event.data {
            EventData::Json(data) => {
                let errors: Vec<String> = validator
                    .iter_errors(&sample.json["value"])
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{name} no longer validates: {errors:?}");
                let enc = data["bodyencoding"].as_str().unwrap();
                assert!(BodyEncoding::parse(enc).is_some(), "{name}: {enc}");
                assert!(name.contains(enc), "{name} holds a `{enc}` event");
                encodings.insert(enc.to_string());
            }
            EventData::Binary { body, .. } => {
                assert!(!body.is_empty(), "{name}");
                binary += 1;
            }
        }
    }
    let all: BTreeSet<String> = BodyEncoding::ALL
        .iter()
        .map(|e| e.as_str().to_string())
        .collect();
    assert_eq!(encodings, all, "a sample for every body encoding");
    assert!(binary >= 1, "binary-mode samples");
    assert!(polls >= 1, "a poller's sample");
    assert!(rejections >= 1, "a rejection record's sample");
    assert!(schedules >= 1, "a schedule's sample");
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fails unless `schema` (file `schema/{name}-v1.json`) still has the `recorded` hash.
#[track_caller]
fn assert_pinned(name: &str, schema: &str, recorded: &str) {
    assert_eq!(
        sha256_hex(schema),
        recorded.trim(),
        "schema/{name}-v1.json changed: the same rules as webhook-v1 apply (additive only \
         within urn:hookgate:{name}:v1, docs/events.md#compatibility); record the new hash in \
         schema/{name}-v1.sha256 if this change is one."
    );
}

#[test]
fn the_poll_v1_schema_changes_only_on_purpose() {
    assert_pinned(
        "poll",
        POLL_SCHEMA_JSON,
        include_str!("../schema/poll-v1.sha256"),
    );
}

#[test]
fn the_schedule_v1_schema_changes_only_on_purpose() {
    assert_pinned(
        "schedule",
        SCHEDULE_SCHEMA_JSON,
        include_str!("../schema/schedule-v1.sha256"),
    );
}

#[test]
fn the_rejection_v1_schema_changes_only_on_purpose() {
    assert_pinned(
        "rejection",
        REJECTION_SCHEMA_JSON,
        include_str!("../schema/rejection-v1.sha256"),
    );
}

#[test]
fn the_v1_schema_changes_only_on_purpose() {
    let recorded = include_str!("../schema/webhook-v1.sha256").trim();
    let digest = sha256_hex(WEBHOOK_SCHEMA_JSON);
    assert_eq!(
        digest, recorded,
        "schema/webhook-v1.json changed. Within urn:hookgate:webhook:v1 only additive changes \
         are allowed (docs/events.md#compatibility): if this one is, check that every recorded \
         sample still validates and record the new hash in schema/webhook-v1.sha256; if it is \
         not, publish it as urn:hookgate:webhook:v2 with its own schema file and samples."
    );
}
