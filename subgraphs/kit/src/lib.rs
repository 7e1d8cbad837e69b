//! The shared kit of the Smart Expense Tracker services: configuration, the MongoDB
//! connection, JWT claims, error codes, money, scalars, logging, the standard subgraph
//! app and test helpers.

pub mod auth;
pub mod bootstrap;
pub mod changes;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod households;
pub mod ids;
pub mod limits;
pub mod loader;
pub mod money;
pub mod scalars;
pub mod server;
pub mod telemetry;
pub mod users;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{AppError, AppResult, ErrorCode};
pub use money::{Currency, Money};

/// The federation SDL of a subgraph schema, as committed under `schema/`.
pub fn federation_sdl<Q, M, S>(schema: &async_graphql::Schema<Q, M, S>) -> String
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation())
}
