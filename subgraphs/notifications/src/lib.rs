//! The notifications subgraph. For now it serves its federation SDL, `/health` and `/ready`;
//! its domain arrives with the issue that builds it.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use axum::Router;
use kit::auth::JwtKeys;
use kit::config::ServiceConfig;
use kit::server::Shutdown;
use mongodb::Database;
use tokio::net::TcpListener;

pub const SERVICE: &str = "notifications";
pub const DEFAULT_PORT: u16 = 3005;

pub type NotificationsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub struct Query;

#[Object]
impl Query {
    /// The version of the notifications service.
    async fn notifications_service_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

pub fn schema() -> NotificationsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

pub async fn app(config: &ServiceConfig, db: Database) -> anyhow::Result<Router> {
    Ok(kit::server::subgraph_router(
        schema(),
        db,
        JwtKeys::hs256(&config.jwt_secret),
        config.max_body_bytes,
    ))
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
