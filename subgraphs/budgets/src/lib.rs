//! The budgets subgraph: budgets per category (or overall) and period, the spending
//! ledger built from the expenses subgraph's events (`POST /internal/events`), and
//! budget alerts, each sent as a `budget.alert` event to the notifications subgraph.

pub mod admin;
pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;

use kit::bootstrap::{App, OwnSettings, Subgraph};
use kit::config::{ConfigError, ServiceConfig, Vars};
use kit::events::Dispatcher;
use mongodb::Database;

pub const SERVICE: &str = "budgets";
pub const DEFAULT_PORT: u16 = 3003;
/// Where alert events go unless `EVENT_CONSUMERS` says otherwise.
pub const DEFAULT_CONSUMERS: &str = "notifications=http://127.0.0.1:3005";

/// Everything the service is configured with (nothing beyond the kit's common settings).
pub type Settings = kit::bootstrap::Settings<Own>;

/// The budgets service's own settings: none but where its alert events go.
#[derive(Debug, Clone)]
pub struct Own;

impl OwnSettings for Own {
    const DEFAULT_CONSUMERS: &'static str = DEFAULT_CONSUMERS;

    fn from_vars(_: &dyn Vars, _: &mut ServiceConfig) -> Result<Own, ConfigError> {
        Ok(Own)
    }
}

/// A started budgets service: its app, background tasks and parts.
pub type Service = kit::bootstrap::Running<service::Budgets>;

impl Subgraph for service::Budgets {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Own = Own;

    fn sdl(settings: &Settings, db: &Database) -> String {
        let budgets = Self::new(db, Dispatcher::inert(db), settings.clock.clone());
        kit::federation_sdl(&graphql::build_schema(budgets, settings.user_directory()))
    }

    /// Indexes, the rates table, the app (GraphQL, `POST /internal/events`, the rates
    /// endpoint) and the alert event dispatcher.
    async fn start(settings: &Settings, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let dispatcher = app.dispatcher(&[store::ALERTS], settings).await?;
        let budgets = Self::new(&db, dispatcher, settings.clock.clone());
        budgets.store.ensure_indexes().await?;
        budgets.store.seed_rates().await?;
        app.consumer(service::ExpenseEvents(budgets.clone()))
            .await?;
        app.graphql(graphql::build_schema(
            budgets.clone(),
            settings.user_directory(),
        ))
        .routes(admin::router(
            budgets.store.clone(),
            settings.service.service_token.clone(),
        ));
        Ok(budgets)
    }
}
