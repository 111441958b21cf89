//! Benches of the gateway's hot path: normalization per content type, event encoding,
//! authentication, the replay guard, and the whole in-process pipeline (routing to the
//! answer) on the null sink.
//!
//! Run with `cargo bench --bench hot_path`; compare runs on the same machine only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate_common::config::{Environment, Source};
use hookgate_event::{
    structured, Attributes, BodyEncoding, Fields, WebhookRequest, WEBHOOK_SCHEMA,
};
use hookgate_gateway::config::Config;
use hookgate_gateway::normalize::normalize;
use hookgate_gateway::pipeline::{Gateway, Limits, Live};
use hookgate_gateway::replay::{Admission, ReplayGuard};
use hookgate_gateway::sink::Sink;
use http::Request;
use http_body_util::Full;

/// A JSON object of about `size` bytes, shaped like a typical webhook payload.
fn json_body(size: usize) -> Bytes {
    let mut items = Vec::new();
    let mut s = String::new();
    let mut i = 0;
    while s.len() < size {
        items.push(format!(
            r#"{{"sku":"item-{i}","qty":{i},"price":12.5,"tags":["a","b"]}}"#
        ));
        s = format!(
            r#"{{"id":"evt_123","type":"order.created","items":[{}]}}"#,
            items.join(",")
        );
        i += 1;
    }
    Bytes::from(s)
}

fn bodies() -> Vec<(&'static str, &'static str, Bytes)> {
    let form: String = (0..40).map(|i| format!("field{i}=value+{i}&")).collect();
    let xml: String = format!(
        "<order id=\"7\">{}</order>",
        (0..30)
            .map(|i| format!("<item sku=\"s{i}\">{i}</item>"))
            .collect::<String>()
    );
    let multipart = format!(
        "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{}\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\r\n{}\r\n--b--\r\n",
        "v".repeat(400),
        "\u{1}".repeat(400)
    );
    vec![
        ("json", "application/json", json_body(1024)),
        (
            "form",
            "application/x-www-form-urlencoded",
            Bytes::from(form),
        ),
        ("xml", "application/xml", Bytes::from(xml)),
        (
            "multipart",
            "multipart/form-data; boundary=b",
            Bytes::from(multipart),
        ),
        (
            // Content that matches the delimiter but for its last byte, line after line,
            // under the longest boundary: the delimiter search stays linear in the body.
            "multipart_near_delimiters_64KiB",
            NEAR_DELIMITERS_TYPE,
            near_delimiters(64 * 1024),
        ),
        (
            "text",
            "text/plain; charset=utf-8",
            Bytes::from("lorem ipsum dolor ".repeat(57)),
        ),
        (
            "base64",
            "application/octet-stream",
            Bytes::from(vec![7u8; 1024]),
        ),
    ]
}

/// The boundary of [`near_delimiters`], the longest allowed.
const NEAR_DELIMITERS_TYPE: &str = "multipart/form-data; boundary=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaZ";

/// A multipart body of about `size` bytes whose one field's content is lines that each
/// look like the delimiter but for its last byte.
fn near_delimiters(size: usize) -> Bytes {
    let boundary = NEAR_DELIMITERS_TYPE.rsplit('=').next().unwrap();
    let near = format!("\r\n--{}Y", &boundary[..boundary.len() - 1]);
    let content = near.repeat(size / near.len());
    Bytes::from(format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{content}\r\n--{boundary}--\r\n"
    ))
}

fn bench_normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    for (name, ct, body) in bodies() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| normalize(Some(ct), black_box(body), &[]).unwrap())
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let body = json_body(1024);
    let mut headers = Fields::new();
    for (k, v) in [
        ("host", "hooks.example.com"),
        ("user-agent", "GitHub-Hookshot/abc123"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        (
            "x-hub-signature-256",
            "sha256=6dcb09b5b57875f334f61aebed695e2e4193db5e",
        ),
    ] {
        headers.push(k, v);
    }
    let query = Fields::new();
    let attrs = Attributes {
        id: "0193a7e2-7b1c-7c3e-9f00-1234567890ab",
        source: "/hooks/github",
        event_type: "push",
        time: "2026-11-26T05:00:00.000000Z",
        dataschema: WEBHOOK_SCHEMA,
        hook: "github",
        authscheme: "none",
        signed: None,
        deliveryid: None,
        traceparent: None,
        respond: None,
    };
    let request = WebhookRequest {
        method: "POST",
        path: "/hooks/github",
        query: &query,
        headers: &headers,
    };
    c.bench_function("encode/structured_1KiB", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            structured::encode_webhook(
                &attrs,
                &request,
                black_box(&body),
                BodyEncoding::Json,
                &mut out,
            );
            black_box(out.len())
        })
    });
}

/// Counts heap allocations, so the pipeline bench can report allocations and bytes per
/// request beside its time. Two relaxed atomic adds per allocation do not move the timings.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const GITHUB_SECRET: &str = "bench-secret";

/// The pipeline benches' hooks: the same GitHub-shaped hook without auth and with its
/// HMAC-SHA256 preset.
const PIPELINE_HOOKS: &str = "[kafka]\nbrokers = \"unused:9092\"\n\
    [[hooks]]\nid = \"plain\"\ntopic = \"t\"\n\
    key = { header = \"x-github-delivery\" }\ntype = { header = \"x-github-event\" }\n\
    auth = { scheme = \"none\" }\n\
    [[hooks]]\nid = \"github\"\ntopic = \"t\"\n\
    key = { header = \"x-github-delivery\" }\ntype = { header = \"x-github-event\" }\n\
    auth = { scheme = \"hmac\", preset = \"github\", secrets = [{ value = \"bench-secret\" }] }\n";

/// A GitHub delivery; each has its own delivery id, as the preset refuses replays.
fn github_request(path: &str, body: &Bytes, signature: &str) -> Request<Full<Bytes>> {
    static DELIVERY: AtomicU64 = AtomicU64::new(0);
    let delivery = DELIVERY.fetch_add(1, Ordering::Relaxed);
    Request::post(path)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/abc123")
        .header("x-github-event", "push")
        .header(
            "x-github-delivery",
            format!("72d3162e-cc78-11e3-{delivery:016x}"),
        )
        .header("x-hub-signature-256", signature)
        .body(Full::new(body.clone()))
        .unwrap()
}

fn bench_pipeline(c: &mut Criterion) {
    let env = Environment::default();
    let source = Source::Text {
        name: "bench".into(),
        toml: PIPELINE_HOOKS.into(),
    };
    let settings = Config::load(&source, &env)
        .unwrap()
        .build(&env, "bench")
        .unwrap();
    let limits = Limits {
        max_in_flight: 1024,
        body_read_timeout: std::time::Duration::from_secs(5),
        max_record_bytes: 1_000_000,
    };
    let gateway = Gateway::new(
        Live::new(settings.hooks, Default::default()),
        Sink::Null,
        limits,
    );
    let body = json_body(1024);
    let signature = {
        use hmac::{KeyInit, Mac};
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(GITHUB_SECRET.as_bytes())
                .unwrap();
        mac.update(&body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256={hex}")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, path) in [
        ("pipeline/null_sink_1KiB_json", "/hooks/plain"),
        ("pipeline/null_sink_1KiB_json_hmac", "/hooks/github"),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let resp = gateway
                    .handle(github_request(path, &body, &signature), None)
                    .await;
                assert_eq!(resp.status(), 202);
            })
        });
        // Allocations of the request as the server sees it: building the request is not
        // the gateway's, so it is made before counting. Not when a test runner only lists
        // the benches.
        if std::env::args().any(|a| a == "--list") {
            continue;
        }
        const N: u64 = 1000;
        let requests: Vec<_> = (0..N)
            .map(|_| github_request(path, &body, &signature))
            .collect();
        let (count, bytes) = runtime.block_on(async {
            let (count, bytes) = (
                ALLOCATIONS.load(Ordering::Relaxed),
                ALLOCATED_BYTES.load(Ordering::Relaxed),
            );
            for req in requests {
                black_box(gateway.handle(req, None).await);
            }
            (
                ALLOCATIONS.load(Ordering::Relaxed) - count,
                ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes,
            )
        });
        eprintln!(
            "{name}: {:.1} allocations and {} bytes allocated per request \
             ({:.2}× the {}-byte body)",
            count as f64 / N as f64,
            bytes / N,
            (bytes / N) as f64 / body.len() as f64,
            body.len()
        );
    }
}

/// Verification per scheme, header-only schemes once, signature schemes at 1 KiB and
/// 64 KiB bodies.
fn bench_auth(c: &mut Criterion) {
    let schemes = [
        ("url_key", "auth = { scheme = \"url_key\", secrets = [{ value = \"0123456789abcdef0123456789abcdef\" }] }"),
        ("basic", "auth = { scheme = \"basic\", credentials = [{ username = \"ci\", password = { value = \"pw-0123456789\" } }] }"),
        ("api_key", "auth = { scheme = \"api_key\", header = \"x-api-key\", secrets = [{ value = \"key-0123456789\" }] }"),
        ("token", "auth = { scheme = \"token\", preset = \"gitlab\", secrets = [{ value = \"tok-0123456789\" }] }"),
        ("hmac_github", "auth = { scheme = \"hmac\", preset = \"github\", secrets = [{ value = \"gh-secret\" }] }"),
        ("hmac_stripe", "auth = { scheme = \"hmac\", preset = \"stripe\", secrets = [{ value = \"whsec_abc\" }] }"),
        ("hmac_shopify", "auth = { scheme = \"hmac\", preset = \"shopify\", secrets = [{ value = \"shp\" }] }"),
        ("hmac_standard_webhooks", "auth = { scheme = \"hmac\", preset = \"standard_webhooks\", secrets = [{ value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }] }"),
        ("hmac_twilio", "auth = { scheme = \"hmac\", preset = \"twilio\", public_url = \"https://h.example.com\", secrets = [{ value = \"tw\" }] }"),
    ];
    let mut g = c.benchmark_group("auth");
    let now = std::time::SystemTime::now();
    for (name, auth) in schemes {
        let toml = format!("[kafka]\nbrokers = \"unused:9092\"\n[[hooks]]\nid = \"h\"\ntopic = \"t\"\nmax_body = \"64KiB\"\n{auth}\n");
        let env = Environment::default();
        let source = Source::Text {
            name: "bench".into(),
            toml,
        };
        let settings = Config::load(&source, &env)
            .unwrap()
            .build(&env, "bench")
            .unwrap();
        let hook = &settings.hooks[0];
        let sizes: &[usize] = if hook.auth.needs_body() {
            &[1024, 65536]
        } else {
            &[1024]
        };
        for &size in sizes {
            let body = if name == "hmac_twilio" {
                Bytes::from(
                    (0..size / 16)
                        .map(|i| format!("F{i:04}=v{i:08}&"))
                        .collect::<String>(),
                )
            } else {
                json_body(size)
            };
            let creds = hook.auth.sign("POST", &hook.path, &body, now).unwrap();
            let path = match &creds.path_segment {
                Some(k) => format!("{}/{k}", hook.path),
                None => hook.path.clone(),
            };
            let mut req = Request::post(path);
            for (k, v) in &creds.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let (parts, ()) = req.body(()).unwrap().into_parts();
            g.throughput(Throughput::Bytes(body.len() as u64));
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| {
                    if let hookgate_gateway::auth::Auth::UrlKey(k) = &hook.auth {
                        assert!(k
                            .verify(black_box(creds.path_segment.as_deref()), now)
                            .is_ok());
                    }
                    hook.auth.verify_head(black_box(&parts), now).unwrap();
                    hook.auth
                        .verify_body(&parts, black_box(&body), now)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

/// The replay guard alone: a new delivery id admitted and accepted while the guard is full,
/// so that each admission also forgets the oldest id. At a capacity whose memory fits in
/// a core's caches, and at the default one, whose memory (about 4.5 MiB) does not.
fn bench_replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("replay");
    for capacity in [1_000, hookgate_gateway::auth::hmac::DEFAULT_DEDUPE_CAPACITY] {
        let guard = ReplayGuard::new(std::time::Duration::from_secs(3600), capacity);
        let event = uuid::Uuid::now_v7();
        let sent = AtomicU64::new(0);
        let deliver = || async {
            let n = sent.fetch_add(1, Ordering::Relaxed);
            let id = format!("72d3162e-cc78-11e3-81ab-{n:012x}");
            match guard.admit(&id, std::time::Duration::from_secs(1)).await {
                Admission::Fresh(ticket) => ticket.accepted(event),
                Admission::Duplicate(_) | Admission::Conflict => {
                    panic!("a new id taken for a duplicate")
                }
            }
        };
        runtime.block_on(async {
            for _ in 0..capacity * 2 {
                deliver().await;
            }
        });
        g.bench_function(BenchmarkId::new("admit_accept", capacity), |b| {
            b.to_async(&runtime).iter(deliver)
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_normalize,
    bench_encode,
    bench_auth,
    bench_replay,
    bench_pipeline
);
criterion_main!(benches);
