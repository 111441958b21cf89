//! Readiness: whether this gateway can accept webhooks right now. `/readyz` reads it; the
//! topic watcher and the Kafka sink write it.
//!
//! Ready means: the brokers answered the last metadata check, every hook's topic exists,
//! and no permanent produce error (authorization, unknown topic, message too large) was
//! seen in the last [`PERMANENT_ERROR_HOLD`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a permanent produce error keeps the gateway unready.
pub const PERMANENT_ERROR_HOLD: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Health {
    broker_reachable: AtomicBool,
    /// Set at SIGTERM: the gateway is leaving, so a load balancer should stop sending.
    draining: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    missing_topics: Vec<String>,
    broker_error: Option<String>,
    permanent_error: Option<(Instant, String)>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// Records the outcome of a metadata check.
    pub fn set_metadata(&self, result: Result<Vec<String>, String>) {
        let mut s = self.state.lock().expect("health lock");
        match result {
            Ok(missing) => {
                self.broker_reachable.store(true, Ordering::Relaxed);
                s.broker_error = None;
                s.missing_topics = missing;
            }
            Err(e) => {
                self.broker_reachable.store(false, Ordering::Relaxed);
                s.broker_error = Some(e);
            }
        }
    }

    /// Records a produce error that retrying will not fix.
    pub fn set_permanent_error(&self, reason: String) {
        self.state.lock().expect("health lock").permanent_error = Some((Instant::now(), reason));
    }

    /// Marks the gateway as shutting down: not ready from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let s = self.state.lock().expect("health lock");
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("draining: shutting down".to_string());
        }
        if !self.broker_reachable.load(Ordering::Relaxed) {
            reasons.push(match &s.broker_error {
                Some(e) => format!("brokers unreachable: {e}"),
                None => "brokers not checked yet".to_string(),
            });
        }
        for t in &s.missing_topics {
            reasons.push(format!("topic `{t}` does not exist"));
        }
        if let Some((at, e)) = &s.permanent_error {
            if at.elapsed() < PERMANENT_ERROR_HOLD {
                reasons.push(format!("permanent produce error: {e}"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_brokers_and_topics() {
        let h = Health::new();
        assert!(h.readiness().is_err());
        h.set_metadata(Ok(vec!["t1".into()]));
        assert_eq!(
            h.readiness().unwrap_err(),
            vec!["topic `t1` does not exist"]
        );
        h.set_metadata(Ok(vec![]));
        assert!(h.readiness().is_ok());
        h.set_permanent_error("authorization failed".into());
        assert!(h.readiness().unwrap_err()[0].contains("authorization"));
        h.set_metadata(Err("timed out".into()));
        assert!(h.readiness().unwrap_err()[0].contains("unreachable"));
    }
}
