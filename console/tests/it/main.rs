//! The console against the real broker: what the topics carry shows in its API, a dead
//! letter is redriven from it, it refuses callers without a login and forms without
//! their CSRF token, its index is rebuilt from Kafka and stays within its retention.

mod api;
mod index;
mod support;
