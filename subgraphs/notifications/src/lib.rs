//! The notifications subgraph: notifications made from `budget.alert` events
//! (`POST /internal/events`, once per event), their read state, preferences, delivery
//! over email (SMTP), signed webhooks, SMS (a provider's HTTP API, to a verified
//! number) and Web Push (to each registered browser) with retries and a state per
//! delivery, and the `budgetAlerts` / `notificationAdded` subscriptions fed by tailing
//! the stored notifications (so every instance sees every notification).

pub mod channels;
pub mod contacts;
pub mod domain;
pub mod graphql;
pub mod service;
pub mod store;

use kit::bootstrap::{App, OwnSettings, Subgraph};
use kit::config::{ConfigError, Secret, ServiceConfig, Vars};
use mongodb::Database;
use std::sync::Arc;

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
    pub push: channels::push::PushSettings,
    pub sms: channels::sms::SmsSettings,
    /// The key verification codes are hashed under (derived from the service token).
    pub code_key: Secret,
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
        let code_key = Secret::new(format!(
            "phone-code-{}",
            kit::auth::sha256_hex(service.service_token.expose())
        ));
        Ok(Own {
            delivery: service::DeliverySettings::from_vars(vars)?,
            smtp: channels::SmtpSettings::from_vars(vars)?,
            webhook_secret,
            webhooks: channels::WebhookPolicy::from_vars(vars),
            push: channels::push::PushSettings::from_vars(vars)?,
            sms: channels::sms::SmsSettings::from_vars(vars)?,
            code_key,
        })
    }
}

/// A started notifications service: its app, background tasks and parts.
pub type Service = kit::bootstrap::Running<service::Notifications>;

/// The schema's shape (no data attached): what the committed SDL is made from.
pub fn schema() -> NotificationsSchema {
    graphql::bare_schema()
}

/// The VAPID key pair: the configured one, or the development one (made once and kept
/// in the database, so every instance and restart signs alike), with a warning.
async fn vapid(settings: &Settings, store: &store::Store) -> anyhow::Result<channels::push::Vapid> {
    let subject = &settings.push.subject;
    if let Some(key) = &settings.push.private_key {
        return channels::push::Vapid::new(key.expose(), subject).map_err(anyhow::Error::msg);
    }
    let key = store
        .development_key(&channels::push::Vapid::generate())
        .await?;
    let vapid = channels::push::Vapid::new(&key, subject).map_err(anyhow::Error::msg)?;
    tracing::warn!(
        public_key = vapid.public_key(),
        "VAPID_PRIVATE_KEY is not set: Web Push signs with a development key kept in the database; set one for production"
    );
    Ok(vapid)
}

fn parts(
    settings: &Settings,
    db: &Database,
    vapid: channels::push::Vapid,
) -> service::Notifications {
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
        push: settings.push.clone(),
        push_http: settings.push.policy.client(settings.delivery.http_timeout),
        vapid: Arc::new(vapid),
        sms: settings.sms.clone(),
        sms_http: channels::sms::SmsSettings::client(settings.delivery.http_timeout),
        code_key: settings.code_key.clone(),
        feed,
        instance: settings.service.instance.clone(),
        users: Arc::new(settings.user_directory()),
    }
}

impl Subgraph for service::Notifications {
    const NAME: &'static str = SERVICE;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Own = Own;

    /// Indexes, the app (GraphQL, websockets, `POST /internal/events`), the delivery
    /// worker and the notification tail.
    async fn start(settings: &Settings, db: Database, app: &mut App) -> anyhow::Result<Self> {
        let store = store::Store::new(&db);
        store.ensure_indexes().await?;
        let n = parts(settings, &db, vapid(settings, &store).await?);
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
