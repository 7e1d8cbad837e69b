//! The contract every service of the Smart Expense Tracker shares, written once:
//!
//! - [`error::ErrorCode`]: every stable error code, its HTTP status and its GraphQL
//!   `extensions.code`;
//! - [`auth`]: the access-token claims, the one verifier (HS256, RS256, JWKS) that the
//!   router and every subgraph use, and the signer the users subgraph issues with;
//! - [`ids`]: typed ids (`UserId`, `ExpenseId`, `BudgetId`, ...);
//! - [`events`]: the event envelope and the versioned [`events::DomainEvent`] that every
//!   producer emits and every consumer parses;
//! - [`json::keep_exact_numbers`]: client JSON read without rounding its numbers;
//! - [`shutdown::signal`] and [`telemetry::init`].
//!
//! It holds no database code and no HTTP routes.

pub mod auth;
pub mod error;
pub mod events;
pub mod households;
pub mod ids;
pub mod json;
pub mod shutdown;
pub mod telemetry;

pub use error::ErrorCode;
