//! Reads a Kafka record of either mode back into an [`Event`].
//!
//! Used by the flow consumer, `hookgate tail` and the tests; downstream services in Rust can
//! use it too. Structured mode is recognized by its record `content-type`, binary mode by a
//! `ce_specversion` header, as the CloudEvents Kafka binding says.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{binary::CONTENT_TYPE_HEADER, Fields, CE_HEADER_PREFIX, HTTP_HEADER_PREFIX};

/// A Kafka record as the decoder needs it, independent of the Kafka client in use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// Record headers in order; a header without a value is left out.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub value: Option<&'a [u8]>,
}

/// One event, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub specversion: String,
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Extension attributes (`hook`, `authscheme`, `signed`, `deliveryid`, `traceparent`,
    /// and in binary mode `httpmethod`, `httppath`, `httpquery`).
    pub extensions: BTreeMap<String, String>,
    pub data: EventData,
}

/// The event's data, as its mode carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// Structured mode: the `data` object.
    Json(Value),
    /// Binary mode: the body exactly as received and the sender's headers.
    Binary {
        body: Vec<u8>,
        headers: Fields<'static>,
    },
}

/// Why a record is not a readable event.
#[derive(Debug)]
pub enum DecodeError {
    NotCloudEvent,
    Json(String),
    MissingAttribute(&'static str),
    NotUtf8(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotCloudEvent => f.write_str(
                "not a CloudEvent: no structured content-type and no ce_specversion header",
            ),
            DecodeError::Json(e) => write!(f, "structured event is not valid JSON: {e}"),
            DecodeError::MissingAttribute(a) => write!(f, "required attribute `{a}` is missing"),
            DecodeError::NotUtf8(h) => write!(f, "header `{h}` is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Event {
    /// An extension attribute's value.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.get(name).map(String::as_str)
    }

    /// The event in CloudEvents' JSON format; binary data appears as `data_base64`, with the
    /// sender's headers under the `httpheaders` key for display.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("specversion".into(), self.specversion.clone().into());
        obj.insert("id".into(), self.id.clone().into());
        obj.insert("source".into(), self.source.clone().into());
        obj.insert("type".into(), self.event_type.clone().into());
        for (k, v) in [
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ] {
            if let Some(v) = v {
                obj.insert(k.into(), v.clone().into());
            }
        }
        for (k, v) in &self.extensions {
            obj.insert(k.clone(), v.clone().into());
        }
        match &self.data {
            EventData::Json(v) => {
                obj.insert("data".into(), v.clone());
            }
            EventData::Binary { body, headers } => {
                obj.insert("data_base64".into(), base64_encode(body).into());
                let mut h = Map::new();
                for (name, values) in headers.iter() {
                    let values = values.iter().map(|v| Value::from(v.as_ref())).collect();
                    h.insert(name.to_string(), Value::Array(values));
                }
                obj.insert("httpheaders".into(), Value::Object(h));
            }
        }
        Value::Object(obj)
    }
}

/// Decodes a record of either mode.
pub fn decode(record: Record<'_>) -> Result<Event, DecodeError> {
    let content_type = header_str(record.headers, CONTENT_TYPE_HEADER)?;
    if content_type.is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/cloudevents+json")
    }) {
        return decode_structured(record.value.unwrap_or_default());
    }
    if header_str(record.headers, "ce_specversion")?.is_some() {
        return decode_binary(record, content_type);
    }
    Err(DecodeError::NotCloudEvent)
}

fn header_str<'a>(
    headers: &'a [(&'a str, &'a [u8])],
    name: &str,
) -> Result<Option<&'a str>, DecodeError> {
    match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some((k, v)) => std::str::from_utf8(v)
            .map(Some)
            .map_err(|_| DecodeError::NotUtf8(k.to_string())),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
struct StructuredWire {
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    #[serde(default)]
    data: Value,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

fn decode_structured(value: &[u8]) -> Result<Event, DecodeError> {
    let wire: StructuredWire =
        serde_json::from_slice(value).map_err(|e| DecodeError::Json(e.to_string()))?;
    let extensions = wire
        .rest
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    Ok(Event {
        specversion: wire
            .specversion
            .ok_or(DecodeError::MissingAttribute("specversion"))?,
        id: wire.id.ok_or(DecodeError::MissingAttribute("id"))?,
        source: wire.source.ok_or(DecodeError::MissingAttribute("source"))?,
        event_type: wire
            .event_type
            .ok_or(DecodeError::MissingAttribute("type"))?,
        time: wire.time,
        datacontenttype: wire.datacontenttype,
        dataschema: wire.dataschema,
        extensions,
        data: EventData::Json(wire.data),
    })
}

fn decode_binary(record: Record<'_>, content_type: Option<&str>) -> Result<Event, DecodeError> {
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    let mut headers = Fields::new();
    for (name, value) in record.headers {
        let lower = name.to_ascii_lowercase();
        if let Some(attr) = lower.strip_prefix(CE_HEADER_PREFIX) {
            let value =
                std::str::from_utf8(value).map_err(|_| DecodeError::NotUtf8(name.to_string()))?;
            attrs.insert(attr.to_string(), value.to_string());
        } else if let Some(header) = lower.strip_prefix(HTTP_HEADER_PREFIX) {
            headers.push(
                header.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            );
        }
    }
    let mut take = |name: &'static str| attrs.remove(name);
    let specversion = take("specversion").ok_or(DecodeError::MissingAttribute("specversion"))?;
    let id = take("id").ok_or(DecodeError::MissingAttribute("id"))?;
    let source = take("source").ok_or(DecodeError::MissingAttribute("source"))?;
    let event_type = take("type").ok_or(DecodeError::MissingAttribute("type"))?;
    let time = take("time");
    let dataschema = take("dataschema");
    Ok(Event {
        specversion,
        id,
        source,
        event_type,
        time,
        datacontenttype: content_type.map(str::to_string),
        dataschema,
        extensions: attrs,
        data: EventData::Binary {
            body: record.value.unwrap_or_default().to_vec(),
            headers,
        },
    })
}

/// Standard base64 with padding; the contract crate keeps to serde for its dependencies.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{binary, structured, Attributes, BodyEncoding, WebhookRequest, WEBHOOK_SCHEMA};

    fn attrs() -> Attributes<'static> {
        Attributes {
            id: "id-7",
            source: "/hooks/h",
            event_type: "t.x",
            time: "2026-11-26T05:00:00Z",
            dataschema: WEBHOOK_SCHEMA,
            hook: "h",
            authscheme: "none",
            signed: None,
            deliveryid: None,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            respond: None,
        }
    }

    #[test]
    fn structured_round_trip() {
        let fields = Fields::new();
        let request = WebhookRequest {
            method: "POST",
            path: "/hooks/h",
            query: &fields,
            headers: &fields,
        };
        let mut value = Vec::new();
        structured::encode_webhook(&attrs(), &request, b"[1,2]", BodyEncoding::Json, &mut value);
        let headers = [("content-type", crate::STRUCTURED_CONTENT_TYPE.as_bytes())];
        let event = decode(Record {
            headers: &headers,
            value: Some(&value),
        })
        .unwrap();
        assert_eq!(event.id, "id-7");
        assert_eq!(event.event_type, "t.x");
        assert_eq!(event.extension("hook"), Some("h"));
        assert_eq!(
            event.extension("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        let EventData::Json(data) = &event.data else {
            panic!("structured data")
        };
        assert_eq!(data["body"], serde_json::json!([1, 2]));
    }

    #[test]
    fn binary_round_trip_keeps_the_exact_bytes() {
        let mut h = Fields::new();
        h.push("x-sig", "abc");
        let q = Fields::new();
        let request = WebhookRequest {
            method: "PUT",
            path: "/hooks/h",
            query: &q,
            headers: &h,
        };
        let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
        binary::webhook_headers(&attrs(), &request, Some("text/plain"), |k, v| {
            owned.push((k.to_string(), v.to_vec()))
        });
        let headers: Vec<(&str, &[u8])> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let body = b"\x00\xffraw";
        let event = decode(Record {
            headers: &headers,
            value: Some(body),
        })
        .unwrap();
        assert_eq!(event.datacontenttype.as_deref(), Some("text/plain"));
        assert_eq!(event.extension("httpmethod"), Some("PUT"));
        let EventData::Binary { body: got, headers } = &event.data else {
            panic!("binary data")
        };
        assert_eq!(got, body);
        assert_eq!(headers.get("x-sig").unwrap()[0], "abc");
        assert_eq!(event.to_json()["data_base64"], "AP9yYXc=");
    }

    #[test]
    fn other_records_are_refused() {
        let err = decode(Record {
            headers: &[],
            value: Some(b"{}"),
        })
        .unwrap_err();
        assert!(matches!(err, DecodeError::NotCloudEvent));
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
