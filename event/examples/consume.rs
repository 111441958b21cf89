//! Reads hookgate events from a Kafka topic and prints them: the Rust counterpart of
//! `docs/examples/python/consume.py`, with `hookgate-event` decoding both modes.
//!
//! ```text
//! cargo run -p hookgate-event --example consume -- --brokers HOST:PORT --topic T \
//!     [--from-beginning] [--group G] [--github-secret S] [--max N]
//! ```
//!
//! Without `--group` it assigns every partition itself and commits nothing, so no one's
//! offsets move. `--github-secret` re-verifies `X-Hub-Signature-256` on binary-mode events:
//! there the record value is the body exactly as the sender signed it.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Parser;
use hmac::{Hmac, KeyInit, Mac};
use hookgate_event::{decode, Event, EventData, Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sha2::Sha256;

#[derive(Parser)]
struct Args {
    /// Bootstrap servers, HOST:PORT[,...].
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// Start at the oldest record instead of the newest.
    #[arg(long)]
    from_beginning: bool,
    /// Join this consumer group and commit offsets.
    #[arg(long)]
    group: Option<String>,
    /// Re-verify the GitHub signature of binary-mode events with this secret.
    #[arg(long)]
    github_secret: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    max: Option<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set(
            "group.id",
            args.group.as_deref().unwrap_or("hookgate-example-unused"),
        )
        .set("enable.auto.commit", args.group.is_some().to_string())
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        )
        .create()?;
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic])?;
    } else {
        let metadata = consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
        let start = if args.from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        let mut partitions = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            partitions.add_partition_offset(&args.topic, partition.id(), start)?;
        }
        consumer.assign(&partitions)?;
    }

    let mut shown = 0;
    while args.max.is_none_or(|max| shown < max) {
        let msg = match consumer.poll(Duration::from_secs(1)) {
            None => continue,
            Some(Err(e)) => {
                eprintln!("kafka: {e}");
                continue;
            }
            Some(Ok(msg)) => msg,
        };
        let headers: Vec<(&str, &[u8])> = msg
            .headers()
            .map(|hs| hs.iter().filter_map(|h| Some((h.key, h.value?))).collect())
            .unwrap_or_default();
        let record = Record {
            headers: &headers,
            value: msg.payload(),
        };
        match decode(record) {
            Ok(event) => {
                print!("{}", describe(&event, args.github_secret.as_deref()));
                shown += 1;
            }
            // Not an event, or a malformed one: report it and go on.
            Err(e) => eprintln!(
                "skipped {}/{}@{}: {e}",
                msg.topic(),
                msg.partition(),
                msg.offset()
            ),
        }
    }
    Ok(())
}

/// The lines printed for one event.
fn describe(event: &Event, github_secret: Option<&str>) -> String {
    let mut out = String::new();
    match &event.data {
        // Structured mode: the `data` object of docs/events.md#structured-mode.
        EventData::Json(data) => {
            let _ = writeln!(
                out,
                "{}  {}  {}  (structured)",
                event.event_type, event.source, event.id
            );
            if event.dataschema.as_deref() == Some(hookgate_event::POLL_SCHEMA) {
                // A poller's event: the response it polled.
                let _ = writeln!(
                    out,
                    "  polled {}  status={}  bodyencoding={}",
                    text(&data["uri"]),
                    data["status"],
                    text(&data["bodyencoding"])
                );
            } else {
                let _ = writeln!(
                    out,
                    "  {} {}  bodyencoding={}",
                    text(&data["method"]),
                    text(&data["path"]),
                    text(&data["bodyencoding"])
                );
            }
            let _ = writeln!(out, "  body: {}", data["body"]);
        }
        // Binary mode: the body byte for byte, and the sender's headers.
        EventData::Binary { body, headers } => {
            let _ = writeln!(
                out,
                "{}  {}  {}  (binary)",
                event.event_type, event.source, event.id
            );
            let _ = writeln!(
                out,
                "  {} {}  content-type={}",
                event.extension("httpmethod").unwrap_or("-"),
                event.extension("httppath").unwrap_or("-"),
                event.datacontenttype.as_deref().unwrap_or("-")
            );
            let _ = writeln!(out, "  body: {}", show_bytes(body));
            if let Some(secret) = github_secret {
                let signature = headers
                    .get("x-hub-signature-256")
                    .and_then(|values| values.first());
                let valid = github_signature_ok(body, signature.map(|s| s.as_ref()), secret);
                let verdict = if valid { "valid" } else { "INVALID" };
                let _ = writeln!(out, "  github signature: {verdict}");
            }
        }
    }
    out
}

fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// The body as text when it is UTF-8, otherwise its length and first bytes in hex.
fn show_bytes(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => format!("{text:?}"),
        Err(_) => {
            let head: String = body.iter().take(32).map(|b| format!("{b:02x}")).collect();
            let more = if body.len() > 32 { "…" } else { "" };
            format!("{} bytes: {head}{more}", body.len())
        }
    }
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the body, checked in
/// constant time.
fn github_signature_ok(body: &[u8], signature: Option<&str>, secret: &str) -> bool {
    let Some(expected) = signature
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(from_hex)
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

// The loader the contract tests use; this example reads only part of what it offers.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret the binary samples in `samples/` were signed with.
    const SAMPLE_SECRET: &str = "sample-secret";

    fn recorded_events() -> Vec<(String, Event)> {
        support::samples()
            .into_iter()
            .map(|sample| {
                let record = Record {
                    headers: &sample.borrowed_headers(),
                    value: Some(&sample.value),
                };
                (sample.name.clone(), decode(record).unwrap())
            })
            .collect()
    }

    #[test]
    fn prints_structured_and_binary_recorded_events() {
        let events = recorded_events();
        let (_, json) = events
            .iter()
            .find(|(name, _)| name == "structured-json.json")
            .unwrap();
        let shown = describe(json, None);
        let first = shown.lines().next().unwrap();
        assert!(
            first.ends_with(&format!("{}  (structured)", json.id)),
            "{shown}"
        );
        assert!(shown.contains("bodyencoding=json"), "{shown}");

        let (_, poll) = events
            .iter()
            .find(|(name, _)| name == "structured-poll.json")
            .unwrap();
        let shown = describe(poll, None);
        assert!(
            shown.contains("polled [redacted]/api/stock/m8-bolts  status=200  bodyencoding=json"),
            "{shown}"
        );

        let binary: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e.data, EventData::Binary { .. }))
            .collect();
        assert!(!binary.is_empty());
        for (name, event) in binary {
            let shown = describe(event, Some(SAMPLE_SECRET));
            assert!(shown.contains("(binary)"), "{name}: {shown}");
            assert!(
                shown.ends_with("github signature: valid\n"),
                "{name}: {shown}"
            );
            let forged = describe(event, Some("another-secret"));
            assert!(
                forged.ends_with("github signature: INVALID\n"),
                "{name}: {forged}"
            );
        }
    }

    #[test]
    fn a_changed_body_fails_the_signature() {
        let sig = "sha256=30fd073bf929fdd63d6eceeb7b8461c0ee01ee67a4c5337076ac3f76867572ed";
        let (_, event) = recorded_events()
            .into_iter()
            .find(|(name, _)| name == "binary-json.json")
            .unwrap();
        let EventData::Binary { body, .. } = &event.data else {
            panic!("binary sample")
        };
        assert!(github_signature_ok(body, Some(sig), SAMPLE_SECRET));
        let mut changed = body.clone();
        changed.push(b' ');
        assert!(!github_signature_ok(&changed, Some(sig), SAMPLE_SECRET));
        assert!(!github_signature_ok(body, Some("sha256=zz"), SAMPLE_SECRET));
        assert!(!github_signature_ok(body, None, SAMPLE_SECRET));
    }

    #[test]
    fn non_utf8_bodies_print_as_hex() {
        assert_eq!(show_bytes(b"{\"a\":1}"), "\"{\\\"a\\\":1}\"");
        assert_eq!(show_bytes(&[0xff, 0x00]), "2 bytes: ff00");
        assert!(show_bytes(&[0xff; 40]).ends_with('…'));
    }
}
