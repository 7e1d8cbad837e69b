//! The notifications subgraph: notifications made from `budget.alert` events
//! (`POST /internal/events`, once per event), their read state, preferences, delivery
//! over email (SMTP) and signed webhooks with retries and a state per channel, and the
//! `budgetAlerts` / `notificationAdded` subscriptions fed by tailing the stored
//! notifications (so every instance sees every notification).

pub mod channels;
pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;

use axum::Router;
use kit::clock::Clock;
use kit::config::{ConfigError, Env, Secret, ServiceConfig, Vars};
use kit::server::{Background, Shutdown};
use kit::users::{UserDirectory, UsersSettings};
use mongodb::Database;
use tokio::net::TcpListener;

pub use graphql::NotificationsSchema;

pub const SERVICE: &str = "notifications";
pub const DEFAULT_PORT: u16 = 3005;

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceConfig,
    pub users: UsersSettings,
    pub delivery: service::DeliverySettings,
    pub smtp: channels::SmtpSettings,
    pub webhook_secret: Secret,
    pub clock: Clock,
}

impl Settings {
    pub fn from_vars(
        vars: &(impl Vars + ?Sized),
        service: ServiceConfig,
    ) -> Result<Settings, ConfigError> {
        let webhook_secret = vars
            .get("WEBHOOK_SIGNING_SECRET")
            .map(Secret::new)
            .unwrap_or_else(|| {
                Secret::new(format!(
                    "whsec-{}",
                    kit::auth::sha256_hex(service.service_token.expose())
                ))
            });
        Ok(Settings {
            users: UsersSettings::from_vars(vars)?,
            delivery: service::DeliverySettings::from_vars(vars)?,
            smtp: channels::SmtpSettings::from_vars(vars)?,
            webhook_secret,
            clock: Clock::system(),
            service,
        })
    }
}

pub struct Service {
    pub router: Router,
    pub background: Background,
    pub notifications: service::Notifications,
}

/// The schema's shape (no data attached): what the committed SDL is made from.
pub fn schema() -> NotificationsSchema {
    graphql::bare_schema()
}

fn parts(settings: &Settings, db: &Database) -> service::Notifications {
    let http = reqwest::Client::builder()
        .timeout(settings.delivery.http_timeout)
        .build()
        .unwrap_or_default();
    let (feed, _) = tokio::sync::broadcast::channel(settings.delivery.subscriber_buffer.max(1));
    service::Notifications {
        store: store::Store::new(db),
        clock: settings.clock.clone(),
        settings: settings.delivery.clone(),
        smtp: settings.smtp.clone(),
        webhook_secret: settings.webhook_secret.clone(),
        http,
        feed,
    }
}

/// Creates indexes and starts the app (GraphQL, websockets, `POST /internal/events`),
/// the delivery worker and the notification tail.
pub async fn start(settings: &Settings, db: Database) -> anyhow::Result<Service> {
    let n = parts(settings, &db);
    n.store.ensure_indexes().await?;
    let events = kit::events::consumer_app(
        service::AlertEvents(n.clone()),
        &db,
        settings.service.service_token.clone(),
    )
    .await?;
    let mut background = Background::default();
    background.push(n.spawn_worker());
    background.push(n.spawn_tail());
    let schema = graphql::build_schema(n.clone(), UserDirectory::new(settings.users.clone()));
    let router = kit::server::service_router(schema, db, &settings.service).merge(events);
    Ok(Service {
        router,
        background,
        notifications: n,
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
