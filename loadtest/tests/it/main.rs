//! The harness as a user runs it, in one test binary: against the gateway and the suite's
//! real broker (`smoke`), its command line (`cli`), and each chaos fault for a few
//! seconds (`chaos`).

mod chaos;
mod cli;
mod smoke;
