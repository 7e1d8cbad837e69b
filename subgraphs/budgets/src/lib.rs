//! The budgets subgraph: budgets per category (or overall) and period, the spending
//! ledger built from the expenses subgraph's events (`POST /internal/events`), and
//! budget alerts, each sent as a `budget.alert` event to the notifications subgraph.

pub mod admin;
pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;

use axum::Router;
use kit::clock::Clock;
use kit::config::{ConfigError, Env, ServiceConfig, Vars};
use kit::events::{Consumer, DispatchSettings, Dispatcher};
use kit::server::{Background, Shutdown};
use kit::users::{UserDirectory, UsersSettings};
use mongodb::Database;
use tokio::net::TcpListener;

pub const SERVICE: &str = "budgets";
pub const DEFAULT_PORT: u16 = 3003;
/// Where alert events go unless `EVENT_CONSUMERS` says otherwise.
pub const DEFAULT_CONSUMERS: &str = "notifications=http://127.0.0.1:3005";

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceConfig,
    pub users: UsersSettings,
    pub consumers: Vec<Consumer>,
    pub dispatch: DispatchSettings,
    pub clock: Clock,
}

impl Settings {
    pub fn from_vars(
        vars: &(impl Vars + ?Sized),
        service: ServiceConfig,
    ) -> Result<Settings, ConfigError> {
        Ok(Settings {
            service,
            users: UsersSettings::from_vars(vars)?,
            consumers: kit::events::consumers_from_vars(vars, DEFAULT_CONSUMERS)?,
            dispatch: DispatchSettings::from_vars(vars)?,
            clock: Clock::system(),
        })
    }
}

pub struct Service {
    pub router: Router,
    pub background: Background,
    pub budgets: service::Budgets,
}

fn parts(settings: &Settings, db: &Database) -> (service::Budgets, UserDirectory) {
    let dispatcher = Dispatcher::new(
        db.clone(),
        &[store::ALERTS],
        settings.consumers.clone(),
        settings.service.service_token.clone(),
        settings.dispatch.clone(),
    );
    let budgets = service::Budgets {
        store: store::Store::new(db),
        dispatcher,
        clock: settings.clock.clone(),
    };
    (budgets, UserDirectory::new(settings.users.clone()))
}

pub fn schema(settings: &Settings, db: &Database) -> graphql::BudgetsSchema {
    let (budgets, users) = parts(settings, db);
    graphql::build_schema(budgets, users)
}

/// The federation SDL, as committed in `schema/budgets.graphql`.
pub async fn sdl() -> anyhow::Result<String> {
    let service = ServiceConfig::from_vars(&[("JWT_SECRET", &"x".repeat(32)[..])], SERVICE, 0)?;
    let settings = Settings::from_vars(&[("PORT", "0")], service)?;
    Ok(kit::federation_sdl(&schema(
        &settings,
        &kit::db::unconnected("sdl"),
    )))
}

/// Creates indexes and starts the app (GraphQL plus `POST /internal/events`) and the
/// alert event dispatcher.
pub async fn start(settings: &Settings, db: Database) -> anyhow::Result<Service> {
    let (budgets, users) = parts(settings, &db);
    budgets.store.ensure_indexes().await?;
    budgets.store.seed_rates().await?;
    budgets.dispatcher.ensure_indexes().await?;
    let events = kit::events::consumer_app(
        service::ExpenseEvents(budgets.clone()),
        &db,
        settings.service.service_token.clone(),
    )
    .await?;
    let mut background = Background::default();
    background.push(budgets.dispatcher.spawn());
    let schema = graphql::build_schema(budgets.clone(), users);
    let router = kit::server::service_router(schema, db, &settings.service)
        .merge(events)
        .merge(admin::router(
            budgets.store.clone(),
            settings.service.service_token.clone(),
        ));
    Ok(Service {
        router,
        background,
        budgets,
    })
}

/// Connects to MongoDB and serves until `shutdown` completes.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let settings = Settings::from_vars(&Env, config)?;
    let db = kit::db::connect(&settings.service.mongodb_uri, &settings.service.database).await?;
    let service = start(&settings, db).await?;
    kit::server::serve(listener, service.router, shutdown).await?;
    drop(service.background);
    Ok(())
}
