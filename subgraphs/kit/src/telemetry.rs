//! Structured logging set-up: the shared contract's, the same for every process.

pub use contract::telemetry::{LogFormat, flush, init};
