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

use kit::bootstrap::{App, OwnSettings, Subgraph};
use kit::config::{ConfigError, Env, ServiceConfig, Vars};
use kit::events::Dispatcher;
use mongodb::Database;

pub use graphql::AnalyticsSchema;

pub const SERVICE: &str = "analytics";
pub const DEFAULT_PORT: u16 = 3004;
/// Where weekly summary events go unless `EVENT_CONSUMERS` says otherwise.
pub const DEFAULT_CONSUMERS: &str = "notifications=http://127.0.0.1:3005";

/// Everything the service is configured with.
pub type Settings = kit::bootstrap::Settings<Own>;

/// The analytics service's own settings.
#[derive(Debug, Clone)]
pub struct Own {
    pub weekly: weekly::WeeklySettings,
    /// `BUDGETS_URL`: the budgets subgraph's GraphQL endpoint, for the budget pace
    /// insight (default `http://127.0.0.1:3003/graphql`).
    pub budgets_url: String,
}

impl OwnSettings for Own {
    const DEFAULT_CONSUMERS: &'static str = DEFAULT_CONSUMERS;

    fn from_vars(vars: &dyn Vars, _: &mut ServiceConfig) -> Result<Own, ConfigError> {
        Ok(Own {
            weekly: weekly::WeeklySettings::from_vars(vars)?,
            budgets_url: kit::config::var_or(
                vars,
                "BUDGETS_URL",
                "http://127.0.0.1:3003/graphql".to_string(),
            )?,
        })
    }
}

/// A started analytics service: its app, background tasks and parts.
pub type Service = kit::bootstrap::Running<service::Analytics>;

fn parts(settings: &Settings, db: &Database, events: Dispatcher) -> service::Analytics {
    service::Analytics {
        store: store::Store::new(db),
        clock: settings.clock.clone(),
        budgets: budgets::BudgetsClient::new(settings.budgets_url.clone()),
        events,
    }
}

/// The schema's shape (no data attached): what the committed SDL is made from.
pub fn schema() -> AnalyticsSchema {
    graphql::bare_schema()
}

impl Subgraph for service::Analytics {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Own = Own;

    fn sdl(_: &Settings, _: &Database) -> String {
        kit::federation_sdl(&schema())
    }

    /// Indexes, the app (GraphQL plus `POST /internal/events`), the weekly summary job
    /// and the delivery of its events.
    async fn start(settings: &Settings, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let dispatcher = app.dispatcher(&[store::WEEKLY_RUNS], settings).await?;
        let analytics = parts(settings, &db, dispatcher);
        analytics.store.ensure_indexes().await?;
        let (job, weekly) = (analytics.clone(), settings.weekly.clone());
        app.background()
            .every(settings.weekly.interval, "weekly summary run", move || {
                let (job, weekly) = (job.clone(), weekly.clone());
                async move { job.run_weekly(&weekly, &job.events).await }
            });
        app.consumer(service::ExpenseEvents(analytics.clone()))
            .await?;
        app.graphql(graphql::build_schema(
            analytics.clone(),
            settings.user_directory(),
        ));
        Ok(analytics)
    }
}

/// Rebuilds the read models from the event log (the `analytics-rebuild` command).
pub async fn rebuild(config: ServiceConfig) -> anyhow::Result<u64> {
    let db = kit::db::connect(&config.mongodb_uri, &config.database).await?;
    let settings = Settings::from_vars(&Env, config)?;
    let analytics = parts(&settings, &db, Dispatcher::inert(&db));
    analytics.store.ensure_indexes().await?;
    Ok(analytics.rebuild().await?)
}
