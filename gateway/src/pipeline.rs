//! The request pipeline: one webhook request in, one answer out. Admission, in the order
//! a request meets it:
//!
//! 1. route the path to a hook (404); a `url_key` hook checks its key first, and a wrong
//!    one is the same 404;
//! 2. a provider handshake answered before authentication (Meta, Microsoft Graph);
//! 3. method (405), `Content-Length` against the hook's limit (413), the source
//!    allowlist (403);
//! 4. authentication from the head (basic, API key, token: 401), then the per-client
//!    limit (429);
//! 5. `Content-Encoding` (415), a place under the global in-flight limit (503);
//! 6. the body, under a hard cap and a deadline (413, 408); its signature, over the bytes
//!    as received (401);
//! 7. the hook's rate limit, charged only now that the sender is authenticated (429);
//!    handshakes answered after authentication (Slack, Zoom);
//! 8. the replay guard: a delivery already stored is answered with its event id;
//! 9. the idempotency key, if the hook reads one: a repeat of a stored request is
//!    answered with its event id, a key reused for another body is 422.
//!
//! Then `publish`: decompress and normalize the body (413, 400), apply the hook's
//! ingress filter ([`crate::filter`]: 204 and nothing published when it does not match),
//! write the event ([`crate::envelope`]), hand the record to the sink, and wait for the broker's
//! acknowledgement: 202 with the event id; a full queue, a failed delivery or an ack
//! timeout is 503 with `Retry-After`.
//!
//! The handler is generic over the body type so tests and benches can drive it without a
//! socket.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::client::{client_ip, CidrList};
use crate::cluster::{self, Claim, Cluster, Down, Scope};
use crate::envelope::{self, header_str, Event};
use crate::error::Rejection;
use crate::filter::Decision;
use crate::handshake::Outcome as HandshakeOutcome;
use crate::hook::{ClientKey, Hook, Mode};
use crate::in_flight::InFlight;
use crate::json::Pointer;
use crate::metrics;
use crate::normalize::{self, ContentCoding};
use crate::rejections::{Refusal, Rejections};
use crate::replay::Admission;
use crate::replies::{Found, Replies, Reply};
use crate::router::Router;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::trace::{self, Phase};

/// How much longer than the first attempt's ack timeout a duplicate waits for it.
const REPLAY_WAIT_SLACK: Duration = Duration::from_secs(1);

/// The gateway's request handler and the state it shares across connections.
pub struct Gateway {
    live: ArcSwap<Live>,
    sink: Sink,
    in_flight: Arc<InFlight>,
    limits: Limits,
    /// Records of refused requests, when the gateway publishes them.
    rejections: Option<Rejections>,
    /// Synchronous hooks' answers, read once a synchronous hook is configured.
    replies: Option<(Arc<Replies>, Shutdown)>,
    /// The state the fleet shares, with `[cluster] redis`.
    cluster: Option<Arc<Cluster>>,
}

/// What a reload replaces: the hooks and the trusted proxies.
#[derive(Debug)]
pub struct Live {
    pub router: Router,
    pub trusted_proxies: CidrList,
}

impl Live {
    pub fn new(hooks: Vec<Hook>, trusted_proxies: CidrList) -> Live {
        Live {
            router: Router::new(hooks.into_iter().map(Arc::new)),
            trusted_proxies,
        }
    }

    /// The synchronous hooks, as (id, topic).
    fn synchronous(&self) -> Vec<(String, String)> {
        self.router
            .hooks()
            .filter(|h| h.respond.is_some())
            .map(|h| (h.id.clone(), h.topic.clone()))
            .collect()
    }
}

/// Gateway-wide limits the pipeline enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests handled at once at most; past it, 503.
    pub max_in_flight: usize,
    /// Time to receive a body once the headers are in.
    pub body_read_timeout: Duration,
    /// The producer's `message.max.bytes`: a record over it is the sender's 413, caught
    /// before the producer would refuse it.
    pub max_record_bytes: usize,
}

/// An authenticated, admitted request on its way to becoming an event.
struct Admitted {
    parts: http::request::Parts,
    raw: Bytes,
    coding: ContentCoding,
    verified: crate::auth::Verified,
    now: SystemTime,
    /// The path ends in a `url_key` (left out of the event).
    keyed_path: bool,
    client: Option<std::net::IpAddr>,
}

/// What admission decided.
enum Verdict<'a> {
    /// Publish the request.
    Publish(Entry<'a>),
    /// Answer at once (a handshake, or a duplicate delivery's original event id).
    Answer(Accepted),
}

/// What an admitted request holds while it is published.
struct Entry<'a> {
    coding: ContentCoding,
    verified: crate::auth::Verified,
    /// The replay guard's claim on the delivery id, settled once the broker answers.
    ticket: Option<Claim<'a>>,
    /// The claim on the request's idempotency key, settled likewise.
    idempotency: Option<Claim<'a>>,
    /// A handshake's answer that replaces the 202 once the event is stored.
    handshake_answer: Option<Response<Full<Bytes>>>,
    /// Its place under `server.max_in_flight`.
    slot: crate::in_flight::Slot<'a>,
}

/// What the pipeline tells the sender on success.
pub enum Accepted {
    /// The event is stored: `202 {"id": …}`, or the hook's configured answer.
    Stored { id: uuid::Uuid },
    /// A provider handshake's answer.
    Handshake(Response<Full<Bytes>>),
    /// The hook's filter dropped it: `204`, nothing published.
    Filtered,
    /// A synchronous hook's flow answered.
    Replied(Arc<Reply>),
    /// A synchronous hook's flow has not answered in time: `202` and where to poll.
    Waiting { id: uuid::Uuid },
    /// The answer to a poll of `GET /executions/{id}`.
    Polled(Response<Full<Bytes>>),
}

impl Gateway {
    pub fn new(live: Live, sink: Sink, limits: Limits) -> Gateway {
        Gateway {
            live: ArcSwap::from_pointee(live),
            sink,
            in_flight: Arc::new(InFlight::new(limits.max_in_flight)),
            limits,
            rejections: None,
            replies: None,
            cluster: None,
        }
    }

    /// Shares replay claims, idempotency keys and rate limits with the other replicas
    /// (see [`crate::cluster`]).
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Gateway {
        self.cluster = Some(cluster);
        self
    }

    /// The state the fleet shares, when there is one.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Answers synchronous hooks with their flows' answers (see [`crate::replies`]); the
    /// topic is read from the first configuration, or reload, that has such a hook.
    pub fn with_replies(mut self, replies: Arc<Replies>, shutdown: Shutdown) -> Gateway {
        if !self.live.load().synchronous().is_empty() {
            replies.start(shutdown.clone());
        }
        self.replies = Some((replies, shutdown));
        self
    }

    /// Publishes a record of each refused request (see [`crate::rejections`]).
    pub fn with_rejections(mut self, rejections: Rejections) -> Gateway {
        self.rejections = Some(rejections);
        self
    }

    /// The in-flight limit, which the listener consults before reading new requests.
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// The hooks and proxies in use now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Swaps in reloaded hooks. Requests already running finish with the hooks they
    /// started with.
    pub fn replace(&self, live: Live) {
        if let Some((replies, shutdown)) = &self.replies {
            if !live.synchronous().is_empty() {
                replies.start(shutdown.clone());
            }
        }
        self.live.store(Arc::new(live));
    }

    /// Handles one request from `peer` (the connection's remote address; `None` for a
    /// request that did not come over a connection). Never fails: every outcome is an
    /// HTTP answer.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let mut hook_id: Option<Arc<Hook>> = None;
        let (result, span) = match crate::trace::RequestSpan::begin(req.headers()) {
            None => (self.process(req, peer, &mut hook_id).await, None),
            Some(span) => {
                let (result, span) = span.around(self.process(req, peer, &mut hook_id)).await;
                (result, Some(span))
            }
        };
        let hook_id = hook_id.as_deref();
        let outcome = outcome(&result);
        let hook_metrics: &metrics::HookMetrics = match hook_id {
            Some(h) => h.metrics(),
            None => metrics::HookMetrics::unmatched(),
        };
        hook_metrics.request(outcome, started.elapsed());
        let Some(span) = span else {
            return answer(result, hook_id, started);
        };
        let event = match &result {
            Ok(Accepted::Stored { id } | Accepted::Waiting { id }) => Some(*id),
            _ => None,
        };
        let resp = answer(result, hook_id, started);
        let hook = hook_id.map_or("", |h| h.id.as_str());
        span.end(hook, outcome, resp.status().as_u16(), event);
        resp
    }

    async fn process<B>(
        &self,
        req: Request<B>,
        peer: Option<SocketAddr>,
        matched: &mut Option<Arc<Hook>>,
    ) -> Result<Accepted, Rejection>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let live = self.live.load_full();
        let now = SystemTime::now();
        let client = peer.map(|peer| client_ip(peer.ip(), &parts.headers, &live.trusted_proxies));
        if let (Some(rest), Some((replies, _))) =
            (parts.uri.path().strip_prefix("/executions/"), &self.replies)
        {
            return self.poll(replies, &live, rest, &parts, now, matched).await;
        }
        let Some(route) = live.router.route(parts.uri.path()) else {
            let rejection = Rejection::NotFound;
            self.record_refusal(&Refusal {
                hook: None,
                rejection: &rejection,
                parts: &parts,
                client,
                body: None,
                keyed_path: false,
                now,
            });
            return Err(rejection);
        };
        let keyed_path = route.key.is_some();
        let hook: &Hook = matched.insert(route.hook.clone());
        let mut raw = None;
        let entry = match self
            .admit(hook, route.key, &parts, body, client, now, &mut raw)
            .await
        {
            Ok(Verdict::Publish(entry)) => entry,
            // A repeat of a synchronous request gets the first one's answer.
            Ok(Verdict::Answer(Accepted::Stored { id })) if hook.respond.is_some() => {
                return Ok(self.answer_again(hook, id).await)
            }
            Ok(Verdict::Answer(answer)) => return Ok(answer),
            Err(rejection) => {
                self.record_refusal(&Refusal {
                    hook: Some(hook),
                    rejection: &rejection,
                    parts: &parts,
                    client,
                    body: raw.as_deref(),
                    keyed_path,
                    now,
                });
                return Err(rejection);
            }
        };
        let Entry {
            coding,
            verified,
            ticket,
            idempotency,
            handshake_answer,
            slot: _slot,
        } = entry;
        let raw = raw.expect("admission read the body");
        let delivered = Instant::now();
        let event_id = envelope::event_id(now);
        // Registered before the record is handed over: the flow's answer can come back
        // before the acknowledgement does.
        let waiter = match (&self.replies, hook.respond) {
            (Some((replies, _)), Some(_)) => {
                let mut id_buf = uuid::Uuid::encode_buffer();
                Some(replies.register(event_id.hyphenated().encode_lower(&mut id_buf), &hook.id))
            }
            _ => None,
        };
        trace::mark(Phase::ProduceStart);
        let Some(pending) = self.publish(
            hook,
            Admitted {
                parts,
                raw,
                coding,
                verified,
                now,
                keyed_path,
                client,
            },
            event_id,
        )?
        else {
            // Filtered out. Dropping the tickets releases their claims: a redelivery is
            // filtered again rather than answered as stored.
            return Ok(Accepted::Filtered);
        };
        // Nothing of the request is held from here on: its head and body (which share
        // the connection's read buffer) went with `Admitted`.
        trace::mark(Phase::Enqueued);
        let result = pending.wait(hook.ack_timeout).await;
        trace::mark(Phase::Acked);
        hook.metrics().delivery(delivered.elapsed(), result.is_ok());
        if matches!(result, Err(crate::sink::PublishError::QueueFull)) {
            metrics::shed("queue_full");
        }
        result?;
        for claim in [ticket, idempotency].into_iter().flatten() {
            claim.accepted(event_id);
        }
        if let (Some(waiter), Some(timeout)) = (waiter, hook.respond) {
            return Ok(match waiter.wait(timeout).await {
                Some(reply) => Accepted::Replied(reply),
                None => Accepted::Waiting { id: event_id },
            });
        }
        match handshake_answer {
            Some(answer) => Ok(Accepted::Handshake(answer)),
            None => Ok(Accepted::Stored { id: event_id }),
        }
    }

    /// Admission, steps 1 to 8 of the module docs for a request routed to `hook`: either a
    /// request to publish, or an answer already (a handshake, a duplicate delivery).
    /// The body, once read, is left in `raw`, for a rejection record as much as for
    /// publishing.
    #[allow(clippy::too_many_arguments)]
    async fn admit<'a, B>(
        &'a self,
        hook: &'a Hook,
        url_key: Option<&str>,
        parts: &http::request::Parts,
        body: B,
        client: Option<std::net::IpAddr>,
        now: SystemTime,
        raw: &mut Option<Bytes>,
    ) -> Result<Verdict<'a>, Rejection>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Checked before anything else about the request, so that a wrong key looks exactly
        // like an unknown hook, whatever the method or size. The operator's metrics and
        // logs still name the hook and the reason.
        check_url_key(hook, url_key, now)?;
        if let Some(hs) = &hook.handshake {
            if let HandshakeOutcome::Answer(resp) = hs.before_auth(parts, now) {
                return Ok(Verdict::Answer(Accepted::Handshake(resp)));
            }
        }
        if !hook.allows(&parts.method) {
            return Err(Rejection::MethodNotAllowed(hook.allow.clone()));
        }
        if content_length(&parts.headers).is_some_and(|n| n > hook.max_body as u64) {
            return Err(Rejection::TooLarge(hook.max_body));
        }
        if !hook.allow_sources.is_empty()
            && !client.is_some_and(|ip| hook.allow_sources.contains(ip))
        {
            return Err(Rejection::Forbidden);
        }
        trace::mark(Phase::AuthStart);
        hook.auth
            .verify_head(parts, now)
            .map_err(|f| self.unauthorized(hook, f))?;
        if let Some((client_rate, limiter)) = &hook.limits.client {
            let ip_text;
            let key: &[u8] = match &client_rate.key {
                ClientKey::Ip => {
                    ip_text = client.map(|ip| ip.to_string()).unwrap_or_default();
                    ip_text.as_bytes()
                }
                ClientKey::Header(h) => parts.headers.get(h).map_or(&b""[..], |v| v.as_bytes()),
            };
            limiter.check(key).map_err(|wait| {
                metrics::rate_limited(&hook.id, "client");
                Rejection::RateLimited(wait, "client")
            })?;
        }
        let coding = ContentCoding::parse(header_str(&parts.headers, CONTENT_ENCODING))
            .ok_or(Rejection::UnsupportedEncoding)?;
        let content_type = header_str(&parts.headers, CONTENT_TYPE);
        if hook.mode == Mode::Binary && content_type.is_some_and(is_cloudevents) {
            // In binary mode the request's type becomes the record's, and this one would
            // make readers take the sender's body for a whole, structured event.
            return Err(Rejection::CloudEventsInBinaryMode);
        }
        let slot = self.in_flight.try_admit().ok_or_else(|| {
            metrics::shed("in_flight");
            Rejection::Overloaded
        })?;
        let body = raw.insert(self.read_body(body, hook.max_body).await?);
        hook.metrics().body_bytes(body.len());
        // Over the bytes as received, before anything parses them.
        let verified = hook
            .auth
            .verify_body(parts, body, now)
            .map_err(|f| self.unauthorized(hook, f))?;
        trace::mark(Phase::AuthEnd);

        // Charged only now that the request is authenticated: forged floods cannot spend
        // a real sender's quota.
        self.charge_rate(hook).await?;
        let mut handshake_answer = None;
        if let Some(hs) = &hook.handshake {
            match hs.after_auth(&hook.auth, body, now) {
                HandshakeOutcome::Answer(resp) => {
                    return Ok(Verdict::Answer(Accepted::Handshake(resp)))
                }
                HandshakeOutcome::PublishThenAnswer(resp) => handshake_answer = Some(resp),
                HandshakeOutcome::Continue => {}
            }
        }
        let ticket = match (hook.auth.replay(), verified.delivery_id.as_deref()) {
            (Some(guard), Some(delivery)) => {
                match cluster::admit(
                    self.cluster.as_ref(),
                    Scope::Delivery,
                    &hook.id,
                    guard,
                    delivery,
                    0,
                    hook.ack_timeout + REPLAY_WAIT_SLACK,
                )
                .await
                {
                    Admission::Duplicate(id) => {
                        // Already stored: the sender gets the same answer, nothing more
                        // is published.
                        metrics::auth_failure(&hook.id, crate::auth::Failure::Replay.as_str());
                        return Ok(Verdict::Answer(Accepted::Stored { id }));
                    }
                    Admission::Fresh(ticket) => Some(ticket),
                    // Delivery ids carry no fingerprint, so they never conflict.
                    Admission::Conflict => None,
                }
            }
            _ => None,
        };
        let idempotency = match &hook.idempotency {
            None => None,
            Some(idem) => match idem.key(&parts.headers) {
                Err(problem) => return Err(Rejection::IdempotencyKey(problem)),
                Ok(None) => None,
                Ok(Some(key)) => {
                    let fingerprint = crate::idempotency::fingerprint(body);
                    let wait = hook.ack_timeout + crate::idempotency::WAIT_SLACK;
                    match cluster::admit(
                        self.cluster.as_ref(),
                        Scope::IdempotencyKey,
                        &hook.id,
                        &idem.guard,
                        key,
                        fingerprint,
                        wait,
                    )
                    .await
                    {
                        // The same request again: the first one's answer, nothing published.
                        Admission::Duplicate(id) => {
                            return Ok(Verdict::Answer(Accepted::Stored { id }))
                        }
                        Admission::Conflict => return Err(Rejection::IdempotencyKeyReused),
                        Admission::Fresh(ticket) => Some(ticket),
                    }
                }
            },
        };
        Ok(Verdict::Publish(Entry {
            coding,
            verified,
            ticket,
            idempotency,
            handshake_answer,
            slot,
        }))
    }

    /// Charges one request to the hook's rate limit, if it has one: the fleet's with
    /// `[cluster] redis` (this replica's share of it while Redis cannot answer), else
    /// this replica's.
    async fn charge_rate(&self, hook: &Hook) -> Result<(), Rejection> {
        let Some((rate, limiter)) = &hook.limits.rate else {
            return Ok(());
        };
        let verdict = match &self.cluster {
            None => limiter.check(),
            Some(cluster) => match cluster.charge(&hook.id, *rate, &hook.limits.lease).await {
                Ok(verdict) => verdict,
                Err(Down) => {
                    metrics::cluster_fallback("rate_limit");
                    hook.limits.check_share(cluster.replicas())
                }
            },
        };
        verdict.map_err(|wait| {
            metrics::rate_limited(&hook.id, "hook");
            Rejection::RateLimited(wait, "hook")
        })
    }

    /// A repeat of a synchronous request (its delivery id or idempotency key already
    /// stored): the first request's answer when this replica holds it, waiting for it as
    /// the first request would; otherwise where to poll.
    async fn answer_again(&self, hook: &Hook, id: uuid::Uuid) -> Accepted {
        let (Some((replies, _)), Some(timeout)) = (&self.replies, hook.respond) else {
            return Accepted::Stored { id };
        };
        let mut id_buf = uuid::Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut id_buf);
        match replies.local(text, timeout).await {
            Some(Found::Answered { reply, .. }) => Accepted::Replied(reply),
            _ => Accepted::Waiting { id },
        }
    }

    /// `GET /executions/{id}` (a `url_key` hook's caller appends its key:
    /// `/executions/{id}/{key}`): the answer of a synchronous request, authenticated with
    /// the credentials of the hook it came to and charged to its rate limit.
    async fn poll(
        &self,
        replies: &Replies,
        live: &Live,
        rest: &str,
        parts: &http::request::Parts,
        now: SystemTime,
        matched: &mut Option<Arc<Hook>>,
    ) -> Result<Accepted, Rejection> {
        if !matches!(parts.method, http::Method::GET | http::Method::HEAD) {
            return Err(Rejection::MethodNotAllowed(HeaderValue::from_static(
                "GET, HEAD",
            )));
        }
        let (id, key) = match rest.split_once('/') {
            Some((id, key)) => (id, Some(key)),
            None => (rest, None),
        };
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(Rejection::NotFound);
        }
        let found = replies.find(id, live.synchronous()).await;
        let (hook_id, answer) = match found {
            Found::Answered { hook, reply } => (hook, reply.response()),
            Found::Running { hook } => (hook, crate::replies::pending_response(id)),
            Found::Unknown => return Err(Rejection::NotFound),
            Found::Busy => {
                metrics::shed("read_back");
                return Err(Rejection::Overloaded);
            }
        };
        let Some(hook) = live.router.hooks().find(|h| h.id == hook_id) else {
            return Err(Rejection::NotFound);
        };
        let hook: &Hook = matched.insert(hook.clone());
        check_url_key(hook, key, now)?;
        hook.auth
            .verify_head(parts, now)
            .map_err(|f| self.unauthorized(hook, f))?;
        hook.auth
            .verify_body(parts, b"", now)
            .map_err(|f| self.unauthorized(hook, f))?;
        self.charge_rate(hook).await?;
        Ok(Accepted::Polled(answer))
    }

    /// Publishes the rejection record of a refusal the sender can fix (4xx), if the
    /// gateway makes them.
    fn record_refusal(&self, refusal: &Refusal<'_>) {
        let Some(rejections) = &self.rejections else {
            return;
        };
        if refusal.rejection.fault() == crate::error::Fault::Sender {
            rejections.publish(&self.sink, refusal);
        }
    }

    /// Normalizes an admitted request, applies the hook's filter, writes its event and
    /// hands the record to the sink; `None` when the filter dropped it. Takes the request
    /// by value so that it is dropped before the caller awaits the broker.
    fn publish(
        &self,
        hook: &Hook,
        admitted: Admitted,
        event_id: uuid::Uuid,
    ) -> Result<Option<crate::sink::Pending<'_>>, Rejection> {
        let Admitted {
            parts,
            raw,
            coding,
            verified,
            now,
            keyed_path,
            client,
        } = admitted;
        let refused = |rejection: Rejection| {
            self.record_refusal(&Refusal {
                hook: Some(hook),
                rejection: &rejection,
                parts: &parts,
                client,
                body: Some(&raw),
                keyed_path,
                now,
            });
            rejection
        };
        let content_type = header_str(&parts.headers, CONTENT_TYPE);
        let pointers: Vec<&Pointer> = hook.pointers.iter().collect();
        let (read, found) = match hook.mode {
            Mode::Structured => {
                let decoded = normalize::decode_content(coding, raw.clone(), hook.max_body)
                    .map_err(|e| refused(Rejection::BadEncoding(e)))?;
                let (n, found) = normalize::normalize(content_type, &decoded, &pointers)
                    .map_err(|e| refused(e.into()))?;
                (Some(n), found)
            }
            // Binary mode publishes the bytes as received; its body only feeds the
            // pointers and the filter, and a body they cannot read leaves the pointers
            // empty and the filter's body null.
            Mode::Binary if !pointers.is_empty() || hook.filter.is_some() => {
                normalize::decode_content(coding, raw.clone(), hook.max_body)
                    .ok()
                    .and_then(|d| normalize::normalize(content_type, &d, &pointers).ok())
                    .map_or_else(
                        || (None, vec![None; pointers.len()]),
                        |(n, found)| (Some(n), found),
                    )
            }
            Mode::Binary => (None, Vec::new()),
        };
        if let Some(filter) = &hook.filter {
            let decision = filter.decide(
                &hook.id,
                read.as_ref().map(|n| &n.json[..]),
                &envelope::redacted_headers(&hook.redaction, &parts.headers),
                &envelope::redacted_query(&hook.redaction, parts.uri.query()),
                now,
            );
            match decision {
                Decision::Pass => {}
                Decision::Drop => return Ok(None),
                Decision::Failed(why) => {
                    metrics::filter_error(&hook.id);
                    tracing::warn!(hook = %hook.id, error = %why, "filter failed; publishing");
                }
            }
        }
        let normalized = match hook.mode {
            Mode::Structured => read,
            Mode::Binary => None,
        };
        let traceparent = crate::trace::event_traceparent();
        let event = Event {
            hook,
            parts: &parts,
            content_type,
            raw: &raw,
            normalized: normalized.as_ref(),
            found: &found,
            verified: &verified,
            id: event_id,
            now,
            keyed_path,
            traceparent: traceparent.as_deref(),
        };
        let written = event.write(|record| {
            if record.len() > self.limits.max_record_bytes {
                return Err(Rejection::EventTooLarge);
            }
            Ok(self.sink.enqueue(record))
        });
        written.map(Some).map_err(refused)
    }

    fn unauthorized(&self, hook: &Hook, failure: crate::auth::Failure) -> Rejection {
        metrics::auth_failure(&hook.id, failure.as_str());
        Rejection::Unauthorized(failure, hook.auth.challenge())
    }

    async fn read_body<B>(&self, body: B, limit: usize) -> Result<Bytes, Rejection>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
        // A body that came with its head, as most webhooks' do, is whole at the first
        // look: only a body still arriving gets a timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
        let collected = match first {
            Poll::Ready(collected) => collected,
            Poll::Pending => tokio::time::timeout(self.limits.body_read_timeout, collect)
                .await
                .map_err(|_| Rejection::BodyTimeout)?,
        };
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Rejection::TooLarge(limit)),
            Err(_) => Err(Rejection::BodyRead),
        }
    }
}

/// A `url_key` hook's key: a wrong one is answered as an unknown path.
fn check_url_key(hook: &Hook, key: Option<&str>, now: SystemTime) -> Result<(), Rejection> {
    if let crate::auth::Auth::UrlKey(check) = &hook.auth {
        check.verify(key, now).map_err(|f| {
            metrics::auth_failure(&hook.id, f.as_str());
            Rejection::WrongUrlKey(f)
        })?;
    }
    Ok(())
}

/// A request's outcome, as `hookgate_requests_total` and the request span name it.
fn outcome(result: &Result<Accepted, Rejection>) -> &'static str {
    match result {
        Ok(Accepted::Stored { .. } | Accepted::Replied(_) | Accepted::Waiting { .. }) => "accepted",
        Ok(Accepted::Handshake(_)) => "handshake",
        Ok(Accepted::Polled(_)) => "polled",
        Ok(Accepted::Filtered) => "filtered",
        Err(rejection) => rejection.outcome(),
    }
}

/// The answer to a request's outcome, logged.
fn answer(
    result: Result<Accepted, Rejection>,
    hook_id: Option<&Hook>,
    started: Instant,
) -> Response<Full<Bytes>> {
    let hook = hook_id.map_or("", |h| h.id.as_str());
    match result {
        Ok(Accepted::Stored { id }) => {
            let mut id_buf = uuid::Uuid::encode_buffer();
            let id = &*id.hyphenated().encode_lower(&mut id_buf);
            tracing::debug!(hook, event_id = %id, "accepted");
            match hook_id.and_then(|h| h.response.as_ref()) {
                Some(custom) => custom.respond(id),
                None => accepted_response(id),
            }
        }
        Ok(Accepted::Handshake(resp)) => {
            tracing::info!(
                hook,
                status = resp.status().as_u16(),
                "answered a provider handshake"
            );
            resp
        }
        Ok(Accepted::Replied(reply)) => {
            tracing::debug!(
                hook,
                status = reply.status,
                "answered with the flow's reply"
            );
            reply.response()
        }
        Ok(Accepted::Waiting { id }) => {
            let mut id_buf = uuid::Uuid::encode_buffer();
            crate::replies::pending_response(id.hyphenated().encode_lower(&mut id_buf))
        }
        Ok(Accepted::Polled(resp)) => resp,
        Ok(Accepted::Filtered) => {
            tracing::debug!(hook, "filtered out");
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Err(rejection) => {
            let outcome = rejection.outcome();
            match rejection.fault() {
                crate::error::Fault::Sender => {
                    let signed = hook_id.is_some_and(|h| h.auth.needs_body());
                    tracing::debug!(
                        hook,
                        outcome,
                        reason = rejection.label(),
                        detail = %rejection.detail(signed),
                        "refused"
                    )
                }
                _ => {
                    if let Some(skipped) = rejection.warning_due(started) {
                        tracing::warn!(
                            hook,
                            outcome,
                            reason = rejection.label(),
                            detail = %rejection.detail(false),
                            skipped,
                            "not accepted"
                        )
                    }
                }
            }
            rejection.into_response()
        }
    }
}

fn accepted_response(id: &str) -> Response<Full<Bytes>> {
    // Exactly the length: a vector with spare room would cost `Bytes` a second allocation.
    let mut body = Vec::with_capacity(id.len() + 10);
    body.extend_from_slice(b"{\"id\":\"");
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(b"\"}");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH)?.trim().parse().ok()
}

fn is_cloudevents(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..23)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/cloudevents"))
}
