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

use kit::bootstrap::{App, OwnSettings, Subgraph};
use kit::config::{ConfigError, Secret, ServiceConfig, Vars};
use mongodb::Database;

pub use graphql::NotificationsSchema;

pub const SERVICE: &str = "notifications";
pub const DEFAULT_PORT: u16 = 3005;

/// Everything the service is configured with.
pub type Settings = kit::bootstrap::Settings<Own>;

/// The notifications service's own settings.
#[derive(Debug, Clone)]
pub struct Own {
    pub delivery: service::DeliverySettings,
    pub smtp: channels::SmtpSettings,
    pub webhook_secret: Secret,
    pub webhooks: channels::WebhookPolicy,
}

impl OwnSettings for Own {
    fn from_vars(vars: &dyn Vars, service: &mut ServiceConfig) -> Result<Own, ConfigError> {
        let webhook_secret = vars
            .get("WEBHOOK_SIGNING_SECRET")
            .map(Secret::new)
            .unwrap_or_else(|| {
                Secret::new(format!(
                    "whsec-{}",
                    kit::auth::sha256_hex(service.service_token.expose())
                ))
            });
        Ok(Own {
            delivery: service::DeliverySettings::from_vars(vars)?,
            smtp: channels::SmtpSettings::from_vars(vars)?,
            webhook_secret,
            webhooks: channels::WebhookPolicy::from_vars(vars),
        })
    }
}

/// A started notifications service: its app, background tasks and parts.
pub type Service = kit::bootstrap::Running<service::Notifications>;

/// The schema's shape (no data attached): what the committed SDL is made from.
pub fn schema() -> NotificationsSchema {
    graphql::bare_schema()
}

fn parts(settings: &Settings, db: &Database) -> service::Notifications {
    let http = settings.webhooks.client(settings.delivery.http_timeout);
    let (feed, _) = tokio::sync::broadcast::channel(settings.delivery.subscriber_buffer.max(1));
    service::Notifications {
        store: store::Store::new(db),
        clock: settings.clock.clone(),
        settings: settings.delivery.clone(),
        smtp: settings.smtp.clone(),
        webhook_secret: settings.webhook_secret.clone(),
        webhooks: settings.webhooks.clone(),
        http,
        feed,
        instance: settings.service.instance.clone(),
    }
}

impl Subgraph for service::Notifications {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Own = Own;

    /// Indexes, the app (GraphQL, websockets, `POST /internal/events`), the delivery
    /// worker and the notification tail.
    async fn start(settings: &Settings, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let n = parts(settings, &db);
        n.store.ensure_indexes().await?;
        app.consumer(service::AlertEvents(n.clone())).await?;
        app.background().push(n.spawn_worker());
        app.background().push(n.spawn_tail());
        app.graphql(graphql::build_schema(n.clone(), settings.user_directory()));
        Ok(n)
    }

    fn sdl(_: &Settings, _: &Database) -> String {
        kit::federation_sdl(&schema())
    }
}
