//! The users subgraph: registration, login, JWT access tokens, rotating refresh
//! tokens, profiles, and the `User` entity.

pub mod accounts;
pub mod domain;
pub mod graphql;
pub mod households;
pub mod store;

use axum::Router;
use kit::auth::JwtKeys;
use kit::bootstrap::{App, Settings, Subgraph};
use kit::clock::Clock;
use kit::config::ServiceConfig;
use mongodb::Database;

pub const SERVICE: &str = "users";
pub const DEFAULT_PORT: u16 = 3001;

/// The schema over a database (indexes are not touched).
pub fn schema(config: &ServiceConfig, db: &Database) -> graphql::UsersSchema {
    let clock = Clock::system();
    graphql::build_schema(
        accounts(config, db, clock.clone()),
        households::Households::new(store::Store::new(db), clock),
    )
}

fn accounts(config: &ServiceConfig, db: &Database, clock: Clock) -> accounts::Accounts {
    accounts::Accounts::new(
        store::Store::new(db),
        JwtKeys::hs256(&config.jwt_secret),
        clock,
    )
}

/// The HTTP app over a connected database; creates the indexes it needs.
pub async fn app(config: &ServiceConfig, db: Database) -> anyhow::Result<Router> {
    app_at(config, db, Clock::system()).await
}

/// [`app`] reading the time from `clock` (tests pin it).
pub async fn app_at(config: &ServiceConfig, db: Database, clock: Clock) -> anyhow::Result<Router> {
    let mut settings = Settings::from_vars(&[("PORT", "0")], config.clone())?;
    settings.clock = clock;
    let running = kit::bootstrap::start::<accounts::Accounts>(&settings, db).await?;
    Ok(running.router)
}

impl Subgraph for accounts::Accounts {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Own = ();

    fn sdl(settings: &Settings<()>, db: &Database) -> String {
        kit::federation_sdl(&schema(&settings.service, db))
    }

    async fn start(settings: &Settings<()>, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let accounts = accounts(&settings.service, &db, settings.clock.clone());
        accounts.store().ensure_indexes().await?;
        let households =
            households::Households::new(accounts.store().clone(), settings.clock.clone());
        app.graphql(graphql::build_schema(accounts.clone(), households.clone()))
            .routes(households::internal_routes(
                households,
                settings.service.service_token.clone(),
            ));
        Ok(accounts)
    }
}
