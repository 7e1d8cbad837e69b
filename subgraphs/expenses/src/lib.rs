//! The expenses subgraph: expenses and incomes with validation, cursor pagination,
//! filters, idempotency keys, recurring expenses, the `Expense` entity and
//! `User.expenses`. Every write emits an `expense.*` event through the outbox
//! (`kit::events`) to the budgets and analytics subgraphs.

pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;

use std::time::Duration;

use kit::bootstrap::{App, OwnSettings, Subgraph};
use kit::config::{ConfigError, ServiceConfig, Vars, var_or};
use kit::events::Dispatcher;
use mongodb::Database;

pub const SERVICE: &str = "expenses";
pub const DEFAULT_PORT: u16 = 3002;
/// `MAX_BODY_BYTES` default of this service (16 MiB): room for a CSV import of
/// `domain::csv_format::MAX_IMPORT_BYTES` (5 MiB) encoded in a JSON request.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Where expense events go unless `EVENT_CONSUMERS` says otherwise.
pub const DEFAULT_CONSUMERS: &str = "budgets=http://127.0.0.1:3003,analytics=http://127.0.0.1:3004";

/// Everything the service is configured with.
pub type Settings = kit::bootstrap::Settings<Own>;

/// The expenses service's own settings.
#[derive(Debug, Clone)]
pub struct Own {
    /// `RECURRENCE_INTERVAL_MS` (default 60000): how often due occurrences are created.
    pub recurrence_interval: Duration,
}

impl OwnSettings for Own {
    const DEFAULT_CONSUMERS: &'static str = DEFAULT_CONSUMERS;

    fn from_vars(vars: &dyn Vars, service: &mut ServiceConfig) -> Result<Own, ConfigError> {
        // An import request carries up to 5 MiB of CSV inside a JSON string (quotes and
        // line ends escaped), so this service's default body limit is larger than the
        // kit's 1 MiB; `MAX_BODY_BYTES` still overrides it.
        if vars.get("MAX_BODY_BYTES").is_none() {
            service.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
        }
        let interval = var_or(vars, "RECURRENCE_INTERVAL_MS", 60_000u64)?;
        Ok(Own {
            recurrence_interval: Duration::from_millis(interval),
        })
    }
}

/// A started expenses service: its app, background tasks and parts.
pub type Service = kit::bootstrap::Running<service::Expenses>;

impl Subgraph for service::Expenses {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Own = Own;

    fn sdl(settings: &Settings, db: &Database) -> String {
        let expenses = Self::new(db, Dispatcher::inert(db), settings.clock.clone());
        kit::federation_sdl(&graphql::build_schema(expenses, settings.user_directory()))
    }

    /// Indexes, the app, the delivery of its events and the recurrence scheduler.
    async fn start(settings: &Settings, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let dispatcher = app.dispatcher(&[store::EXPENSES], settings).await?;
        let mut expenses = Self::new(&db, dispatcher, settings.clock.clone());
        expenses.transactional = kit::changes::replicated(&db).await;
        expenses.users = Some(std::sync::Arc::new(settings.user_directory()));
        expenses.store.ensure_indexes().await?;
        let scheduler = expenses.clone();
        app.background()
            .every(settings.recurrence_interval, "recurrence run", move || {
                let scheduler = scheduler.clone();
                async move { scheduler.run_recurrences().await }
            });
        app.graphql(graphql::build_schema(
            expenses.clone(),
            settings.user_directory(),
        ));
        Ok(expenses)
    }
}
