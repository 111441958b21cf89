//! Binary mode: the record value is the request body exactly as received; the event's
//! attributes travel as `ce_*` record headers and the sender's headers as `http-*` ones,
//! so a consumer can re-verify a signature over the original bytes.

use crate::{Attributes, Fields, WebhookRequest, CE_HEADER_PREFIX, HTTP_HEADER_PREFIX};

/// Record header that carries the body's media type (the CloudEvents `datacontenttype`).
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// Calls `emit(name, value)` for every record header of a binary-mode webhook event.
///
/// `content_type` is the request's `Content-Type`; it becomes the record's `content-type`
/// header, as the Kafka protocol binding maps `datacontenttype`.
pub fn webhook_headers(
    attrs: &Attributes<'_>,
    request: &WebhookRequest<'_>,
    content_type: Option<&str>,
    mut emit: impl FnMut(&str, &[u8]),
) {
    let mut name = String::with_capacity(64);
    let mut ce = |attr: &str, value: &str| {
        name.clear();
        name.push_str(CE_HEADER_PREFIX);
        name.push_str(attr);
        emit(&name, value.as_bytes());
    };
    ce("specversion", crate::SPEC_VERSION);
    ce("id", attrs.id);
    ce("source", attrs.source);
    ce("type", attrs.event_type);
    ce("time", attrs.time);
    ce("dataschema", attrs.dataschema);
    ce("hook", attrs.hook);
    ce("authscheme", attrs.authscheme);
    for (attr, value) in [
        ("signed", attrs.signed),
        ("deliveryid", attrs.deliveryid),
        ("traceparent", attrs.traceparent),
        ("respond", attrs.respond),
    ] {
        if let Some(value) = value {
            ce(attr, value);
        }
    }
    ce("httpmethod", request.method);
    ce("httppath", request.path);
    if !request.query.is_empty() {
        ce("httpquery", &query_string(request.query));
    }
    if let Some(ct) = content_type {
        emit(CONTENT_TYPE_HEADER, ct.as_bytes());
    }
    for (header, values) in request.headers.iter() {
        name.clear();
        name.push_str(HTTP_HEADER_PREFIX);
        name.push_str(header);
        for value in values {
            emit(&name, value.as_bytes());
        }
    }
}

/// Serializes query fields as `a=1&b=2`, percent-encoding everything but RFC 3986's
/// unreserved characters, so the string parses back to the same fields.
pub fn query_string(query: &Fields<'_>) -> String {
    let mut out = String::new();
    for (name, values) in query.iter() {
        for value in values {
            if !out.is_empty() {
                out.push('&');
            }
            percent_encode(name, &mut out);
            out.push('=');
            percent_encode(value, &mut out);
        }
    }
    out
}

fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WEBHOOK_SCHEMA;

    #[test]
    fn lists_attributes_request_and_sender_headers() {
        let mut query = Fields::new();
        query.push("q", "a b&c");
        let mut headers = Fields::new();
        headers.push("x-hub-signature-256", "sha256=ab");
        headers.push("x-multi", "1");
        headers.push("x-multi", "2");
        let attrs = Attributes {
            id: "id-1",
            source: "/hooks/gh",
            event_type: "push",
            time: "2026-11-26T05:00:00Z",
            dataschema: WEBHOOK_SCHEMA,
            hook: "gh",
            authscheme: "hmac",
            signed: Some("body"),
            deliveryid: None,
            traceparent: None,
            respond: None,
        };
        let request = WebhookRequest {
            method: "POST",
            path: "/hooks/gh",
            query: &query,
            headers: &headers,
        };
        let mut got = Vec::new();
        webhook_headers(&attrs, &request, Some("application/json"), |k, v| {
            got.push((k.to_string(), String::from_utf8(v.to_vec()).unwrap()))
        });
        let has = |k: &str, v: &str| got.iter().any(|(a, b)| a == k && b == v);
        assert!(has("ce_specversion", "1.0"));
        assert!(has("ce_id", "id-1"));
        assert!(has("ce_signed", "body"));
        assert!(has("ce_httpquery", "q=a%20b%26c"));
        assert!(has("content-type", "application/json"));
        assert!(has("http-x-hub-signature-256", "sha256=ab"));
        assert!(has("http-x-multi", "1") && has("http-x-multi", "2"));
        assert!(!got.iter().any(|(k, _)| k == "ce_deliveryid"));
        assert!(!got.iter().any(|(k, _)| k == "ce_datacontenttype"));
    }
}
