//! Consumer integration tests: flows and pollers against a real Kafka-protocol broker
//! (`TEST_KAFKA_BROKERS`) and real local HTTP servers standing in for external APIs.

mod connections;
mod flows;
mod oauth2;
mod outbound;
mod pollers;
mod redrive;
mod restart;
mod schedules;
mod ssrf;
mod support;
mod transport;
