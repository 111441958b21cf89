//! Oversize input against the `hookgate` binary (null sink, default limits): headers of
//! 1 MiB, a chunked body of 10 × the limit, a gzip bomb, each refused fast; then 500
//! concurrent uploads at the limit, all accepted, with the peak memory they cost, which
//! goes back to the system once they are done.

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default `max_body`.
const LIMIT: usize = 256 * 1024;

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Gateway {
    /// A `/proc/PID/status` figure in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

/// Starts the binary on the null sink; returns it and its address once it answers.
fn start() -> (Gateway, String) {
    let dir = std::env::temp_dir().join(format!(
        "hookgate-oversize-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (http, admin) = (hookgate_testkit::free_port(), hookgate_testkit::free_port());
    let config = dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [kafka]\nbrokers = \"unused:9092\"\n[[hooks]]\nid = \"open\"\ntopic = \"t\"\nauth = {{ scheme = \"none\" }}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "--null-sink", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It logs its listening line once it serves.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.next().expect("the gateway exited").unwrap();
        if line.contains("hookgate listening") {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not start");
    }
    // Keep draining its logs so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let _ = std::fs::remove_dir_all(dir);
    (Gateway(child), format!("127.0.0.1:{http}"))
}

/// Writes `head` then `body` (stopping early if the gateway answers and closes), and
/// returns the status, how long the answer took from the first byte sent, and the
/// answer's head.
async fn exchange(addr: &str, head: &[u8], body: &[u8]) -> (u16, Duration, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (mut rx, mut tx) = tcp.split();
    let write = async {
        if tx.write_all(head).await.is_ok() {
            for chunk in body.chunks(16 * 1024) {
                if tx.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
    };
    let read = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        (answer, started.elapsed())
    };
    let ((answer, took), ()) = tokio::join!(read, async {
        tokio::select! {
            () = write => {}
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    });
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, took, text)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_input_is_refused_fast_and_uploads_at_the_limit_cost_bounded_memory() {
    let (gw, addr) = start();
    let base_kib = gw.status_kib("VmRSS");

    // 1 MiB of headers: 431.
    let mut head = b"POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n".to_vec();
    for i in 0..1024 {
        head.extend_from_slice(format!("x-pad-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let (status, took, answer) = exchange(&addr, &head, b"{}").await;
    assert_eq!(status, 431, "{answer}");
    assert!(took < Duration::from_millis(50), "431 after {took:?}");
    eprintln!("oversize: 1 MiB of headers answered 431 in {took:?}");

    // A chunked body of 10 × the limit: 413 before it is all sent.
    let mut chunked = Vec::new();
    for _ in 0..(10 * LIMIT / 8192) {
        let piece = format!("\"{}\",", "b".repeat(8188));
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece.as_bytes());
        chunked.extend_from_slice(b"\r\n");
    }
    let (status, took, answer) = exchange(
        &addr,
        b"POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunked,
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(took < Duration::from_millis(50), "413 after {took:?}");
    eprintln!("oversize: a chunked body of 10 × the limit answered 413 in {took:?}");

    // A gzip bomb: 64 MiB of zeros in about 64 KiB, refused once decompression passes
    // the limit.
    let bomb = gzip(&vec![b'0'; 64 << 20]);
    assert!(bomb.len() < LIMIT);
    let head = format!(
        "POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
        bomb.len()
    );
    let (status, took, answer) = exchange(&addr, head.as_bytes(), &bomb).await;
    assert_eq!(status, 413, "{answer}");
    assert!(took < Duration::from_millis(50), "413 after {took:?}");
    eprintln!(
        "oversize: a gzip bomb ({} bytes, 64 MiB inflated) answered 413 in {took:?}",
        bomb.len()
    );

    // 500 uploads at the limit at once: all accepted, memory bounded by what they carry.
    let body = format!("{{\"pad\":\"{}\"}}", "c".repeat(LIMIT - 10));
    assert_eq!(body.len(), LIMIT);
    let head = format!(
        "POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {LIMIT}\r\n\r\n"
    );
    let uploads: Vec<_> = (0..500)
        .map(|_| {
            let (addr, head, body) = (addr.clone(), head.clone(), body.clone());
            tokio::spawn(async move { exchange(&addr, head.as_bytes(), body.as_bytes()).await })
        })
        .collect();
    let mut accepted = 0;
    for u in uploads {
        accepted += usize::from(u.await.unwrap().0 == 202);
    }
    let peak_kib = gw.status_kib("VmHWM");
    eprintln!(
        "oversize: base {base_kib} KiB, peak {peak_kib} KiB after 500 uploads of {LIMIT} bytes ({} KiB of bodies)",
        500 * LIMIT / 1024
    );
    assert_eq!(accepted, 500);
    // limit × concurrency + base, with the same again for the event each one becomes.
    let bound = base_kib + 2 * 500 * LIMIT as u64 / 1024;
    assert!(peak_kib <= bound, "peak {peak_kib} KiB over {bound} KiB");

    // The burst is over: what it cost goes back to the system within seconds.
    let after_kib = gw.status_kib("VmRSS");
    let back = base_kib + base_kib / 10 + 8 * 1024;
    let started = Instant::now();
    let mut rss_kib = after_kib;
    while rss_kib > back && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss_kib = gw.status_kib("VmRSS");
    }
    eprintln!(
        "oversize: resident {after_kib} KiB after the uploads, {rss_kib} KiB {:?} later",
        started.elapsed()
    );
    assert!(
        after_kib > back,
        "the uploads did not grow memory ({after_kib} KiB): nothing to give back"
    );
    assert!(rss_kib <= back, "resident {rss_kib} KiB, over {back} KiB");
}
