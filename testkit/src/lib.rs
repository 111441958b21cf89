//! Test support shared by hookgate's crates.
//!
//! - [`brokers`] and [`topic`]: the suite's real broker (started by scripts/test) and
//!   topic names no other test uses; [`free_port`] for servers tests start;
//! - [`kafka`]: reading records back with `assign()`, and producing events;
//! - [`server`]: a local HTTP(S) server that records what it receives;
//! - [`wait_until`]: waiting for a condition, with a deadline, instead of a fixed sleep.

pub mod kafka;
pub mod server;

/// The broker the suite runs against. Tests that need Kafka fail, never skip, without it.
pub fn brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS").expect(
        "TEST_KAFKA_BROKERS is not set: run the suite with scripts/test, which starts a broker",
    )
}

/// A loopback port that was free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A topic name no other test uses.
pub fn topic(name: &str) -> String {
    format!("it-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Waits until `check` holds, looking every 20 ms; fails the test with `what` after
/// `within`. Tests wait for what they need to have happened, not for a guess at how long
/// it takes.
pub async fn wait_until<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
