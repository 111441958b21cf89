//! Structured mode: the record value is the whole event as one JSON object.
//!
//! The writer makes the value in a single pass into one buffer. The body arrives already as
//! JSON text (the received bytes for a JSON body, or what a normalizer made), so it is
//! spliced in without being parsed or re-serialized.

use crate::{
    write_json_str, Attributes, BodyEncoding, PollResponse, WebhookRequest, DATA_CONTENT_TYPE,
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
    out.extend_from_slice(b",\"path\":");
    write_json_str(out, request.path);
    out.extend_from_slice(b",\"query\":");
    request.query.write_json(out);
    out.extend_from_slice(b",\"headers\":");
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
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(response.status.to_string().as_bytes());
    out.extend_from_slice(b",\"headers\":");
    response.headers.write_json(out);
    write_body(body_json, encoding, out);
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
    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
    write_json_str(out, attrs.id);
    out.extend_from_slice(b",\"source\":");
    write_json_str(out, attrs.source);
    out.extend_from_slice(b",\"type\":");
    write_json_str(out, attrs.event_type);
    out.extend_from_slice(b",\"time\":");
    write_json_str(out, attrs.time);
    out.extend_from_slice(b",\"datacontenttype\":\"");
    out.extend_from_slice(DATA_CONTENT_TYPE.as_bytes());
    out.extend_from_slice(b"\",\"dataschema\":");
    write_json_str(out, attrs.dataschema);
    out.extend_from_slice(b",\"hook\":");
    write_json_str(out, attrs.hook);
    out.extend_from_slice(b",\"authscheme\":");
    write_json_str(out, attrs.authscheme);
    for (name, value) in [
        ("signed", attrs.signed),
        ("deliveryid", attrs.deliveryid),
        ("traceparent", attrs.traceparent),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_str(out, value);
        }
    }
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
}
