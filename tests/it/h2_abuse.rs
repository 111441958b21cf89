//! HTTP/2 abuse, written frame by frame: a rapid-reset client (streams opened and
//! cancelled at once) and a CONTINUATION flood (one header block that never ends). The
//! gateway must close the abusive connection early, and keep serving everyone else.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http, GatewayBuilder, RunningGateway};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `POST /hooks/open` over http, without touching the dynamic table.
fn request_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    b.push(0x04); // :path, literal without indexing, name from the static table
    b.push(11);
    b.extend_from_slice(b"/hooks/open");
    b.push(0x01); // :authority
    b.push(9);
    b.extend_from_slice(b"127.0.0.1");
    b
}

/// What the server did with an abusive connection.
struct Outcome {
    /// The GOAWAY's error code, if one came.
    goaway: Option<u32>,
    /// Bytes written before the server stopped reading or closed.
    sent: usize,
    closed_after: Duration,
}

/// Writes `frames` (after the preface and SETTINGS) until the server closes the
/// connection or `limit` bytes have gone; reads the server's frames meanwhile.
async fn abuse(addr: &str, mut frames: impl FnMut(usize) -> Vec<u8>, limit: usize) -> Outcome {
    let started = Instant::now();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rx, mut tx) = tcp.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        let mut goaway = None;
        while let Ok(n) = rx.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                if buf[3] == GOAWAY && len >= 8 {
                    goaway = Some(u32::from_be_bytes(buf[13..17].try_into().unwrap()));
                }
                buf.drain(..9 + len);
            }
        }
        (goaway, started.elapsed())
    });
    let mut sent = 0;
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let mut i = 0;
    while sent < limit && !reader.is_finished() {
        while out.len() < 64 * 1024 {
            out.extend(frames(i));
            i += 1;
        }
        if tx.write_all(&out).await.is_err() {
            break;
        }
        sent += out.len();
        out.clear();
    }
    let (goaway, closed_after) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the server closed the connection")
        .unwrap();
    Outcome {
        goaway,
        sent,
        closed_after,
    }
}

async fn gateway() -> RunningGateway {
    GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .hook("id = \"open\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await
}

/// Legitimate requests, one after another, while `attack` runs: all accepted, none slow.
async fn served_meanwhile<F: std::future::Future<Output = Outcome>>(
    gw: &RunningGateway,
    attack: F,
) -> (Outcome, Duration) {
    let url = gw.hook_url("/hooks/open");
    let legit = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..50 {
            let started = Instant::now();
            let r = http::post(&url).body("{}").send().await.unwrap();
            assert_eq!(r.status, 202);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    tokio::join!(attack, legit)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rapid_reset_client_is_disconnected_and_others_are_served() {
    let gw = gateway().await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let block = request_block();
    let attack = abuse(
        &addr,
        |i| {
            let stream = 2 * i as u32 + 1;
            let mut f = frame(HEADERS, END_HEADERS, stream, &block);
            f.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
            f
        },
        64 << 20,
    );
    let (outcome, slowest) = served_meanwhile(&gw, attack).await;
    eprintln!(
        "rapid reset: GOAWAY {:?} after {} bytes, {:?}; slowest legitimate request {slowest:?}",
        outcome.goaway, outcome.sent, outcome.closed_after
    );
    // ENHANCE_YOUR_CALM, well before 64 MiB of opened-and-cancelled streams.
    assert_eq!(outcome.goaway, Some(0xb), "no GOAWAY(ENHANCE_YOUR_CALM)");
    assert!(outcome.sent < 8 << 20, "{} bytes accepted", outcome.sent);
    assert!(outcome.closed_after < Duration::from_secs(5));
    assert!(
        slowest < Duration::from_secs(1),
        "a legitimate request took {slowest:?}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_flood_is_cut_off_and_others_are_served() {
    let gw = gateway().await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    // One header block: HEADERS without END_HEADERS, then CONTINUATION frames of 100-byte
    // literal headers that never end it.
    let mut header = vec![0x00, 3];
    header.extend_from_slice(b"x-a");
    header.push(100);
    header.extend_from_slice(&[b'b'; 100]);
    let block = request_block();
    let attack = abuse(
        &addr,
        |i| {
            if i == 0 {
                frame(HEADERS, 0, 1, &block)
            } else {
                frame(CONTINUATION, 0, 1, &header)
            }
        },
        64 << 20,
    );
    let (outcome, slowest) = served_meanwhile(&gw, attack).await;
    eprintln!(
        "CONTINUATION flood: GOAWAY {:?} after {} bytes, {:?}; slowest legitimate request {slowest:?}",
        outcome.goaway, outcome.sent, outcome.closed_after
    );
    // The header list is capped at server.max_header_bytes (16 KiB): the connection ends,
    // with a GOAWAY, long before the flood does.
    assert!(outcome.goaway.is_some(), "no GOAWAY");
    assert!(outcome.sent < 4 << 20, "{} bytes accepted", outcome.sent);
    assert!(outcome.closed_after < Duration::from_secs(5));
    assert!(
        slowest < Duration::from_secs(1),
        "a legitimate request took {slowest:?}"
    );
    gw.stop().await.unwrap();
}
