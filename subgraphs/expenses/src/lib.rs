//! The expenses subgraph: expenses and incomes with validation, cursor pagination,
//! filters, idempotency keys, recurring expenses, the `Expense` entity and
//! `User.expenses`. Every write emits an `expense.*` event through the outbox
//! (`kit::events`) to the budgets and analytics subgraphs.

pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;

use std::time::Duration;

use axum::Router;
use kit::clock::Clock;
use kit::config::{ConfigError, Env, ServiceConfig, Vars, var_or};
use kit::events::{Consumer, DispatchSettings, Dispatcher};
use kit::server::{Background, Shutdown};
use kit::users::{UserDirectory, UsersSettings};
use mongodb::Database;
use tokio::net::TcpListener;

pub const SERVICE: &str = "expenses";
pub const DEFAULT_PORT: u16 = 3002;
/// `MAX_BODY_BYTES` default of this service (16 MiB): room for a CSV import of
/// `domain::csv_format::MAX_IMPORT_BYTES` (5 MiB) encoded in a JSON request.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Where expense events go unless `EVENT_CONSUMERS` says otherwise.
pub const DEFAULT_CONSUMERS: &str = "budgets=http://127.0.0.1:3003,analytics=http://127.0.0.1:3004";

/// Everything the service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceConfig,
    pub users: UsersSettings,
    pub consumers: Vec<Consumer>,
    pub dispatch: DispatchSettings,
    /// `RECURRENCE_INTERVAL_MS` (default 60000): how often due occurrences are created.
    pub recurrence_interval: Duration,
    pub clock: Clock,
}

impl Settings {
    pub fn from_vars(
        vars: &(impl Vars + ?Sized),
        service: ServiceConfig,
    ) -> Result<Settings, ConfigError> {
        let mut service = service;
        // An import request carries up to 5 MiB of CSV inside a JSON string (quotes and
        // line ends escaped), so this service's default body limit is larger than the
        // kit's 1 MiB; `MAX_BODY_BYTES` still overrides it.
        if vars.get("MAX_BODY_BYTES").is_none() {
            service.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
        }
        Ok(Settings {
            service,
            users: UsersSettings::from_vars(vars)?,
            consumers: kit::events::consumers_from_vars(vars, DEFAULT_CONSUMERS)?,
            dispatch: DispatchSettings::from_vars(vars)?,
            recurrence_interval: Duration::from_millis(var_or(
                vars,
                "RECURRENCE_INTERVAL_MS",
                60_000u64,
            )?),
            clock: Clock::system(),
        })
    }
}

/// A running service's parts: the HTTP app and its background tasks.
pub struct Service {
    pub router: Router,
    pub background: Background,
    pub expenses: service::Expenses,
}

fn parts(settings: &Settings, db: &Database) -> (service::Expenses, UserDirectory) {
    let dispatcher = Dispatcher::new(
        db.clone(),
        &[store::EXPENSES],
        settings.consumers.clone(),
        settings.service.service_token.clone(),
        settings.dispatch.clone(),
    );
    let expenses = service::Expenses {
        store: store::Store::new(db),
        dispatcher,
        clock: settings.clock.clone(),
    };
    (expenses, UserDirectory::new(settings.users.clone()))
}

/// The schema over a database (nothing is touched or started).
pub fn schema(settings: &Settings, db: &Database) -> graphql::ExpensesSchema {
    let (expenses, users) = parts(settings, db);
    graphql::build_schema(expenses, users)
}

/// The federation SDL, as committed in `schema/expenses.graphql`.
pub async fn sdl() -> anyhow::Result<String> {
    let service = ServiceConfig::from_vars(&[("JWT_SECRET", &"x".repeat(32)[..])], SERVICE, 0)?;
    let settings = Settings::from_vars(&[("PORT", "0")], service)?;
    Ok(kit::federation_sdl(&schema(
        &settings,
        &kit::db::unconnected("sdl"),
    )))
}

/// Creates indexes and starts the app and its background tasks (event delivery and
/// the recurrence scheduler).
pub async fn start(settings: &Settings, db: Database) -> anyhow::Result<Service> {
    let (expenses, users) = parts(settings, &db);
    expenses.store.ensure_indexes().await?;
    expenses.dispatcher.ensure_indexes().await?;
    let mut background = Background::default();
    background.push(expenses.dispatcher.spawn());
    let scheduler = expenses.clone();
    background.every(settings.recurrence_interval, "recurrence run", move || {
        let scheduler = scheduler.clone();
        async move { scheduler.run_recurrences().await }
    });
    let schema = graphql::build_schema(expenses.clone(), users);
    let router = kit::server::service_router(schema, db, &settings.service);
    Ok(Service {
        router,
        background,
        expenses,
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
