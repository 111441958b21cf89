//! The breaking-change guard of the event contract.
//!
//! `samples/` holds records the gateway actually produced: one per body encoding in
//! structured mode, and binary-mode ones. Every sample must still decode and validate
//! against the schema of its `dataschema`: a change that would reject what v1 consumers
//! already receive fails here. And the v1 schema itself is pinned by its hash: changing
//! it is a decision (additive changes only within v1, see docs/events.md#compatibility;
//! anything else is `urn:hookgate:webhook:v2`, with its own schema file).

use std::collections::BTreeSet;

use hookgate_event::{
    decode, BodyEncoding, EventData, Record, WEBHOOK_SCHEMA, WEBHOOK_SCHEMA_JSON,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn samples() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Standard base64, decoded here so the contract's tests need no extra crate.
fn unbase64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        buf = (buf << 6) | ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

fn record_parts(sample: &Value) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let headers = sample["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().as_bytes().to_vec(),
            )
        })
        .collect();
    let value = match sample["mode"].as_str().unwrap() {
        "structured" => serde_json::to_vec(&sample["value"]).unwrap(),
        _ => unbase64(sample["value_base64"].as_str().unwrap()),
    };
    (headers, value)
}

#[test]
fn every_recorded_sample_decodes_and_validates() {
    let schema: Value = serde_json::from_str(WEBHOOK_SCHEMA_JSON).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut encodings = BTreeSet::new();
    let mut binary = 0;
    for (name, sample) in samples() {
        let (headers, value) = record_parts(&sample);
        let borrowed: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let event = decode(Record {
            headers: &borrowed,
            value: Some(&value),
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.dataschema.as_deref(), Some(WEBHOOK_SCHEMA), "{name}");
        match &event.data {
            EventData::Json(data) => {
                let errors: Vec<String> = validator
                    .iter_errors(&sample["value"])
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
}

#[test]
fn the_v1_schema_changes_only_on_purpose() {
    let recorded = include_str!("../schema/webhook-v1.sha256").trim();
    let digest: String = Sha256::digest(WEBHOOK_SCHEMA_JSON.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest, recorded,
        "schema/webhook-v1.json changed. Within urn:hookgate:webhook:v1 only additive changes \
         are allowed (docs/events.md#compatibility): if this one is, check that every recorded \
         sample still validates and record the new hash in schema/webhook-v1.sha256; if it is \
         not, publish it as urn:hookgate:webhook:v2 with its own schema file and samples."
    );
}
