//! Gateway integration tests: the gateway in-process on 127.0.0.1:0, talking to a real
//! Kafka-protocol broker over TCP (`TEST_KAFKA_BROKERS`, started by scripts/test), or to
//! librdkafka's mock cluster where a test needs to take the broker down.

mod support;

mod answers;
mod auth;
mod cli;
mod config_errors;
mod console;
mod contract;
mod deploy;
mod docs;
mod drain;
mod filters;
mod fleet;
mod flows;
mod handshake;
mod idempotency;
mod outage;
mod oversize;
mod packaging;
mod properties;
mod readiness;
mod rejections;
mod reload;
mod replay;
mod requests;
mod sdk;
mod sign;
mod tls;
mod traces;
mod traffic;
