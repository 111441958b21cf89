//! Structured mode: the record value is the whole event as one JSON object.
//!
//! Webhook events, pollers' events, schedules' ticks and the records of refused requests
//! are written here.
//! The writer makes the value in a single pass into one buffer. The body arrives already as
//! JSON text (the received bytes for a JSON body, or what a normalizer made), so it is
//! spliced in without being parsed or re-serialized.

use crate::{
    write_json_str, Attributes, BodyEncoding, PollResponse, RefusedRequest, ScheduleTick,
    WebhookRequest, DATA_CONTENT_TYPE,
};

/// Bytes the envelope adds around the body, besides the strings it quotes. An estimate for
/// sizing the output buffer, not a bound.
const ENVELOPE_OVERHEAD: usize = 512;

/// Writes the structured-mode record value of a webhook event.
///
/// `body_json` must be one valid JSON value (the caller validated or produced it); it is
/// copied into the output as is.
pub fn encode_webhook(
    attrs: &Attributes<'_>,
    request: &WebhookRequest<'_>,
    body_json: &[u8],
    encoding: BodyEncoding,
    out: &mut Vec<u8>,
) {
    out.reserve(body_json.len() + ENVELOPE_OVERHEAD);
    write_attributes(attrs, out);
    out.extend_from_slice(b",\"data\":{\"method\":");
    write_json_str(out, request.method);
    write_str(out, "path", request.path);
    write_key(out, "query");
    request.query.write_json(out);
    write_key(out, "headers");
    request.headers.write_json(out);
    write_body(body_json, encoding, out);
}

/// Writes the structured-mode record value of a poller's event: `data` is
/// `{uri, status, headers, body, bodyencoding}` (dataschema [`crate::POLL_SCHEMA`]).
///
/// `body_json` must be one valid JSON value, or empty for `null`.
pub fn encode_poll(
    attrs: &Attributes<'_>,
    response: &PollResponse<'_>,
    body_json: &[u8],
    encoding: BodyEncoding,
    out: &mut Vec<u8>,
) {
    out.reserve(body_json.len() + ENVELOPE_OVERHEAD);
    write_attributes(attrs, out);
    out.extend_from_slice(b",\"data\":{\"uri\":");
    write_json_str(out, response.uri);
    write_key(out, "status");
    out.extend_from_slice(response.status.to_string().as_bytes());
    write_key(out, "headers");
    response.headers.write_json(out);
    write_body(body_json, encoding, out);
}

/// Writes the structured-mode record value of a schedule's tick: `data` is
/// `{scheduled, cron, timezone}` (dataschema [`crate::SCHEDULE_SCHEMA`]).
pub fn encode_schedule(attrs: &Attributes<'_>, tick: &ScheduleTick<'_>, out: &mut Vec<u8>) {
    out.reserve(ENVELOPE_OVERHEAD);
    write_attributes(attrs, out);
    out.extend_from_slice(b",\"data\":{\"scheduled\":");
    write_json_str(out, tick.scheduled);
    write_str(out, "cron", tick.cron);
    write_str(out, "timezone", tick.timezone);
    out.extend_from_slice(b"}}");
}

/// Writes the record value of a refused request (dataschema [`crate::REJECTION_SCHEMA`]):
/// `data` is `{status, reason, detail, method, path, query, headers, client, bodysize,
/// bodysample, bodysampleencoding}`. The sample is text when it is UTF-8 (a cut
/// character at its end is dropped), else base64.
pub fn encode_rejection(attrs: &Attributes<'_>, refused: &RefusedRequest<'_>, out: &mut Vec<u8>) {
    write_attributes(attrs, out);
    out.extend_from_slice(b",\"data\":{\"status\":");
    out.extend_from_slice(refused.status.to_string().as_bytes());
    write_str(out, "reason", refused.reason);
    write_str(out, "detail", refused.detail);
    write_str(out, "method", refused.method);
    write_str(out, "path", refused.path);
    write_key(out, "query");
    refused.query.write_json(out);
    write_key(out, "headers");
    refused.headers.write_json(out);
    write_key(out, "client");
    match refused.client {
        Some(c) => write_json_str(out, c),
        None => out.extend_from_slice(b"null"),
    }
    write_key(out, "bodysize");
    match refused.body_size {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    let sample = refused
        .body_sample
        .map(|b| &b[..b.len().min(crate::REJECTION_SAMPLE_BYTES)]);
    match sample.map(sample_text) {
        Some((text, encoding)) => {
            out.extend_from_slice(b",\"bodysample\":");
            write_json_str(out, &text);
            out.extend_from_slice(b",\"bodysampleencoding\":\"");
            out.extend_from_slice(encoding.as_bytes());
            out.extend_from_slice(b"\"}}");
        }
        None => out.extend_from_slice(b",\"bodysample\":null,\"bodysampleencoding\":null}}"),
    }
}

/// A body sample as text: UTF-8 when it is (its last character may have been cut by the
/// sample's end, and is then left out), base64 otherwise.
fn sample_text(sample: &[u8]) -> (std::borrow::Cow<'_, str>, &'static str) {
    match std::str::from_utf8(sample) {
        Ok(text) => (text.into(), "utf8"),
        Err(e) if e.error_len().is_none() && sample.len() - e.valid_up_to() < 4 => {
            let text = std::str::from_utf8(&sample[..e.valid_up_to()]).expect("valid up to");
            (text.into(), "utf8")
        }
        Err(_) => (crate::decode::base64_encode(sample).into(), "base64"),
    }
}

/// Writes `,"body":…,"bodyencoding":"…"}}`: the end of every event.
fn write_body(body_json: &[u8], encoding: BodyEncoding, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"body\":");
    if body_json.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(body_json);
    }
    out.extend_from_slice(b",\"bodyencoding\":\"");
    out.extend_from_slice(encoding.as_str().as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// Writes `{"specversion":…,…` up to, not including, `"data"`.
fn write_attributes(attrs: &Attributes<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"specversion\":\"1.0\"");
    write_str(out, "id", attrs.id);
    write_str(out, "source", attrs.source);
    write_str(out, "type", attrs.event_type);
    write_str(out, "time", attrs.time);
    write_str(out, "datacontenttype", DATA_CONTENT_TYPE);
    write_str(out, "dataschema", attrs.dataschema);
    write_str(out, "hook", attrs.hook);
    write_str(out, "authscheme", attrs.authscheme);
    for (name, value) in [
        ("signed", attrs.signed),
        ("deliveryid", attrs.deliveryid),
        ("traceparent", attrs.traceparent),
        ("respond", attrs.respond),
    ] {
        if let Some(value) = value {
            write_str(out, name, value);
        }
    }
}

/// Writes `,"key":` (keys are fixed names that need no escaping).
fn write_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes `,"key":"value"`, the value escaped.
fn write_str(out: &mut Vec<u8>, key: &str, value: &str) {
    write_key(out, key);
    write_json_str(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fields, WEBHOOK_SCHEMA};
    use serde_json::json;

    #[test]
    fn writes_a_complete_event_with_the_body_spliced() {
        let mut query = Fields::new();
        query.push("a", "1");
        let mut headers = Fields::new();
        headers.push("content-type", "application/json");
        let attrs = Attributes {
            id: "0190-id",
            source: "/hooks/orders",
            event_type: "order.created",
            time: "2026-11-26T05:00:00Z",
            dataschema: WEBHOOK_SCHEMA,
            hook: "orders",
            authscheme: "none",
            signed: None,
            deliveryid: Some("d-1"),
            traceparent: None,
            respond: None,
        };
        let request = WebhookRequest {
            method: "POST",
            path: "/hooks/orders",
            query: &query,
            headers: &headers,
        };
        let mut out = Vec::new();
        encode_webhook(
            &attrs,
            &request,
            br#"{"n": 1.50}"#,
            BodyEncoding::Json,
            &mut out,
        );
        // The body's own bytes, spacing and number formatting included, are kept.
        assert!(out.windows(11).any(|w| w == br#"{"n": 1.50}"#));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "specversion": "1.0", "id": "0190-id", "source": "/hooks/orders",
                "type": "order.created", "time": "2026-11-26T05:00:00Z",
                "datacontenttype": "application/json", "dataschema": WEBHOOK_SCHEMA,
                "hook": "orders", "authscheme": "none", "deliveryid": "d-1",
                "data": {
                    "method": "POST", "path": "/hooks/orders", "query": {"a": ["1"]},
                    "headers": {"content-type": ["application/json"]},
                    "body": {"n": 1.50}, "bodyencoding": "json"
                }
            })
        );
    }

    #[test]
    fn writes_a_poll_event() {
        let mut headers = Fields::new();
        headers.push("content-type", "application/json");
        let attrs = Attributes {
            id: "0190-id",
            source: "/pollers/stock",
            event_type: "hookgate.poll",
            time: "2026-11-26T05:00:00Z",
            dataschema: crate::POLL_SCHEMA,
            hook: "stock",
            authscheme: "poll",
            signed: None,
            deliveryid: None,
            traceparent: None,
            respond: None,
        };
        let response = PollResponse {
            uri: "https://api.example/stock?sku=1",
            status: 200,
            headers: &headers,
        };
        let mut out = Vec::new();
        encode_poll(
            &attrs,
            &response,
            br#"{"stock": 4}"#,
            BodyEncoding::Json,
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["source"], "/pollers/stock");
        assert_eq!(v["dataschema"], "urn:hookgate:poll:v1");
        assert_eq!(
            v["data"],
            json!({
                "uri": "https://api.example/stock?sku=1", "status": 200,
                "headers": {"content-type": ["application/json"]},
                "body": {"stock": 4}, "bodyencoding": "json"
            })
        );
    }

    #[test]
    fn an_empty_body_is_null() {
        let fields = Fields::new();
        let attrs = Attributes {
            id: "i",
            source: "/hooks/h",
            event_type: "t",
            time: "2026-11-26T05:00:00Z",
            dataschema: WEBHOOK_SCHEMA,
            hook: "h",
            authscheme: "none",
            signed: None,
            deliveryid: None,
            traceparent: None,
            respond: None,
        };
        let request = WebhookRequest {
            method: "GET",
            path: "/hooks/h",
            query: &fields,
            headers: &fields,
        };
        let mut out = Vec::new();
        encode_webhook(&attrs, &request, b"", BodyEncoding::Empty, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"]["body"], serde_json::Value::Null);
        assert_eq!(v["data"]["bodyencoding"], "empty");
        assert!(v.get("deliveryid").is_none());
    }

    #[test]
    fn a_rejection_keeps_a_sample_as_text_or_base64() {
        let (query, headers) = (Fields::new(), Fields::new());
        let attrs = Attributes {
            id: "01",
            source: "/hooks/h",
            event_type: crate::REJECTION_TYPE,
            time: "2026-12-06T00:00:00Z",
            dataschema: crate::REJECTION_SCHEMA,
            hook: "h",
            authscheme: "hmac",
            signed: None,
            deliveryid: None,
            traceparent: None,
            respond: None,
        };
        let encode = |sample: Option<&[u8]>| {
            let refused = RefusedRequest {
                status: 401,
                reason: "mismatch",
                detail: "signature mismatch",
                method: "POST",
                path: "/hooks/h",
                query: &query,
                headers: &headers,
                client: None,
                body_size: sample.map(|s| s.len() as u64),
                body_sample: sample,
            };
            let mut out = Vec::new();
            encode_rejection(&attrs, &refused, &mut out);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()["data"].clone()
        };
        // Text, cut at 4 KiB in the middle of a two-byte character: the half is left out.
        let mut text = "x".repeat(crate::REJECTION_SAMPLE_BYTES - 1).into_bytes();
        text.extend_from_slice("é and more".as_bytes());
        let data = encode(Some(&text));
        assert_eq!(data["bodysampleencoding"], "utf8");
        assert_eq!(
            data["bodysample"].as_str().unwrap().len(),
            crate::REJECTION_SAMPLE_BYTES - 1
        );
        assert_eq!(data["bodysize"], text.len());
        let data = encode(Some(&[0xff, 0x00, 0x41]));
        assert_eq!(data["bodysampleencoding"], "base64");
        assert_eq!(data["bodysample"], "/wBB");
        let data = encode(None);
        assert_eq!(data["bodysample"], json!(null));
        assert_eq!(data["bodysampleencoding"], json!(null));
        assert_eq!(data["client"], json!(null));
    }
}
