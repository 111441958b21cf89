//! Consumer integration tests: flows against a real Kafka-protocol broker
//! (`TEST_KAFKA_BROKERS`) and real local HTTP servers standing in for external APIs.

mod flows;
mod outbound;
mod restart;
