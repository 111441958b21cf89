//! Scenarios: TOML files that describe a realistic load on a gateway — which hooks, in
//! what proportion, with what bodies — so that every request is signed the way its hook
//! expects.
//!
//! A scenario names the gateway config it runs against. Paths, methods, secrets and topics
//! come from there (through hookgate's own config loader and signer), so the load can
//! never drift from what the gateway checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use hookgate_common::config::{Environment, Source};
use hookgate_gateway::config::{self, Settings};
use hookgate_gateway::hook::Hook;
use hookgate_gateway::sender::{self as sign, Signed};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use serde::Deserialize;

use crate::load::{
    parse_duration, BodyKind, BodyTemplate, Destination, LoadConfig, Requests, ID_LEN,
};
use crate::report::Report;
use crate::verify::Checkpoint;

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    description: String,
    /// The gateway's config, relative to the scenario file.
    gateway_config: PathBuf,
    /// Base URL of the gateway; default: `http://` + its `server.listen`.
    target: Option<String>,
    connections: Option<usize>,
    duration: Option<String>,
    warmup: Option<String>,
    /// Requests per second (open loop); absent: closed loop.
    rate: Option<f64>,
    #[serde(default)]
    http2: bool,
    timeout: Option<String>,
    /// Read the hook topics afterwards and check every acknowledged event is there.
    #[serde(default = "yes")]
    verify: bool,
    hooks: Vec<HookFile>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookFile {
    /// A hook of the gateway config.
    id: String,
    /// Share of the requests, relative to the other hooks.
    #[serde(default = "one")]
    weight: u32,
    #[serde(default = "json_type")]
    content_type: String,
    /// One size, or a weighted list `[{ bytes = 1024, weight = 9 }, …]`.
    #[serde(default = "one_kib")]
    body_bytes: Sizes,
    /// Extra headers, e.g. the provider's event-type header.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

fn json_type() -> String {
    "application/json".into()
}

fn one_kib() -> Sizes {
    Sizes::One(1024)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Sizes {
    One(usize),
    Weighted(Vec<WeightedSize>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedSize {
    bytes: usize,
    #[serde(default = "one")]
    weight: u32,
}

/// A loaded scenario: the load settings and the request mix.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Base URL of the gateway.
    pub target: String,
    pub connections: Option<usize>,
    pub duration: Option<Duration>,
    pub warmup: Option<Duration>,
    pub rate: Option<f64>,
    pub http2: bool,
    pub timeout: Option<Duration>,
    pub verify: bool,
    pub mix: Arc<Mix>,
    /// The gateway's Kafka settings, for the loss check.
    pub kafka: hookgate_gateway::sink::kafka::KafkaSettings,
    /// Every topic the gateway writes (the hooks' and the rejections topic): a mock
    /// cluster must hold them all before the gateway starts.
    pub gateway_topics: Vec<String>,
    /// The gateway's header and body read timeouts: how long a slow client may hold a
    /// connection.
    pub read_timeouts: (Duration, Duration),
}

impl Scenario {
    /// Reads a scenario file and the gateway config it names. Secrets are resolved from
    /// this process's environment, as the gateway resolves them from its own.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &Environment::from_process())
    }

    pub fn load_with(path: &Path, env: &Environment) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let file: File =
            toml::from_str(&text).with_context(|| format!("scenario {}", path.display()))?;
        let gateway_path = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&file.gateway_config);
        let settings = config::load(&Source::File(gateway_path.clone()), env)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!(
                    "gateway config {} (scenario key `gateway_config`)",
                    gateway_path.display()
                )
            })?;
        let name = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Self::build(name, file, settings).with_context(|| format!("scenario {}", path.display()))
    }

    fn build(name: String, file: File, settings: Settings) -> Result<Self> {
        let duration = |key: &str, value: &Option<String>| -> Result<Option<Duration>> {
            value
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| anyhow::anyhow!("`{key}`: {e}"))
        };
        let target = file.target.clone().unwrap_or_else(|| {
            format!(
                "http://{}",
                settings.server.listen.replace("0.0.0.0", "127.0.0.1")
            )
        });
        Ok(Self {
            name,
            description: file.description.clone(),
            target,
            connections: file.connections,
            duration: duration("duration", &file.duration)?,
            warmup: duration("warmup", &file.warmup)?,
            rate: file.rate,
            http2: file.http2,
            timeout: duration("timeout", &file.timeout)?,
            verify: file.verify,
            read_timeouts: (
                settings.server.header_read_timeout.get(),
                settings.server.body_read_timeout.get(),
            ),
            gateway_topics: settings.topics(),
            mix: Arc::new(Mix::new(&file.hooks, settings.hooks)?),
            kafka: settings.kafka,
        })
    }

    /// The load settings: the scenario's, over the defaults of [`LoadConfig::new`].
    pub fn load_config(&self) -> LoadConfig {
        let mut c = LoadConfig::new(self.target.clone());
        c.connections = self.connections.unwrap_or(c.connections);
        c.duration = self.duration.unwrap_or(c.duration);
        c.warmup = self.warmup.unwrap_or(c.warmup);
        c.rate = self.rate;
        c.http2 = self.http2;
        c.timeout = self.timeout.unwrap_or(c.timeout);
        c.requests = Some(self.mix.clone());
        c.collect_ids = self.verify;
        c
    }
}

/// How long the loss check may read the hook topics back.
pub const VERIFY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `config` (from [`Scenario::load_config`], maybe changed) and, when the scenario
/// verifies, checks afterwards that every acknowledged event reached its topic.
pub async fn run(scenario: &Scenario, config: &LoadConfig) -> Result<Report> {
    Ok(run_during(scenario, config, async {}).await?.0)
}

/// [`run`], with `during` (faults to inject, say) running alongside the load; the loss
/// check starts once both are done.
pub async fn run_during<F: std::future::Future>(
    scenario: &Scenario,
    config: &LoadConfig,
    during: F,
) -> Result<(Report, F::Output)> {
    let hooks: Vec<(&str, &str)> = scenario
        .mix
        .hooks
        .iter()
        .map(|h| (h.hook.id.as_str(), h.hook.topic.as_str()))
        .collect();
    let checkpoint = if config.collect_ids {
        Some(Checkpoint::take(&scenario.kafka, &scenario.mix.topics())?)
    } else {
        None
    };
    let (load, output) = tokio::join!(crate::load::run_collecting(config), during);
    let (mut report, acks) = load?;
    let ids: Vec<&str> = hooks.iter().map(|(id, _)| *id).collect();
    report.set_scenario(&scenario.name, &scenario.description, &ids);
    if let Some(checkpoint) = checkpoint {
        report.verification = Some(checkpoint.check(&acks, &hooks, VERIFY_READ_TIMEOUT)?);
    }
    Ok((report, output))
}

/// The hooks of a scenario and how requests are spread over them.
pub struct Mix {
    hooks: Vec<MixHook>,
    /// Hook indexes, each repeated by its weight: request `seq` goes to
    /// `picks[spread(seq) % len]`.
    picks: Vec<u16>,
    /// Distinguishes this run's body ids from an earlier run's, which a gateway
    /// remembering delivery ids would refuse as replays.
    run: u32,
}

struct MixHook {
    hook: Hook,
    method: Method,
    headers: HeaderMap,
    /// Body templates, each repeated by its weight.
    bodies: Vec<Arc<BodyTemplate>>,
}

impl std::fmt::Debug for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mix")
            .field("hooks", &self.hook_ids())
            .field("picks", &self.picks.len())
            .finish()
    }
}

/// Largest weight accepted; a table entry per unit keeps the pick O(1).
const MAX_WEIGHT: u32 = 1000;

impl Mix {
    fn new(wanted: &[HookFile], mut hooks: Vec<Hook>) -> Result<Self> {
        ensure!(
            !wanted.is_empty(),
            "`hooks` is empty: add a [[hooks]] table with the `id` of a gateway hook"
        );
        ensure!(wanted.len() <= usize::from(u16::MAX), "too many hooks");
        let mut mix = Vec::new();
        let mut picks = Vec::new();
        for (i, w) in wanted.iter().enumerate() {
            let key = format!("hooks[{i}]");
            let at = hooks.iter().position(|h| h.id == w.id).with_context(|| {
                let ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
                format!(
                    "{key}.id: the gateway config has no hook `{}` (its hooks: {})",
                    w.id,
                    ids.join(", ")
                )
            })?;
            let hook = hooks.swap_remove(at);
            ensure!(
                (1..=MAX_WEIGHT).contains(&w.weight),
                "{key}.weight: must be 1 to {MAX_WEIGHT}, not {}",
                w.weight
            );
            picks.extend(std::iter::repeat_n(i as u16, w.weight as usize));
            mix.push(MixHook::new(&key, w, hook)?);
        }
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        Ok(Self {
            hooks: mix,
            picks,
            run,
        })
    }

    pub fn hook_ids(&self) -> Vec<&str> {
        self.hooks.iter().map(|h| h.hook.id.as_str()).collect()
    }

    /// The path of the first hook (without a URL key).
    pub fn first_path(&self) -> &str {
        &self.hooks[0].hook.path
    }

    /// The topics the hooks publish to, each once.
    pub fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.hooks.iter().map(|h| h.hook.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// The longest acknowledgement timeout of the hooks: no answer should take longer.
    pub fn longest_ack_timeout(&self) -> Duration {
        self.hooks
            .iter()
            .map(|h| h.hook.ack_timeout)
            .max()
            .unwrap_or_default()
    }

    /// The topic of the hook at `index`.
    pub fn topic(&self, index: u16) -> &str {
        &self.hooks[usize::from(index)].hook.topic
    }

    fn id(&self, seq: u64) -> [u8; ID_LEN] {
        let mut id = [0u8; ID_LEN];
        let text = format!("{:08x}{seq:016x}", self.run);
        id.copy_from_slice(text.as_bytes());
        id
    }
}

impl MixHook {
    fn new(key: &str, w: &HookFile, hook: Hook) -> Result<Self> {
        let method = sign::sender_method(&hook);
        let mut headers = HeaderMap::new();
        for (name, value) in &w.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("{key}.headers: `{name}` is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .with_context(|| format!("{key}.headers.{name}: not a header value"))?;
            headers.append(name, value);
        }
        let content_type = HeaderValue::from_str(&w.content_type)
            .with_context(|| format!("{key}.content_type: not a header value"))?;
        headers.insert(CONTENT_TYPE, content_type);
        let kind = BodyKind::for_content_type(&w.content_type);
        let sizes = match &w.body_bytes {
            Sizes::One(bytes) => vec![(*bytes, 1)],
            Sizes::Weighted(list) => list.iter().map(|s| (s.bytes, s.weight)).collect(),
        };
        ensure!(
            !sizes.is_empty(),
            "{key}.body_bytes: the list is empty; give a size or sizes"
        );
        let mut bodies = Vec::new();
        for (bytes, weight) in sizes {
            ensure!(
                (1..=MAX_WEIGHT).contains(&weight),
                "{key}.body_bytes: weights must be 1 to {MAX_WEIGHT}, not {weight}"
            );
            let template = Arc::new(
                BodyTemplate::new(kind, bytes).with_context(|| format!("{key}.body_bytes"))?,
            );
            bodies.extend(std::iter::repeat_n(template, weight as usize));
        }
        // Sign once now so that a hook without an active secret is a config error, not a
        // run of 401s.
        if sign::signed_request(&hook, &method, b"{}", SystemTime::now()).is_none() {
            bail!(
                "{key}: hook `{}` has no secret active now to sign with; \
                 set its secret in this process's environment",
                hook.id
            );
        }
        Ok(Self {
            hook,
            method,
            headers,
            bodies,
        })
    }
}

/// A well-mixed 64-bit hash of `seq` (splitmix64's finalizer), so that consecutive
/// requests spread over hooks and sizes rather than cycling in step with the workers.
fn spread(seq: u64, salt: u64) -> u64 {
    let mut z = seq.wrapping_add(salt).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Requests for Mix {
    fn request(&self, seq: u64, to: &Destination) -> (Request<Full<Bytes>>, u16) {
        let pick = self.picks[(spread(seq, 0) % self.picks.len() as u64) as usize];
        let h = &self.hooks[usize::from(pick)];
        let template = &h.bodies[(spread(seq, 1) % h.bodies.len() as u64) as usize];
        let body = template.with_id(&self.id(seq));
        let mut headers = h.headers.clone();
        let path = match sign::signed_request(&h.hook, &h.method, &body, SystemTime::now()) {
            Some(Signed {
                path_and_query,
                headers: credentials,
            }) => {
                for (name, value) in credentials {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        headers.insert(name, value);
                    }
                }
                path_and_query
            }
            // The secret expired during the run: sent unsigned, answered 401, reported.
            None => h.hook.path.clone(),
        };
        let request = to
            .request(h.method.clone(), &path, headers, body)
            .expect("hook paths are valid request targets");
        (request, pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = r#"
[server]
listen = "127.0.0.1:18080"
[kafka]
brokers = "127.0.0.1:9"
[[hooks]]
id = "github"
topic = "lt.github"
auth = { scheme = "hmac", preset = "github", secrets = [{ value = "gh-secret" }] }
[[hooks]]
id = "internal"
topic = "lt.internal"
auth = { scheme = "basic", credentials = [{ username = "svc", password = { env = "LT_PASSWORD" } }] }
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hookgate-scenario-{}-{}",
            std::process::id(),
            spread(
                SystemTime::now()
                    .elapsed()
                    .map_or(0, |d| d.as_nanos() as u64),
                7
            )
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn env() -> Environment {
        Environment::from_vars([("LT_PASSWORD", "pw")])
    }

    fn destination() -> Destination {
        Destination::http1("127.0.0.1:18080").unwrap()
    }

    #[test]
    fn loads_a_scenario_and_signs_for_each_hook() {
        let dir = dir();
        write(&dir, "gateway.toml", GATEWAY);
        let path = write(
            &dir,
            "mixed.toml",
            r#"
description = "two hooks"
gateway_config = "gateway.toml"
rate = 100
duration = "3s"
[[hooks]]
id = "github"
weight = 3
headers = { "x-github-event" = "push" }
body_bytes = [{ bytes = 512, weight = 1 }, { bytes = 2048, weight = 1 }]
[[hooks]]
id = "internal"
content_type = "application/x-www-form-urlencoded"
body_bytes = 300
"#,
        );
        let scenario = Scenario::load_with(&path, &env()).unwrap();
        assert_eq!(scenario.name, "mixed");
        assert_eq!(scenario.target, "http://127.0.0.1:18080");
        assert_eq!(scenario.duration, Some(Duration::from_secs(3)));
        let config = scenario.load_config();
        assert_eq!(config.rate, Some(100.0));
        assert!(config.collect_ids);

        let mix = &scenario.mix;
        let mut per_hook = [0u32; 2];
        let mut sizes = BTreeMap::new();
        let mut bodies = std::collections::HashSet::new();
        for seq in 0..4000 {
            let (request, hook) = mix.request(seq, &destination());
            per_hook[usize::from(hook)] += 1;
            let (parts, body) = request.into_parts();
            let body = body_bytes(body);
            assert!(bodies.insert(body.clone()), "bodies are distinct");
            match hook {
                0 => {
                    assert_eq!(parts.uri, "/hooks/github");
                    assert_eq!(parts.headers["x-github-event"], "push");
                    assert_eq!(parts.headers["content-type"], "application/json");
                    let expected = format!("sha256={}", hmac_hex(b"gh-secret", &body));
                    assert_eq!(parts.headers["x-hub-signature-256"], expected.as_str());
                    *sizes.entry(body.len()).or_insert(0) += 1;
                }
                _ => {
                    assert_eq!(parts.uri, "/hooks/internal");
                    assert_eq!(parts.headers["authorization"], "Basic c3ZjOnB3");
                    assert_eq!(body.len(), 300);
                    assert!(body.starts_with(b"id="));
                }
            }
        }
        // 3:1 by weight, and the two sizes 1:1, within sampling noise.
        assert!((2800..3200).contains(&per_hook[0]), "{per_hook:?}");
        assert_eq!(sizes.len(), 2);
        assert!(sizes.values().all(|&n| n > 1200), "{sizes:?}");
        assert_eq!(mix.topic(1), "lt.internal");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn body_bytes(body: Full<Bytes>) -> Bytes {
        let collect = http_body_util::BodyExt::collect(body);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(collect).unwrap().to_bytes()
    }

    fn hmac_hex(key: &[u8], data: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn mistakes_name_the_key() {
        let dir = dir();
        write(&dir, "gateway.toml", GATEWAY);
        for (scenario, expected) in [
            (
                "gateway_config = \"gateway.toml\"\n[[hooks]]\nid = \"nope\"\n",
                "hooks[0].id: the gateway config has no hook `nope` (its hooks: github, internal)",
            ),
            (
                "gateway_config = \"gateway.toml\"\n[[hooks]]\nid = \"github\"\nweight = 0\n",
                "hooks[0].weight: must be 1 to 1000, not 0",
            ),
            (
                "gateway_config = \"gateway.toml\"\n[[hooks]]\nid = \"github\"\nbody_bytes = 10\n",
                "hooks[0].body_bytes",
            ),
            (
                "gateway_config = \"gateway.toml\"\nhooks = []\n",
                "`hooks` is empty",
            ),
            (
                "gateway_config = \"gateway.toml\"\nrate = 5\nduration = \"5\"\nhooks = []\n",
                "`duration`",
            ),
            (
                "gateway_config = \"missing.toml\"\nhooks = []\n",
                "missing.toml",
            ),
            (
                "gateway_config = \"gateway.toml\"\nconection = 3\nhooks = []\n",
                "conection",
            ),
        ] {
            let path = write(&dir, "bad.toml", scenario);
            let error = format!("{:#}", Scenario::load_with(&path, &env()).unwrap_err());
            assert!(
                error.contains(expected),
                "{error}\n  should contain: {expected}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_hook_without_its_secret_is_refused_before_the_run() {
        let dir = dir();
        write(&dir, "gateway.toml", GATEWAY);
        let path = write(
            &dir,
            "s.toml",
            "gateway_config = \"gateway.toml\"\n[[hooks]]\nid = \"internal\"\n",
        );
        // The gateway config itself refuses a missing secret reference.
        let error = format!(
            "{:#}",
            Scenario::load_with(&path, &Environment::from_vars(Vec::<(&str, &str)>::new()))
                .unwrap_err()
        );
        assert!(error.contains("LT_PASSWORD"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
