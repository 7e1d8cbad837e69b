//! The users subgraph: registration, login, JWT access tokens, rotating refresh
//! tokens, profiles, and the `User` entity.

pub mod accounts;
pub mod domain;
pub mod graphql;
pub mod store;

use axum::Router;
use kit::auth::JwtKeys;
use kit::bootstrap::{App, Subgraph};
use kit::config::{ConfigError, ServiceConfig, Vars};
use mongodb::Database;

pub const SERVICE: &str = "users";
pub const DEFAULT_PORT: u16 = 3001;

/// The schema over a database (indexes are not touched).
pub fn schema(config: &ServiceConfig, db: &Database) -> graphql::UsersSchema {
    graphql::build_schema(accounts(config, db))
}

fn accounts(config: &ServiceConfig, db: &Database) -> accounts::Accounts {
    accounts::Accounts::new(store::Store::new(db), JwtKeys::hs256(&config.jwt_secret))
}

/// The HTTP app over a connected database; creates the indexes it needs.
pub async fn app(config: &ServiceConfig, db: Database) -> anyhow::Result<Router> {
    Ok(kit::bootstrap::start::<accounts::Accounts>(config, db)
        .await?
        .router)
}

impl Subgraph for accounts::Accounts {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Settings = ServiceConfig;

    fn settings(_: &dyn Vars, service: ServiceConfig) -> Result<ServiceConfig, ConfigError> {
        Ok(service)
    }

    fn service_config(settings: &ServiceConfig) -> &ServiceConfig {
        settings
    }

    fn sdl(config: &ServiceConfig, db: &Database) -> String {
        kit::federation_sdl(&schema(config, db))
    }

    async fn start(config: &ServiceConfig, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let accounts = accounts(config, &db);
        accounts.store().ensure_indexes().await?;
        app.graphql(graphql::build_schema(accounts.clone()));
        Ok(accounts)
    }
}
