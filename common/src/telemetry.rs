//! Traces, for both binaries: W3C trace context ([`TraceParent`]) and, with
//! `[telemetry] otlp_endpoint`, spans exported over OTLP/HTTP (protobuf) to a collector.
//!
//! Spans are written once they have ended, with the times the caller measured, as
//! OpenTelemetry span data handed to the SDK's batch processor: a bounded queue (spans
//! past it are dropped, never waited for) drained by one thread of its own that posts
//! batches to the collector. Nothing of this runs on a request's path but building the
//! span data. The ids are ours: the gateway puts its request span's id into the event's
//! `traceparent`, so the consumer's spans, and the `traceparent` of a flow's outbound
//! calls, continue the sender's trace.
//!
//! The endpoint is plain HTTP, as to a collector beside the process (an OpenTelemetry
//! Collector agent or sidecar, which forwards over TLS); `https` is refused with that fix.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::InstrumentationScope;
pub use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prost::Message;
use serde::Deserialize;

use crate::config::Problems;

/// `[telemetry]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector, `http://HOST:4318` (spans go to `/v1/traces` unless the
    /// URL names another path); `""` (the default): no spans are exported.
    pub otlp_endpoint: String,
    /// The share of new traces (requests without a sampled `traceparent`) exported, from
    /// 0 to 1; a request whose `traceparent` is sampled is always exported.
    pub sample_ratio: f64,
}

/// `[telemetry]` once checked: where spans go.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `host:port` of the collector.
    pub authority: String,
    /// The request target, e.g. `/v1/traces`.
    pub path: String,
    pub sample_ratio: f64,
}

impl TelemetryConfig {
    /// The settings, `None` when spans are not exported; problems go to `p`.
    pub fn build(&self, p: &mut Problems) -> Option<TelemetrySettings> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            p.push(
                "telemetry.sample_ratio",
                format!("{} is not a share", self.sample_ratio),
                "give a number from 0 to 1, like 0.1 for one trace in ten",
            );
        }
        if self.otlp_endpoint.is_empty() {
            return None;
        }
        let Some(rest) = self.otlp_endpoint.strip_prefix("http://") else {
            p.push(
                "telemetry.otlp_endpoint",
                format!("`{}` is not an http:// URL", self.otlp_endpoint),
                "send to a collector beside hookgate, like \"http://127.0.0.1:4318\", and let it forward over TLS",
            );
            return None;
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path.trim_end_matches('/') {
            "" => "/v1/traces".to_string(),
            other => other.to_string(),
        };
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if authority.contains('@') {
            // Never echo it: it holds credentials.
            p.push(
                "telemetry.otlp_endpoint",
                "the URL holds credentials",
                "send to a collector beside hookgate without credentials, like \"http://127.0.0.1:4318\"",
            );
            return None;
        }
        if !port_ok {
            p.push(
                "telemetry.otlp_endpoint",
                format!("`{}` has no host and port", self.otlp_endpoint),
                "write the collector's address with its port, like \"http://otel-collector:4318\"",
            );
            return None;
        }
        Some(TelemetrySettings {
            authority: authority.to_string(),
            path,
            sample_ratio: self.sample_ratio,
        })
    }
}

/// A W3C trace context: the trace, one span of it, and whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Reads `version-traceid-parentid-flags` (lowercase hex; a later version may append
    /// fields); an all-zero trace or span id, or version `ff`, is invalid.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || !is_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = decode(trace)?;
        let span_id: [u8; 8] = decode(span)?;
        let [flags]: [u8; 1] = decode(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace, sampled with probability `ratio`.
    pub fn root(ratio: f64) -> TraceParent {
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&random);
        // The uuid's version nibble is not random: take the sampling draw from bytes
        // that are.
        let draw = u32::from_le_bytes([random[0], random[1], random[2], random[3]]);
        TraceParent {
            trace_id,
            span_id: new_span_id(),
            sampled: f64::from(draw) < ratio * f64::from(u32::MAX) || ratio >= 1.0,
        }
    }

    /// A new span of the same trace (its parent is this one).
    pub fn child(&self) -> TraceParent {
        TraceParent {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }

    /// The trace id as 32 hex digits.
    pub fn trace_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        // Bytes 8..16 of a v4 uuid: the variant bits of byte 8 aside, random.
        let id: [u8; 8] = bytes[8..16].try_into().expect("8 bytes");
        if id != [0; 8] {
            return id;
        }
    }
}

/// A finished span, as the caller measured it.
pub struct Span {
    /// What made it: `hookgate-gateway` or `hookgate-consumer` (its instrumentation
    /// scope; both can run in one process, as in `hookgate local`).
    pub scope: &'static str,
    pub name: &'static str,
    /// The span's own context (its trace, its id, whether it is sampled).
    pub context: TraceParent,
    /// Its parent's span id; `None` for a root.
    pub parent: Option<[u8; 8]>,
    /// Whether the parent is another process's (the sender's, or the gateway's span for
    /// the consumer).
    pub remote_parent: bool,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Set when the span failed: its status is an error with this description.
    pub error: Option<String>,
}

/// The process's exporter, once installed.
struct Exporting {
    processor: BatchSpanProcessor,
    sample_ratio: f64,
}

static EXPORTING: OnceLock<Exporting> = OnceLock::new();

/// Starts exporting spans as `service` (`hookgate-gateway`, `hookgate-consumer`). Once
/// per process; later calls are ignored.
pub fn install(settings: &TelemetrySettings, service: &'static str) {
    EXPORTING.get_or_init(|| {
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", service),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let exporter = OtlpHttp {
            authority: settings.authority.clone(),
            path: settings.path.clone(),
            resource: ResourceAttributesWithSchema::from(&resource),
        };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(8192)
            .with_max_export_batch_size(512)
            .with_scheduled_delay(Duration::from_millis(500))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        tracing::info!(
            collector = %settings.authority,
            sample_ratio = settings.sample_ratio,
            "exporting traces over OTLP"
        );
        Exporting {
            processor,
            sample_ratio: settings.sample_ratio,
        }
    });
}

/// Whether spans are exported (and so worth measuring).
pub fn enabled() -> bool {
    EXPORTING.get().is_some()
}

/// The share of new traces sampled, when spans are exported.
pub fn sample_ratio() -> Option<f64> {
    EXPORTING.get().map(|e| e.sample_ratio)
}

/// Hands a finished span to the exporter, if spans are exported and it is sampled.
pub fn record(span: Span) {
    let Some(exporting) = EXPORTING.get() else {
        return;
    };
    if !span.context.sampled {
        return;
    }
    let flags = TraceFlags::SAMPLED;
    exporting.processor.on_end(SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(span.context.trace_id),
            SpanId::from_bytes(span.context.span_id),
            flags,
            false,
            TraceState::default(),
        ),
        parent_span_id: span.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: span.remote_parent,
        span_kind: span.kind,
        name: Cow::Borrowed(span.name),
        start_time: span.start,
        end_time: span.end.max(span.start),
        attributes: span.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match span.error {
            Some(description) => Status::error(description),
            None => Status::Unset,
        },
        instrumentation_scope: InstrumentationScope::builder(span.scope)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    });
}

/// Exports what is queued and stops exporting, waiting at most `timeout`: at shutdown.
pub fn flush(timeout: Duration) {
    if let Some(exporting) = EXPORTING.get() {
        let _ = exporting.processor.shutdown_with_timeout(timeout);
    }
}

/// How long one export may take, connecting included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Posts batches as OTLP/HTTP protobuf, one connection per batch (batches leave at most
/// twice a second), from the batch processor's own thread.
#[derive(Debug)]
struct OtlpHttp {
    authority: String,
    path: String,
    resource: ResourceAttributesWithSchema,
}

impl SpanExporter for OtlpHttp {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        }
        .encode_to_vec();
        self.post(&body).map_err(|e| {
            let message = format!("OTLP export to {} failed: {e}", self.authority);
            tracing::debug!("{message}");
            OTelSdkError::InternalFailure(message)
        })
    }
}

impl OtlpHttp {
    fn post(&self, body: &[u8]) -> std::io::Result<()> {
        let addr = self
            .authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the collector's name did not resolve"))?;
        let mut stream = TcpStream::connect_timeout(&addr, EXPORT_TIMEOUT)?;
        stream.set_write_timeout(Some(EXPORT_TIMEOUT))?;
        stream.set_read_timeout(Some(EXPORT_TIMEOUT))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        // The status line is all that is read: `HTTP/1.1 200 OK`.
        let mut status = [0u8; 12];
        stream.read_exact(&mut status)?;
        match &status[9..12] {
            [b'2', _, _] => Ok(()),
            code => Err(std::io::Error::other(format!(
                "the collector answered {}",
                String::from_utf8_lossy(code)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_and_written_as_the_w3c_spec_says() {
        let text = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let t = TraceParent::parse(text).unwrap();
        assert!(t.sampled);
        assert_eq!(t.header(), text);
        assert_eq!(t.trace_hex(), "0af7651916cd43dd8448eb211c80319c");
        let child = t.child();
        assert_eq!(child.trace_id, t.trace_id);
        assert_ne!(child.span_id, t.span_id);
        // A later version may append fields; version 00 may not.
        assert!(TraceParent::parse(&format!("01{}-extra", &text[2..])).is_some());
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let unsampled = TraceParent::parse(&text.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn roots_are_sampled_at_the_ratio() {
        assert!((0..100).all(|_| TraceParent::root(1.0).sampled));
        assert!((0..100).all(|_| !TraceParent::root(0.0).sampled));
        let sampled = (0..10_000)
            .filter(|_| TraceParent::root(0.25).sampled)
            .count();
        assert!((2_200..2_800).contains(&sampled), "{sampled} of 10000");
    }

    #[test]
    fn endpoints_are_checked_and_get_the_traces_path() {
        let build = |endpoint: &str, ratio: f64| {
            let mut p = Problems::default();
            let s = TelemetryConfig {
                otlp_endpoint: endpoint.into(),
                sample_ratio: ratio,
            }
            .build(&mut p);
            (s, p.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let (s, p) = build("http://collector:4318", 1.0);
        assert!(p.is_empty(), "{p:?}");
        let s = s.unwrap();
        assert_eq!(
            (s.authority.as_str(), s.path.as_str()),
            ("collector:4318", "/v1/traces")
        );
        assert_eq!(
            build("http://127.0.0.1:4318/otlp/v1/traces", 1.0)
                .0
                .unwrap()
                .path,
            "/otlp/v1/traces"
        );
        assert_eq!(build("", 1.0), (None, vec![]));
        for (endpoint, ratio, key) in [
            ("https://collector:4318", 1.0, "telemetry.otlp_endpoint"),
            ("http://collector", 1.0, "telemetry.otlp_endpoint"),
            (
                "http://user:pw@collector:4318",
                1.0,
                "telemetry.otlp_endpoint",
            ),
            ("", 1.5, "telemetry.sample_ratio"),
        ] {
            let (_, p) = build(endpoint, ratio);
            assert!(p.len() == 1 && p[0].starts_with(key), "{endpoint}: {p:?}");
        }
    }
}
