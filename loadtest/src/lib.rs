//! hookgate's load-test harness: drives HTTP load at a server (hookgate, or the
//! bare-hyper [`baseline`] that gives the floor to compare it with) and reports
//! throughput, coordinated-omission-corrected latency and the server's CPU cost
//! per request.
//!
//! The binary in `main.rs` is only the command line; everything it runs lives
//! here so that tests can drive a load in-process.

pub mod baseline;
pub mod chaos;
pub mod chart;
pub mod cpu;
pub mod h2_abuse;
pub mod load;
pub mod report;
pub mod scenario;
pub mod spawn;
pub mod verify;
