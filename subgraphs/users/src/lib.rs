//! The users subgraph: registration, login, JWT access tokens, rotating refresh
//! tokens, profiles, and the `User` entity.

pub mod accounts;
pub mod domain;
pub mod graphql;
pub mod store;

use axum::Router;
use kit::auth::JwtKeys;
use kit::config::ServiceConfig;
use kit::server::Shutdown;
use mongodb::Database;
use tokio::net::TcpListener;

pub const SERVICE: &str = "users";
pub const DEFAULT_PORT: u16 = 3001;

/// The schema over a database (indexes are not touched).
pub fn schema(config: &ServiceConfig, db: &Database) -> graphql::UsersSchema {
    let accounts =
        accounts::Accounts::new(store::Store::new(db), JwtKeys::hs256(&config.jwt_secret));
    graphql::build_schema(accounts)
}

/// The HTTP app over a connected database; creates the indexes it needs.
pub async fn app(config: &ServiceConfig, db: Database) -> anyhow::Result<Router> {
    store::Store::new(&db).ensure_indexes().await?;
    let schema = schema(config, &db);
    Ok(kit::server::service_router(schema, db, config))
}

/// Connects to MongoDB and serves until `shutdown` completes.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let db = kit::db::connect(&config.mongodb_uri, &config.database).await?;
    let app = app(&config, db).await?;
    kit::server::serve(listener, app, shutdown).await?;
    Ok(())
}
