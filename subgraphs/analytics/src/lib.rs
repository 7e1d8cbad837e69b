//! The analytics subgraph: read models built from the expenses subgraph's events
//! (`POST /internal/events`, idempotent by event id), monthly summaries, trends,
//! category analysis, daily patterns, top expenses (`Expense` entities resolved by the
//! expenses subgraph) and insights. Every received event is kept in the analytics'
//! own log; `analytics-rebuild` recomputes all read models by replaying that log.

pub mod budgets;
pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;
pub mod weekly;

use axum::Router;
use kit::clock::Clock;
use kit::config::{ConfigError, Env, ServiceConfig, Vars};
use kit::events::{Consumer, DispatchSettings, Dispatcher};
use kit::server::{Background, Shutdown};
use kit::users::{UserDirectory, UsersSettings};
use mongodb::Database;
use tokio::net::TcpListener;

pub use graphql::AnalyticsSchema;

pub const SERVICE: &str = "analytics";
pub const DEFAULT_PORT: u16 = 3004;
/// Where weekly summary events go unless `EVENT_CONSUMERS` says otherwise.
pub const DEFAULT_CONSUMERS: &str = "notifications=http://127.0.0.1:3005";

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceConfig,
    pub users: UsersSettings,
    pub consumers: Vec<Consumer>,
    pub dispatch: DispatchSettings,
    pub weekly: weekly::WeeklySettings,
    /// `BUDGETS_URL`: the budgets subgraph's GraphQL endpoint, for the budget pace
    /// insight (default `http://127.0.0.1:3003/graphql`).
    pub budgets_url: String,
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
            weekly: weekly::WeeklySettings::from_vars(vars)?,
            budgets_url: kit::config::var_or(
                vars,
                "BUDGETS_URL",
                "http://127.0.0.1:3003/graphql".to_string(),
            )?,
            clock: Clock::system(),
        })
    }
}

pub struct Service {
    pub router: Router,
    pub analytics: service::Analytics,
    /// Delivers the `weekly.summary` events.
    pub dispatcher: Dispatcher,
    pub background: Background,
}

fn parts(settings: &Settings, db: &Database) -> service::Analytics {
    service::Analytics {
        store: store::Store::new(db),
        clock: settings.clock.clone(),
        budgets: budgets::BudgetsClient::new(settings.budgets_url.clone()),
    }
}

/// The schema's shape (no data attached): what the committed SDL is made from.
pub fn schema() -> AnalyticsSchema {
    graphql::bare_schema()
}

/// Creates indexes and builds the app (GraphQL plus `POST /internal/events`), and
/// starts the weekly summary job and the delivery of its events.
pub async fn start(settings: &Settings, db: Database) -> anyhow::Result<Service> {
    let analytics = parts(settings, &db);
    analytics.store.ensure_indexes().await?;
    let dispatcher = Dispatcher::new(
        db.clone(),
        &[weekly::WEEKLY_RUNS],
        settings.consumers.clone(),
        settings.service.service_token.clone(),
        settings.dispatch.clone(),
    );
    dispatcher.ensure_indexes().await?;
    let mut background = Background::default();
    background.push(dispatcher.spawn());
    let (job, job_dispatcher, weekly) = (
        analytics.clone(),
        dispatcher.clone(),
        settings.weekly.clone(),
    );
    background.every(settings.weekly.interval, "weekly summary run", move || {
        let (job, job_dispatcher, weekly) = (job.clone(), job_dispatcher.clone(), weekly.clone());
        async move { job.run_weekly(&weekly, &job_dispatcher).await }
    });
    let events = kit::events::consumer_app(
        service::ExpenseEvents(analytics.clone()),
        &db,
        settings.service.service_token.clone(),
    )
    .await?;
    let schema = graphql::build_schema(
        analytics.clone(),
        UserDirectory::new(settings.users.clone()),
    );
    let router = kit::server::service_router(schema, db, &settings.service).merge(events);
    Ok(Service {
        router,
        analytics,
        dispatcher,
        background,
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

/// Rebuilds the read models from the event log (the `analytics-rebuild` command).
pub async fn rebuild(config: ServiceConfig) -> anyhow::Result<u64> {
    let db = kit::db::connect(&config.mongodb_uri, &config.database).await?;
    let settings = Settings::from_vars(&Env, config)?;
    let analytics = parts(&settings, &db);
    analytics.store.ensure_indexes().await?;
    Ok(analytics.rebuild().await?)
}
