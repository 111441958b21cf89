//! A request's spans, when traces are exported (`[telemetry] otlp_endpoint`, see
//! [`hookgate_common::telemetry`]): `hookgate.request` (server), continuing the sender's
//! `traceparent` or starting a trace, and under it `auth` (from the first credential
//! check to the signature over the body), `produce` (normalizing, encoding, handing the
//! record to the producer) and `ack wait` (until the broker acknowledged it).
//!
//! The pipeline marks the phases' times as it passes them ([`mark`]); the spans are
//! written when the answer is known. The request span's context becomes the event's
//! `traceparent`, so the consumer's spans join the same trace. Without an endpoint
//! nothing here runs: [`mark`] finds no span and returns.

use std::cell::RefCell;
use std::future::Future;
use std::time::SystemTime;

use hookgate_common::telemetry::{self, KeyValue, Span, SpanKind, TraceParent};
use http::HeaderMap;

/// A point the pipeline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    AuthStart,
    AuthEnd,
    ProduceStart,
    Enqueued,
    Acked,
}

/// The open request span.
pub struct RequestSpan {
    context: TraceParent,
    /// The sender's span, when it sent a `traceparent`.
    parent: Option<[u8; 8]>,
    /// The span's `traceparent`, as the event carries it.
    header: String,
    start: SystemTime,
    marks: [Option<SystemTime>; 5],
}

tokio::task_local! {
    static OPEN: RefCell<Option<RequestSpan>>;
}

impl RequestSpan {
    /// A span for a request with these headers, when spans are exported.
    pub fn begin(headers: &HeaderMap) -> Option<RequestSpan> {
        let ratio = telemetry::sample_ratio()?;
        let sender = crate::envelope::traceparent(headers).and_then(TraceParent::parse);
        let (context, parent) = match sender {
            Some(p) => (p.child(), Some(p.span_id)),
            None => (TraceParent::root(ratio), None),
        };
        Some(RequestSpan {
            context,
            parent,
            header: context.header(),
            start: SystemTime::now(),
            marks: [None; 5],
        })
    }

    /// Runs `request` with this span open for [`mark`]; the output and the span.
    pub async fn around<F: Future>(self, request: F) -> (F::Output, RequestSpan) {
        OPEN.scope(RefCell::new(Some(self)), async move {
            let out = request.await;
            let span = OPEN
                .with(|s| s.borrow_mut().take())
                .expect("the span is open");
            (out, span)
        })
        .await
    }

    /// Writes the request span and its phases; `outcome` is the request's outcome label
    /// (as `hookgate_requests_total` names it), `event` the event id when one was made.
    pub fn end(self, hook: &str, outcome: &str, status: u16, event: Option<uuid::Uuid>) {
        let end = SystemTime::now();
        let ctx = self.context;
        let mut attributes = vec![
            KeyValue::new("hookgate.hook", hook.to_string()),
            KeyValue::new("hookgate.outcome", outcome.to_string()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        if let Some(id) = event {
            attributes.push(KeyValue::new("hookgate.event_id", id.to_string()));
        }
        let phase = |name, from: Phase, to: Phase| {
            let (Some(start), Some(end)) = (self.marks[from as usize], self.marks[to as usize])
            else {
                return;
            };
            telemetry::record(Span {
                scope: "hookgate-gateway",
                name,
                context: ctx.child(),
                parent: Some(ctx.span_id),
                remote_parent: false,
                kind: SpanKind::Internal,
                start,
                end,
                attributes: Vec::new(),
                error: None,
            });
        };
        phase("auth", Phase::AuthStart, Phase::AuthEnd);
        phase("produce", Phase::ProduceStart, Phase::Enqueued);
        phase("ack wait", Phase::Enqueued, Phase::Acked);
        telemetry::record(Span {
            scope: "hookgate-gateway",
            name: "hookgate.request",
            context: ctx,
            parent: self.parent,
            remote_parent: self.parent.is_some(),
            kind: SpanKind::Server,
            start: self.start,
            end,
            attributes,
            error: (status >= 500).then(|| outcome.to_string()),
        });
    }
}

/// Notes that the request in this task reached `phase`, if its span is open.
pub fn mark(phase: Phase) {
    let _ = OPEN.try_with(|s| {
        if let Some(span) = s.borrow_mut().as_mut() {
            span.marks[phase as usize] = Some(SystemTime::now());
        }
    });
}

/// The open span's `traceparent`, for the event: the consumer's spans are its children.
pub fn event_traceparent() -> Option<String> {
    OPEN.try_with(|s| s.borrow().as_ref().map(|span| span.header.clone()))
        .ok()
        .flatten()
}
