//! The output and input types: wrappers of the domain, and conversions at the edge.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use kit::AppError;
use kit::scalars::Date;

use super::entities::{Budget, BudgetAlert};
use super::service;
use crate::domain::{self, PreferencesChange};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::NotificationType")]
pub enum NotificationType {
    BudgetAlert,
    BudgetExceeded,
    WeeklySummary,
    MonthlyReport,
    System,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Priority")]
pub enum Priority {
    Low,
    Medium,
    High,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Channel")]
pub enum Channel {
    InApp,
    Email,
    Webhook,
    Websocket,
    Sms,
    Push,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::DeliveryStatus")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "contract::events::AlertSeverity")]
pub enum AlertSeverity {
    Warning,
    Critical,
}

pub struct Delivery(pub domain::Delivery);

/// The state of one outside channel of a notification.
#[Object]
impl Delivery {
    async fn channel(&self) -> Channel {
        self.0.channel.into()
    }
    async fn status(&self) -> DeliveryStatus {
        self.0.status.into()
    }
    async fn attempts(&self) -> i64 {
        self.0.attempts
    }
    /// Why the last attempt failed (or why delivery was given up).
    async fn reason(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// When it was sent or given up.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// The device (`PushSubscription.id`) of a PUSH delivery; one per device.
    async fn device_id(&self) -> Option<ID> {
        (self.0.channel == domain::Channel::Push).then(|| ID(self.0.target.clone()))
    }
}

/// A browser registered for Web Push (one per endpoint).
pub struct PushSubscription(pub domain::PushDevice);

#[Object]
impl PushSubscription {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The push service's URL for this browser.
    async fn endpoint(&self) -> &str {
        &self.0.endpoint
    }
    /// What the user calls the device.
    async fn device_name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A phone number waiting for the code sent to it by SMS.
pub struct PhoneVerification(pub domain::PhoneVerification);

#[Object]
impl PhoneVerification {
    /// The number, in E.164.
    async fn phone_number(&self) -> &str {
        &self.0.phone
    }
    /// Until when the code can be confirmed.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    /// Wrong codes that may still be tried.
    async fn attempts_left(&self) -> i64 {
        self.0.attempts_left()
    }
}

/// Shared: one notification goes to every subscriber of its user.
pub struct Notification(pub Arc<domain::Notification>);

impl From<domain::Notification> for Notification {
    fn from(n: domain::Notification) -> Self {
        Notification(Arc::new(n))
    }
}

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> NotificationType {
        self.0.kind.into()
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn priority(&self) -> Priority {
        self.0.priority.into()
    }
    /// The channels this notification goes to (from the preferences when it was made).
    async fn channels(&self) -> Vec<Channel> {
        self.0.channels.iter().map(|&c| c.into()).collect()
    }
    async fn read(&self) -> bool {
        self.0.read
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Delivery state of the outside channels (EMAIL, WEBHOOK, SMS, and PUSH once per
    /// device).
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<Delivery>> {
        let mut ds = service(ctx)?.store.deliveries_of(&self.0.id).await?;
        ds.sort_by(|a, b| (a.channel.as_str(), &a.id).cmp(&(b.channel.as_str(), &b.id)));
        Ok(ds.into_iter().map(Delivery).collect())
    }
}

#[derive(SimpleObject)]
pub struct NotificationEdge {
    pub(super) cursor: String,
    pub(super) node: Notification,
}

#[derive(SimpleObject)]
pub struct NotificationPageInfo {
    pub(super) has_next_page: bool,
    pub(super) end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct NotificationConnection {
    pub(super) edges: Vec<NotificationEdge>,
    pub(super) page_info: NotificationPageInfo,
    /// Matching notifications in all pages.
    pub(super) total_count: i64,
}

#[derive(SimpleObject)]
pub struct ChannelPreference {
    channel: Channel,
    enabled: bool,
}

#[derive(SimpleObject)]
pub struct TypePreference {
    #[graphql(name = "type")]
    kind: NotificationType,
    enabled: bool,
    /// The channels notifications of this type go to, when those channels are on (by
    /// default every channel but PUSH and SMS, which carry only BUDGET_EXCEEDED).
    channels: Vec<Channel>,
}

/// Outside deliveries (EMAIL, WEBHOOK, SMS, PUSH) made in these local hours wait until
/// `end`; IN_APP and WEBSOCKET are silent and not delayed. `start` after `end` spans
/// midnight.
#[derive(SimpleObject)]
pub struct QuietHours {
    /// `HH:MM`.
    start: String,
    /// `HH:MM`.
    end: String,
}

pub struct NotificationPreferences(pub domain::Preferences);

#[Object]
impl NotificationPreferences {
    async fn channels(&self) -> Vec<ChannelPreference> {
        domain::Channel::ALL
            .iter()
            .map(|&c| ChannelPreference {
                channel: c.into(),
                enabled: self.0.channel_on(c),
            })
            .collect()
    }
    async fn types(&self) -> Vec<TypePreference> {
        domain::NotificationType::ALL
            .iter()
            .map(|&t| TypePreference {
                kind: t.into(),
                enabled: self.0.type_on(t),
                channels: self
                    .0
                    .channels_of_type(t)
                    .into_iter()
                    .map(Channel::from)
                    .collect(),
            })
            .collect()
    }
    /// Where EMAIL goes; EMAIL is used only when set.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    /// Where WEBHOOK posts go (signed JSON); WEBHOOK is used only when set.
    async fn webhook_url(&self) -> Option<&str> {
        self.0.webhook_url.as_deref()
    }
    /// The verified phone number (E.164) SMS goes to; SMS can be switched on only
    /// once it is set (`setPhoneNumber`, then `confirmPhoneNumber`).
    async fn phone_number(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    async fn quiet_hours(&self) -> Option<QuietHours> {
        self.0.quiet_hours.map(|q| QuietHours {
            start: q.start_text(),
            end: q.end_text(),
        })
    }
    /// The IANA timezone quiet hours are read in: the user's profile timezone.
    async fn timezone(&self) -> &str {
        self.0.timezone.name()
    }
}

#[derive(InputObject)]
pub struct ChannelPreferenceInput {
    channel: Channel,
    enabled: bool,
}

#[derive(InputObject)]
pub struct TypePreferenceInput {
    #[graphql(name = "type")]
    kind: NotificationType,
    /// Absent: unchanged.
    enabled: Option<bool>,
    /// Channels this type goes (`enabled`) or does not go to; others unchanged.
    channels: Option<Vec<ChannelPreferenceInput>>,
}

#[derive(InputObject)]
pub struct PushSubscriptionKeysInput {
    /// The browser's P-256 public key, base64url (`PushSubscription.toJSON().keys`).
    #[graphql(name = "p256dh")]
    p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    auth: String,
}

/// A browser's push subscription, as `PushSubscription.toJSON()` gives it.
#[derive(InputObject)]
pub struct PushSubscriptionInput {
    /// The push service URL (https, at most 2048 bytes).
    pub endpoint: String,
    pub keys: PushSubscriptionKeysInput,
    /// What the user calls the device (at most 100 characters).
    pub device_name: Option<String>,
}

impl PushSubscriptionInput {
    pub fn as_new(&self) -> crate::contacts::NewPushDevice<'_> {
        crate::contacts::NewPushDevice {
            endpoint: &self.endpoint,
            p256dh: &self.keys.p256dh,
            auth: &self.keys.auth,
            name: self.device_name.as_deref(),
        }
    }
}

#[derive(InputObject)]
pub struct QuietHoursInput {
    /// `HH:MM`, 24-hour, in the user's timezone.
    start: String,
    end: String,
}

/// Absent fields stay as they are; `null` clears `email`, `webhookUrl`, `quietHours`.
#[derive(InputObject)]
pub struct NotificationPreferencesInput {
    channels: Option<Vec<ChannelPreferenceInput>>,
    types: Option<Vec<TypePreferenceInput>>,
    email: MaybeUndefined<String>,
    webhook_url: MaybeUndefined<String>,
    quiet_hours: MaybeUndefined<QuietHoursInput>,
}

impl NotificationPreferencesInput {
    /// The change asked for, every value checked.
    pub fn into_change(self) -> Result<PreferencesChange, AppError> {
        Ok(PreferencesChange {
            email: self
                .email
                .map_value(|e| domain::email(&e))
                .transpose()?
                .into(),
            webhook_url: self
                .webhook_url
                .map_value(|u| domain::webhook_url(&u))
                .transpose()?
                .into(),
            quiet_hours: self
                .quiet_hours
                .map_value(|q| domain::QuietHours::parse("quietHours", &q.start, &q.end))
                .transpose()?
                .into(),
            channels: (self.channels.into_iter().flatten())
                .map(|c| (c.channel.into(), c.enabled))
                .collect(),
            types: (self.types.iter().flatten())
                .filter_map(|t| Some((t.kind.into(), t.enabled?)))
                .collect(),
            type_channels: (self.types.iter().flatten())
                .flat_map(|t| {
                    (t.channels.iter().flatten())
                        .map(|c| (t.kind.into(), c.channel.into(), c.enabled))
                })
                .collect(),
            phone: None,
        })
    }
}

/// A budget alert as it happened; `alert` and `budget` are resolved by the budgets
/// subgraph through the router, the other fields are carried by the event.
#[derive(SimpleObject)]
pub struct BudgetAlertEvent {
    /// The id of the alert's notification: what `budgetAlerts(after:)` resumes from.
    id: ID,
    // Nullable: the budgets subgraph resolves these in another fetch, and its failure
    // must not cost the event (see schema/README.md).
    alert: Option<BudgetAlert>,
    budget: Option<Budget>,
    notification: Notification,
    category: Option<String>,
    threshold: i64,
    percent_used: f64,
    severity: AlertSeverity,
    message: String,
    period_start: Option<Date>,
    created_at: DateTime<Utc>,
}

impl BudgetAlertEvent {
    /// The event of a budget alert notification; `None` for other notifications.
    pub fn of(n: Arc<domain::Notification>) -> Option<BudgetAlertEvent> {
        let a = n.alert.clone()?;
        Some(BudgetAlertEvent {
            id: ID(n.id.to_string()),
            alert: Some(BudgetAlert {
                id: ID(a.alert_id.into_string()),
            }),
            budget: Some(Budget {
                id: ID(a.budget_id.into_string()),
            }),
            category: a.category,
            threshold: a.threshold,
            percent_used: a.percent_used,
            severity: a.severity.into(),
            message: n.message.clone(),
            period_start: Some(Date(a.period_start)),
            created_at: n.created_at,
            notification: Notification(n),
        })
    }
}
