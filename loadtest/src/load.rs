//! Load generators.
//!
//! *Closed loop*: each worker owns one in-flight request and sends the next as
//! soon as the previous response arrived, which finds the server's maximum
//! throughput. *Open loop* (`rate`): request `i` is due at `start + i / rate`,
//! worker `w` taking the requests with `i % workers == w`, and latency is
//! measured from the due time rather than the send time. A worker held up by
//! a slow response sends its overdue requests at once, and each is charged
//! the time it spent waiting for its turn: the correction for coordinated
//! omission that wrk2 makes, without which a server that stalls for a second
//! would be credited with the few requests that were sent during the stall
//! instead of the many that should have been.

mod body;
mod config;
mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::Full;
use tokio::time::{sleep, sleep_until, Instant};

pub use body::{json_body, BodyKind, BodyTemplate, ID_LEN, MIN_JSON_BODY};
pub use config::{
    parse_duration, parse_header, Destination, LoadConfig, Requests, WORKERS_PER_H2_CONNECTION,
};
use conn::{H2Slot, Link, Outcome};

use crate::cpu::{self, Process};
use crate::report::{Report, Stats, Usage};
use crate::verify::Acks;

/// In a closed loop, a refused connection would otherwise be retried in a
/// tight loop, burning the CPU the server under test needs.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// Where to connect, and how to address requests.
struct Target {
    addr: SocketAddr,
    destination: Destination,
    /// The URL's path and query: where the fixed request goes.
    path: String,
}

impl Target {
    async fn resolve(url: &str, http2: bool) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL `{url}`"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!("https is not supported: the harness measures plain HTTP"),
            _ => bail!("the URL must start with http://"),
        }
        let authority = uri.authority().context("the URL has no host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        // Resolved once so that DNS is neither timed nor repeated on
        // reconnects.
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self {
            addr,
            destination: Destination {
                http2,
                host: HeaderValue::from_str(authority.as_str())?,
                authority,
            },
            path,
        })
    }
}

/// The request every worker sends when there is no [`Requests`]. It is built once; the
/// body is shared by reference count, so a request costs no copy of it.
#[derive(Debug)]
struct Fixed(Request<Full<Bytes>>);

impl Fixed {
    fn new(config: &LoadConfig, target: &Target) -> Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            headers.append(name.clone(), value.clone());
        }
        if !config.body.is_empty() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, config.content_type.clone());
        }
        let request = target.destination.request(
            config.method.clone(),
            &target.path,
            headers,
            config.body.clone(),
        )?;
        Ok(Self(request))
    }
}

impl Requests for Fixed {
    fn request(&self, _seq: u64, _to: &Destination) -> (Request<Full<Bytes>>, u16) {
        let mut request = Request::new(self.0.body().clone());
        *request.method_mut() = self.0.method().clone();
        *request.uri_mut() = self.0.uri().clone();
        *request.headers_mut() = self.0.headers().clone();
        (request, 0)
    }
}

/// The timetable shared by all workers.
struct Plan {
    requests: Arc<dyn Requests>,
    destination: Destination,
    collect_ids: bool,
    start: Instant,
    measure_start: Instant,
    end: Instant,
    rate: Option<f64>,
    workers: u64,
    timeout: Duration,
}

impl Plan {
    fn due(&self, request: u64, rate: f64) -> Instant {
        self.start + Duration::from_secs_f64(request as f64 / rate)
    }

    /// Measured requests of `worker` from its `next`-th on that are due before
    /// the end.
    fn remaining(&self, worker: u64, next: u64, rate: f64) -> u64 {
        (next..)
            .map(|k| self.due(worker + k * self.workers, rate))
            .take_while(|&due| due < self.end)
            .filter(|&due| due >= self.measure_start)
            .count() as u64
    }
}

async fn worker(plan: Arc<Plan>, index: u64, mut link: Link) -> Stats {
    let mut stats = Stats::new();
    let mut next = 0u64;
    loop {
        let seq = index + next * plan.workers;
        let scheduled = match plan.rate {
            None => {
                let now = Instant::now();
                if now >= plan.end {
                    break;
                }
                next += 1;
                now
            }
            Some(rate) => {
                let due = plan.due(seq, rate);
                if due >= plan.end {
                    break;
                }
                let now = Instant::now();
                if now >= plan.end {
                    stats.missed += plan.remaining(index, next, rate);
                    break;
                }
                next += 1;
                if due > now {
                    sleep_until(due).await;
                }
                due
            }
        };
        let measured = scheduled >= plan.measure_start;
        if !link.ready(plan.timeout).await {
            if measured {
                stats.errors.connect += 1;
            }
            if plan.rate.is_none() {
                sleep(CONNECT_RETRY).await;
            }
            continue;
        }
        let (request, group) = plan.requests.request(seq, &plan.destination);
        let outcome = link.exchange(request, plan.timeout, plan.collect_ids).await;
        let done = Instant::now();
        if let Outcome::Response { status, id } = &outcome {
            // Warm-up events are acknowledged events too: the loss check covers them.
            if plan.collect_ids && (200..300).contains(status) {
                match id {
                    Some(id) => stats.acks.push((group, id.clone())),
                    None => stats.acks_without_id += 1,
                }
            }
        }
        // Latency is taken for the requests due (or sent) in the measured window;
        // counts for the answers that arrive in it, whenever their request was due.
        // An open loop that has fallen behind spends the window answering requests
        // due before it, and those answers are the server's throughput too.
        if measured {
            stats.sent += 1;
        }
        if done < plan.measure_start {
            continue;
        }
        let at = done - plan.measure_start;
        match outcome {
            Outcome::Response { status, .. } if measured => {
                stats.record_response(status, group, done - scheduled, at)
            }
            Outcome::Response { status, .. } => stats.count_response(status, group, at),
            Outcome::Timeout => stats.errors.timeout += 1,
            Outcome::Io => stats.errors.io += 1,
        }
    }
    stats
}

/// CPU samples taken at the two ends of the measured window.
struct Sample {
    at: Instant,
    server: Option<Duration>,
    client: Option<Duration>,
}

impl Sample {
    fn take(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            server: server_pid.and_then(|pid| cpu::cpu_time(Process::Pid(pid)).ok()),
            client: cpu::cpu_time(Process::This).ok(),
        }
    }
}

fn usage(
    before: Option<Duration>,
    after: Option<Duration>,
    wall: Duration,
    peak_rss_kib: Option<u64>,
) -> Option<Usage> {
    Some(Usage {
        cpu: after?.saturating_sub(before?),
        wall,
        peak_rss_kib,
    })
}

/// Runs the load described by `config` and reports on its measured window.
pub async fn run(config: &LoadConfig) -> Result<Report> {
    Ok(run_collecting(config).await?.0)
}

/// [`run`], also returning the acknowledged event ids.
pub async fn run_collecting(config: &LoadConfig) -> Result<(Report, Acks)> {
    config.validate()?;
    let target = Target::resolve(&config.url, config.http2).await?;
    let requests: Arc<dyn Requests> = match &config.requests {
        Some(requests) => requests.clone(),
        None => Arc::new(Fixed::new(config, &target)?),
    };
    if let Some(pid) = config.server_pid {
        cpu::cpu_time(Process::Pid(pid))
            .with_context(|| format!("cannot read the CPU time of server pid {pid}"))?;
    }

    let workers = config.connections;
    let links: Vec<Link> = if config.http2 {
        let slots: Vec<Arc<H2Slot>> = (0..config.h2_connection_count())
            .map(|_| Arc::new(H2Slot::new(target.addr)))
            .collect();
        (0..workers)
            .map(|i| Link::h2(slots[i % slots.len()].clone()))
            .collect()
    } else {
        (0..workers).map(|_| Link::h1(target.addr)).collect()
    };
    // Connect before the clock starts so that the first requests of an open
    // loop are not charged for handshakes. A failure here is retried, and
    // counted, by the worker.
    let timeout = config.timeout;
    let connecting: Vec<_> = links
        .into_iter()
        .map(|mut link| {
            tokio::spawn(async move {
                link.ready(timeout).await;
                link
            })
        })
        .collect();
    let mut links = Vec::with_capacity(workers);
    for task in connecting {
        links.push(task.await?);
    }

    let start = Instant::now();
    let measure_start = start + config.warmup;
    let plan = Arc::new(Plan {
        requests,
        destination: target.destination.clone(),
        collect_ids: config.collect_ids,
        start,
        measure_start,
        end: measure_start + config.duration,
        rate: config.rate,
        workers: workers as u64,
        timeout,
    });
    let pid = config.server_pid;
    let first_sample = tokio::spawn(async move {
        sleep_until(measure_start).await;
        Sample::take(pid)
    });
    let tasks: Vec<_> = links
        .into_iter()
        .enumerate()
        .map(|(i, link)| tokio::spawn(worker(plan.clone(), i as u64, link)))
        .collect();
    let mut stats = Stats::new();
    let mut acks = Acks::default();
    for task in tasks {
        let mut done = task.await?;
        acks.ids.append(&mut done.acks);
        acks.without_id += done.acks_without_id;
        stats.merge(&done);
    }
    // An open loop's workers stop after their last due request, which may be
    // just before the end; the window is never shorter than asked for.
    sleep_until(plan.end).await;
    let last = Sample::take(pid);
    let first = first_sample.await?;
    let measured = last.at.saturating_duration_since(measure_start);
    let wall = last.at.saturating_duration_since(first.at);

    let server = pid.and_then(|pid| {
        let rss = cpu::peak_rss_kib(Process::Pid(pid)).ok();
        let usage = usage(first.server, last.server, wall, rss);
        if usage.is_none() {
            eprintln!("warning: server pid {pid} could not be read at both ends of the run");
        }
        Some((pid, usage?))
    });
    let client = usage(first.client, last.client, wall, None);
    let report = Report::new(config.setup(), &stats, measured, server, client);
    Ok((report, acks))
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::baseline;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn durations_without_a_valid_unit_are_refused() {
        for bad in ["", "10", "s", "10x", "ten s", "-1s", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn headers_parse_as_name_colon_value() {
        let (name, value) = parse_header("X-Hook-Signature: sha256=abc:def").unwrap();
        assert_eq!(name, "x-hook-signature");
        assert_eq!(value, "sha256=abc:def");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty name").is_err());
    }

    async fn start_baseline() -> (SocketAddr, JoinHandle<Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, tokio::spawn(baseline::serve(listener)))
    }

    fn short(url: String) -> LoadConfig {
        let mut config = LoadConfig::new(url);
        config.duration = Duration::from_secs(1);
        config.warmup = Duration::ZERO;
        config.body = json_body(256).unwrap();
        config
    }

    #[tokio::test]
    async fn closed_loop_against_the_baseline() {
        let (addr, server) = start_baseline().await;
        let mut config = short(format!("http://{addr}/hooks/github"));
        config.connections = 4;
        // The server shares this process, which is enough to exercise the
        // CPU path.
        config.server_pid = Some(std::process::id());
        let report = run(&config).await.unwrap();
        server.abort();

        assert!(report.requests_sent > 0);
        assert_eq!(report.responses.len(), 1, "{:?}", report.responses);
        assert_eq!(report.responses[&202], report.requests_sent);
        assert_eq!(report.errors.total(), 0);
        assert!(report.requests_per_s > 0.0);
        assert!(report.succeeded());
        let latency = report.latency_us.unwrap();
        assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
        assert_eq!(
            report.throughput_per_s.iter().sum::<u64>(),
            report.requests_sent
        );
        assert!(report.server_cpu_us_per_request.is_some());
        assert!(report.server_peak_rss_kib.unwrap() > 0);
    }

    #[tokio::test]
    async fn open_loop_keeps_to_the_rate() {
        let (addr, server) = start_baseline().await;
        let mut config = short(format!("http://{addr}/"));
        config.connections = 4;
        config.rate = Some(200.0);
        let report = run(&config).await.unwrap();
        server.abort();

        let sent = report.requests_sent as f64;
        assert!((180.0..=220.0).contains(&sent), "sent {sent}");
        assert_eq!(report.responses[&202], report.requests_sent);
        assert_eq!(report.errors.total(), 0);
    }

    #[tokio::test]
    async fn warm_up_is_not_recorded() {
        let (addr, server) = start_baseline().await;
        let mut config = short(format!("http://{addr}/"));
        config.connections = 2;
        config.rate = Some(100.0);
        config.warmup = Duration::from_millis(500);
        let report = run(&config).await.unwrap();
        server.abort();

        // 150 requests are sent in all; only the 100 after the warm-up count.
        let sent = report.requests_sent + report.missed;
        assert!((90..=110).contains(&sent), "sent {sent}");
        assert!(report.duration_s >= 1.0 && report.duration_s < 1.5);
    }

    /// A server that stalls once for `stall`, on request number `at`
    /// (counting from 0).
    async fn start_stalling_server(at: u64, stall: Duration) -> SocketAddr {
        use std::sync::atomic::{AtomicU64, Ordering};

        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let service = service_fn(move |_request| {
                    let stalls = seen.fetch_add(1, Ordering::Relaxed) == at;
                    async move {
                        if stalls {
                            sleep(stall).await;
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_in_the_window_count_though_their_requests_were_due_before_it() {
        // The first request stalls the only connection for 800 ms, past the end of a
        // 500 ms warm-up; the ~50 requests due during the warm-up are answered in the
        // measured window, once the connection catches up.
        let addr = start_stalling_server(0, Duration::from_millis(800)).await;
        let mut config = short(format!("http://{addr}/"));
        config.connections = 1;
        config.rate = Some(100.0);
        config.warmup = Duration::from_millis(500);
        let report = run(&config).await.unwrap();

        let due_in_window = report.requests_sent + report.missed;
        assert!((90..=110).contains(&due_in_window), "{due_in_window}");
        let answered = report.responses[&200];
        assert!(
            answered >= due_in_window + 40,
            "{answered} answers counted, {due_in_window} requests due in the window"
        );
        assert!(report.requests_per_s * report.duration_s >= answered as f64 - 0.5);
        // Only the requests due in the window are timed.
        let latency = report.latency_us.unwrap();
        assert!(latency.max < 1_000_000, "{latency:?}");
    }

    #[tokio::test]
    async fn open_loop_charges_a_stall_to_the_requests_it_delayed() {
        let addr = start_stalling_server(20, Duration::from_millis(300)).await;
        let mut config = short(format!("http://{addr}/"));
        config.connections = 1;
        config.rate = Some(100.0);
        let report = run(&config).await.unwrap();

        // The stall delays the ~30 requests due during it, not just the one
        // it answered late; timed from their send they would all look fast
        // and p90 would be well under a millisecond.
        let latency = report.latency_us.unwrap();
        assert!(latency.max >= 290_000, "{latency:?}");
        assert!(latency.p90 >= 100_000, "{latency:?}");
        assert!(latency.p50 < 100_000, "{latency:?}");
        assert_eq!(report.errors.total(), 0);
    }

    #[tokio::test]
    async fn a_late_response_is_a_timeout_and_the_connection_is_replaced() {
        let addr = start_stalling_server(5, Duration::from_secs(10)).await;
        let mut config = short(format!("http://{addr}/"));
        config.connections = 1;
        // Generous, so that only the stall times out on a busy CI machine.
        config.timeout = Duration::from_millis(500);
        let report = run(&config).await.unwrap();

        assert_eq!(report.errors.timeout, 1);
        assert_eq!(report.errors.connect + report.errors.io, 0);
        assert!(report.responses[&200] > 5, "{:?}", report.responses);
        assert_eq!(report.requests_sent, report.responses[&200] + 1);
    }

    #[tokio::test]
    async fn http2_against_the_baseline() {
        let (addr, server) = start_baseline().await;
        let mut config = short(format!("http://{addr}/"));
        config.duration = Duration::from_millis(500);
        config.connections = 8;
        config.http2 = true;
        config.h2_connections = Some(2);
        let report = run(&config).await.unwrap();
        server.abort();

        assert_eq!(report.setup.h2_connections, 2);
        assert!(report.requests_sent > 0);
        assert_eq!(report.responses[&202], report.requests_sent);
        assert_eq!(report.errors.total(), 0);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let mut config = short(format!("http://{addr}/"));
        config.duration = Duration::from_millis(300);
        config.connections = 2;
        let report = run(&config).await.unwrap();

        assert_eq!(report.requests_sent, 0);
        assert!(report.errors.connect > 0);
        assert!(!report.succeeded());
        assert_eq!(report.latency_us, None);
    }

    #[test]
    fn bad_configs_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for change in [
            (|c: &mut LoadConfig| c.connections = 0) as fn(&mut LoadConfig),
            |c| c.rate = Some(0.0),
            |c| c.duration = Duration::ZERO,
            |c| c.url = "https://127.0.0.1:1/".to_owned(),
            |c| c.url = "127.0.0.1:1".to_owned(),
        ] {
            let mut config = LoadConfig::new("http://127.0.0.1:1/");
            change(&mut config);
            assert!(rt.block_on(run(&config)).is_err(), "{config:?}");
        }
    }
}
