//! Identifiers: UUIDv7 strings, also used as `_id`; the typed ids of the shared contract.

pub use contract::ids::*;
