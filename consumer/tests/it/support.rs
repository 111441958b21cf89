//! What the consumer's integration tests share.

use hookgate_testkit::server::Reply;
use serde_json::Value;

/// A whole consumer running in this process.
pub use hookgate_consumer::runtime::Running;

/// A reply with a JSON body.
pub fn json_reply(status: u16, body: Value) -> Reply {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap()
}
