//! A notification: what a user is told, once per source, and on which channels.

use chrono::{DateTime, NaiveDate, Utc};
use contract::events::AlertSeverity;
use contract::ids::{AlertId, BudgetId, NotificationId, UserId};

text_enum!(NotificationType {
    BudgetAlert => "BUDGET_ALERT",
    BudgetExceeded => "BUDGET_EXCEEDED",
    WeeklySummary => "WEEKLY_SUMMARY",
    MonthlyReport => "MONTHLY_REPORT",
    System => "SYSTEM",
});

text_enum!(Priority {
    Low => "LOW",
    Medium => "MEDIUM",
    High => "HIGH",
});

text_enum!(
    /// IN_APP is the stored notification, WEBSOCKET the subscriptions; EMAIL, WEBHOOK,
    /// SMS and PUSH (one delivery per registered device) are delivered by the delivery
    /// worker with a state per delivery.
    Channel {
        InApp => "IN_APP",
        Email => "EMAIL",
        Webhook => "WEBHOOK",
        Websocket => "WEBSOCKET",
        Sms => "SMS",
        Push => "PUSH",
    }
);

impl Channel {
    /// Channels with a delivery state (sent to an outside system).
    pub fn is_external(self) -> bool {
        matches!(
            self,
            Channel::Email | Channel::Webhook | Channel::Sms | Channel::Push
        )
    }

    /// Whether the channel is on for a user who never chose: SMS costs the user
    /// messages and needs a verified number, so it is on only when they opt in.
    pub fn on_by_default(self) -> bool {
        self != Channel::Sms
    }

    /// Whether notifications of `kind` go to this channel for a user who never chose:
    /// PUSH and SMS interrupt, so only an exceeded budget goes there by default.
    pub fn carries_by_default(self, kind: NotificationType) -> bool {
        match self {
            Channel::Push | Channel::Sms => kind == NotificationType::BudgetExceeded,
            _ => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: NotificationId,
    pub user_id: UserId,
    /// What it was made from, notified once: `event|<event id>` or
    /// `weekly|<user>|<week>`.
    pub source_key: String,
    pub kind: NotificationType,
    pub title: String,
    pub message: String,
    pub priority: Priority,
    /// From the preferences when it was made.
    pub channels: Vec<Channel>,
    pub read: bool,
    pub created_at: DateTime<Utc>,
    /// The alert, for budget alert notifications.
    pub alert: Option<AlertInfo>,
}

/// A budget alert as carried by its `budget.alert` event.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInfo {
    pub alert_id: AlertId,
    pub budget_id: BudgetId,
    pub category: Option<String>,
    pub threshold: i64,
    pub percent_used: f64,
    pub severity: AlertSeverity,
    pub period_start: NaiveDate,
}

/// The type and priority of a budget alert notification.
pub fn alert_kind(threshold: i64) -> (NotificationType, Priority) {
    if threshold >= 100 {
        (NotificationType::BudgetExceeded, Priority::High)
    } else {
        (NotificationType::BudgetAlert, Priority::Medium)
    }
}
