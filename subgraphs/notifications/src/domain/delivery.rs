//! A delivery: one notification on one outside channel, with its state.

use std::time::Duration;

use chrono::{DateTime, Utc};
use contract::ids::{DeliveryId, NotificationId, UserId};

use super::{Channel, Notification, backoff, millis};

text_enum!(DeliveryStatus {
    Pending => "PENDING",
    Sent => "SENT",
    Failed => "FAILED",
});

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `<notification id>|<channel>` (`<notification id>|PUSH|<device id>`): a channel
    /// (a device) is never given a notification twice.
    pub id: DeliveryId,
    pub notification_id: NotificationId,
    pub user_id: UserId,
    pub channel: Channel,
    /// Email address, URL or phone number, fixed when the notification was made; for
    /// PUSH, the device's id.
    pub target: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// Why the last attempt failed (or why delivery was given up).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Not sent before this (quiet hours, retry backoff).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was sent or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// W3C `traceparent` of the work that made the notification (when traces are
    /// exported): each attempt is a span of that trace.
    pub trace: Option<String>,
}

impl Delivery {
    /// A pending delivery of `n` on `channel` to `target` (for PUSH, a device id), due
    /// at `not_before`.
    pub fn new(
        n: &Notification,
        channel: Channel,
        target: String,
        now: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Delivery {
        Delivery {
            id: DeliveryId::from_trusted(match channel {
                Channel::Push => format!("{}|{channel}|{target}", n.id),
                _ => format!("{}|{channel}", n.id),
            }),
            notification_id: n.id.clone(),
            user_id: n.user_id.clone(),
            channel,
            target,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: not_before,
            finished_at: None,
            trace: contract::telemetry::traceparent(),
        }
    }
}

/// What an attempt at a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Failed; tried again at `next`.
    Retry {
        reason: String,
        next: DateTime<Utc>,
    },
    /// Failed for good.
    GaveUp {
        reason: String,
    },
}

/// When failed deliveries are tried again, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry delay, doubled per failure.
    pub base: Duration,
    /// The longest retry delay.
    pub max: Duration,
    /// A delivery whose next try would fall this long after it was made is given up.
    pub horizon: Duration,
}

impl RetryPolicy {
    /// What attempt number `attempts` at `d`, failed at `now` for `reason`, comes to.
    pub fn after_failure(
        &self,
        d: &Delivery,
        attempts: i64,
        now: DateTime<Utc>,
        reason: String,
    ) -> Attempt {
        let now_ms = now.timestamp_millis();
        let created_ms = d.created_at.timestamp_millis();
        let next = now_ms + millis(backoff(attempts, self.base, self.max));
        if next - created_ms > millis(self.horizon) {
            Attempt::GaveUp {
                reason: format!(
                    "gave up after {attempts} attempts over {}s: {reason}",
                    (now_ms - created_ms) / 1000
                ),
            }
        } else {
            Attempt::Retry {
                reason,
                next: DateTime::from_timestamp_millis(next).unwrap_or(DateTime::<Utc>::MAX_UTC),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn failures_are_retried_with_backoff_until_the_horizon() {
        let made = Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap();
        let d = Delivery {
            id: DeliveryId::from_trusted("n|EMAIL"),
            notification_id: NotificationId::from_trusted("n"),
            user_id: UserId::from_trusted("u"),
            channel: Channel::Email,
            target: "a@b.co".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at: made,
            next_attempt_at: made,
            finished_at: None,
            trace: None,
        };
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(4),
            horizon: Duration::from_secs(10),
        };
        let at = |secs| made + chrono::Duration::seconds(secs);
        assert_eq!(
            policy.after_failure(&d, 2, at(1), "down".into()),
            Attempt::Retry {
                reason: "down".into(),
                next: at(3)
            }
        );
        assert_eq!(
            policy.after_failure(&d, 5, at(7), "down".into()),
            Attempt::GaveUp {
                reason: "gave up after 5 attempts over 7s: down".into()
            }
        );
    }
}
