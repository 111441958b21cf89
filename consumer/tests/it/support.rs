//! What the consumer's integration tests share.

use hookgate_consumer::admin::Ready;
use hookgate_consumer::config::Settings;
use hookgate_testkit::server::Reply;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A whole consumer (the flows' loop and the pollers) running in this process.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn start(settings: Settings) -> Running {
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(hookgate_consumer::runtime::run(
            settings,
            Ready::default(),
            async {
                let _ = rx.await;
            },
        ));
        Running { stop, task }
    }

    /// Stops it as SIGTERM would, and waits until it has committed and exited.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

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
