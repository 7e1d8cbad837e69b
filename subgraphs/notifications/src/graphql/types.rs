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
    /// Delivery state of the outside channels (EMAIL, WEBHOOK).
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<Delivery>> {
        let mut ds = service(ctx)?.store.deliveries_of(&self.0.id).await?;
        ds.sort_by_key(|d| d.channel.as_str());
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
}

/// Outside deliveries (EMAIL, WEBHOOK) made in these local hours wait until `end`;
/// IN_APP and WEBSOCKET are silent and not delayed. `start` after `end` spans midnight.
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
    enabled: bool,
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
            types: (self.types.into_iter().flatten())
                .map(|t| (t.kind.into(), t.enabled))
                .collect(),
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
