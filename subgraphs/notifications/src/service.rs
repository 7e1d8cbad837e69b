//! The notifications service: notifications from events, deliveries per outside
//! channel with retries, and the tail that feeds the subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use contract::events::{BudgetAlertRaised, WeeklySummary};
use kit::AppError;
use kit::clock::Clock;
use kit::config::Secret;
use kit::events::{DomainEvent, Event, EventHandler};
use mongodb::bson::{self, doc};
use serde_json::json;
use tokio::sync::broadcast;

use crate::channels::{self, SmtpSettings};
use crate::domain::{self, Preferences, QuietHours};
use crate::store::{AlertData, DeliveryDoc, NotificationDoc, PreferencesDoc, Store};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `NOTIFY_RETRY_BASE_MS` (default 30000): first retry delay, doubled per failure.
    pub retry_base: Duration,
    /// `NOTIFY_RETRY_MAX_MS` (default 3600000): longest retry delay.
    pub retry_max: Duration,
    /// `NOTIFY_RETRY_HORIZON_SECS` (default 86400): a delivery still failing this long
    /// after the notification was made is given up (status FAILED, with the reason).
    pub horizon: Duration,
    /// `NOTIFY_DELIVERY_POLL_MS` (default 1000).
    pub poll: Duration,
    /// `NOTIFY_LEASE_MS` (default 60000): how long a worker holds a delivery.
    pub lease: Duration,
    /// `NOTIFY_HTTP_TIMEOUT_MS` (default 10000).
    pub http_timeout: Duration,
    /// `NOTIFY_TAIL_POLL_MS` (default 250): how often new notifications are looked for.
    pub tail_poll: Duration,
    /// `NOTIFY_SUBSCRIBER_BUFFER` (default 256): events a subscription may fall behind
    /// before it is closed.
    pub subscriber_buffer: usize,
}

impl DeliverySettings {
    pub const VARS: &'static [&'static str] = &[
        "NOTIFY_RETRY_BASE_MS",
        "NOTIFY_RETRY_MAX_MS",
        "NOTIFY_RETRY_HORIZON_SECS",
        "NOTIFY_DELIVERY_POLL_MS",
        "NOTIFY_LEASE_MS",
        "NOTIFY_HTTP_TIMEOUT_MS",
        "NOTIFY_TAIL_POLL_MS",
        "NOTIFY_SUBSCRIBER_BUFFER",
        "WEBHOOK_SIGNING_SECRET",
    ];

    pub fn from_vars(
        vars: &(impl kit::config::Vars + ?Sized),
    ) -> Result<Self, kit::config::ConfigError> {
        use kit::config::var_or;
        let ms = |n: &str, d: u64| -> Result<Duration, kit::config::ConfigError> {
            Ok(Duration::from_millis(var_or(vars, n, d)?))
        };
        Ok(DeliverySettings {
            retry_base: ms("NOTIFY_RETRY_BASE_MS", 30_000)?,
            retry_max: ms("NOTIFY_RETRY_MAX_MS", 3_600_000)?,
            horizon: Duration::from_secs(var_or(vars, "NOTIFY_RETRY_HORIZON_SECS", 86_400u64)?),
            poll: ms("NOTIFY_DELIVERY_POLL_MS", 1000)?,
            lease: ms("NOTIFY_LEASE_MS", 60_000)?,
            http_timeout: ms("NOTIFY_HTTP_TIMEOUT_MS", 10_000)?,
            tail_poll: ms("NOTIFY_TAIL_POLL_MS", 250)?,
            subscriber_buffer: var_or(vars, "NOTIFY_SUBSCRIBER_BUFFER", 256usize)?,
        })
    }

    /// Fast timings for tests.
    pub fn fast() -> Self {
        DeliverySettings {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            horizon: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            lease: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
            tail_poll: Duration::from_millis(50),
            subscriber_buffer: 256,
        }
    }
}

#[derive(Clone)]
pub struct Notifications {
    pub store: Store,
    pub clock: Clock,
    pub settings: DeliverySettings,
    pub smtp: SmtpSettings,
    /// `WEBHOOK_SIGNING_SECRET` (default: derived from the service token).
    pub webhook_secret: Secret,
    pub http: reqwest::Client,
    /// New notifications, as seen by this instance's tail.
    pub feed: broadcast::Sender<Arc<NotificationDoc>>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub fn preferences_of(doc: Option<PreferencesDoc>) -> Preferences {
    let Some(d) = doc else {
        return Preferences::default();
    };
    let quiet_hours = match (&d.quiet_start, &d.quiet_end) {
        (Some(s), Some(e)) => {
            match (domain::local_time("start", s), domain::local_time("end", e)) {
                (Ok(start), Ok(end)) => Some(QuietHours { start, end }),
                _ => None,
            }
        }
        _ => None,
    };
    Preferences {
        disabled_channels: d.disabled_channels,
        disabled_types: d.disabled_types,
        email: d.email,
        webhook_url: d.webhook_url,
        quiet_hours,
        timezone: d.timezone.parse().unwrap_or(chrono_tz::Tz::UTC),
    }
}

/// What a new notification says; `source_key` makes it once-only.
pub struct NewNotification<'a> {
    pub user_id: &'a str,
    pub source_key: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub priority: &'a str,
    pub alert: Option<AlertData>,
}

impl Notifications {
    /// Stores a notification for `source_key` (once) and its deliveries (once per
    /// channel). Re-running it for the same source changes nothing already there.
    pub async fn notify(
        &self,
        new: NewNotification<'_>,
    ) -> Result<Option<NotificationDoc>, AppError> {
        let NewNotification {
            user_id,
            source_key,
            kind,
            title,
            message,
            priority,
            alert,
        } = new;
        let prefs = preferences_of(self.store.get_preferences(user_id).await?);
        let channels = prefs.channels_for(kind);
        if channels.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let id = kit::ids::new_id();
        let n = NotificationDoc {
            id: id.clone(),
            key: id,
            user_id: user_id.to_string(),
            source_key: source_key.to_string(),
            kind: kind.to_string(),
            title: title.to_string(),
            message: message.to_string(),
            priority: priority.to_string(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            read: false,
            created_at: bson::DateTime::from_chrono(now),
            alert,
        };
        let n = if self.store.insert_notification(&n).await? {
            n
        } else {
            // Re-delivered: carry on with the stored one (its deliveries may be missing
            // after a crash; they are created once each below).
            match self.store.by_source(source_key).await? {
                Some(existing) => existing,
                None => return Ok(None),
            }
        };
        let not_before = prefs.not_before(now).timestamp_millis();
        for channel in &n.channels {
            let target = match channel.as_str() {
                "EMAIL" => prefs.email.clone(),
                "WEBHOOK" => prefs.webhook_url.clone(),
                _ => None,
            };
            let Some(target) = target else { continue };
            let d = DeliveryDoc {
                id: format!("{}|{}", n.id, channel),
                notification_id: n.id.clone(),
                user_id: n.user_id.clone(),
                channel: channel.clone(),
                target,
                status: "PENDING".into(),
                attempts: 0,
                last_error: None,
                created_ms: now.timestamp_millis(),
                next_attempt_ms: not_before,
                lease_until_ms: 0,
                done_ms: None,
            };
            self.store.insert_delivery(&d).await?;
        }
        Ok(Some(n))
    }

    pub async fn on_budget_alert(
        &self,
        envelope: &Event,
        data: BudgetAlertRaised,
    ) -> Result<(), AppError> {
        let (kind, priority) = domain::alert_kind(data.threshold);
        let title = match &data.category {
            Some(c) if data.threshold >= 100 => format!("Budget exceeded: {c}"),
            Some(c) => format!("Budget alert: {c}"),
            None if data.threshold >= 100 => "Budget exceeded".to_string(),
            None => "Budget alert".to_string(),
        };
        let alert = AlertData {
            alert_id: data.alert_id.into_string(),
            budget_id: data.budget_id.into_string(),
            category: data.category,
            threshold: data.threshold,
            percent_used: data.percent_used,
            severity: data.severity.as_str().to_string(),
            period_start: data.period_start.to_string(),
        };
        self.notify(NewNotification {
            user_id: envelope.user_id.as_str(),
            source_key: &format!("event|{}", envelope.id),
            kind,
            title: &title,
            message: &data.message,
            priority,
            alert: Some(alert),
        })
        .await?;
        Ok(())
    }

    /// A `weekly.summary` event from the analytics subgraph: once per user and week.
    pub async fn on_weekly_summary(
        &self,
        envelope: &Event,
        data: WeeklySummary,
    ) -> Result<(), AppError> {
        let week = &data.week;
        self.notify(NewNotification {
            user_id: envelope.user_id.as_str(),
            source_key: &format!("weekly|{}|{week}", envelope.user_id),
            kind: "WEEKLY_SUMMARY",
            title: &format!("Your week ({week})"),
            message: &data.message,
            priority: "LOW",
            alert: None,
        })
        .await?;
        Ok(())
    }

    /// One pass of the delivery worker: sends what is due. Deliveries run concurrently,
    /// so one slow or failing channel never holds up another.
    pub async fn deliver_due(&self) -> Result<usize, AppError> {
        let now = self.clock.now().timestamp_millis();
        let due = self.store.due(now, 50).await?;
        let mut mine = Vec::new();
        for d in due {
            if self
                .store
                .claim(&d.id, now, ms(self.settings.lease))
                .await?
            {
                mine.push(d);
            }
        }
        let n = mine.len();
        futures::future::join_all(mine.into_iter().map(|d| self.attempt(d))).await;
        Ok(n)
    }

    async fn attempt(&self, d: DeliveryDoc) {
        let result = match self.store.get(&d.user_id, &d.notification_id).await {
            Ok(Some(n)) => self.send(&d, &n).await,
            Ok(None) => Err("the notification was deleted".to_string()),
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e.public_message(), "cannot load notification");
                return;
            }
        };
        let now = self.clock.now().timestamp_millis();
        let attempts = d.attempts + 1;
        let set = match result {
            Ok(()) => {
                doc! { "status": "SENT", "attempts": attempts, "doneMs": now, "lastError": null }
            }
            Err(reason) => {
                let delay = ms(domain::backoff(
                    attempts,
                    self.settings.retry_base,
                    self.settings.retry_max,
                ));
                let next = now + delay;
                if next - d.created_ms > ms(self.settings.horizon) {
                    let why = format!(
                        "gave up after {attempts} attempts over {}s: {reason}",
                        (now - d.created_ms) / 1000
                    );
                    tracing::warn!(delivery = %d.id, reason = %why, "delivery failed for good");
                    doc! { "status": "FAILED", "attempts": attempts, "doneMs": now, "lastError": why }
                } else {
                    tracing::info!(delivery = %d.id, attempts, reason = %reason, "delivery failed; will retry");
                    doc! { "attempts": attempts, "lastError": reason, "nextAttemptMs": next, "leaseUntilMs": 0_i64 }
                }
            }
        };
        if let Err(e) = self.store.finish(&d.id, set).await {
            tracing::warn!(delivery = %d.id, error = %e.public_message(), "cannot record delivery state");
        }
    }

    async fn send(&self, d: &DeliveryDoc, n: &NotificationDoc) -> Result<(), String> {
        match d.channel.as_str() {
            "EMAIL" => channels::send_email(&self.smtp, &d.target, &n.title, &n.message).await,
            "WEBHOOK" => {
                let body = json!({
                    "id": n.id,
                    "type": n.kind,
                    "title": n.title,
                    "message": n.message,
                    "priority": n.priority,
                    "createdAt": n.created_at.try_to_rfc3339_string().unwrap_or_default(),
                    "userId": n.user_id,
                });
                channels::send_webhook(&self.http, &self.webhook_secret, &d.target, &body).await
            }
            other => Err(format!("channel {other} has no sender")),
        }
    }

    /// Runs the delivery worker until aborted.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.deliver_due().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e.public_message(), "delivery pass failed")
                    }
                }
                tokio::time::sleep(this.settings.poll).await;
            }
        })
    }

    /// Tails stored notifications (polling an increasing, indexed key, so it sees
    /// notifications made by any instance) and publishes them to this instance's
    /// subscribers. Keys within `LOOKBACK` of the last poll are read again (a write
    /// committed late is not missed) and de-duplicated.
    pub fn spawn_tail(&self) -> tokio::task::JoinHandle<()> {
        const LOOKBACK_MS: i64 = 5_000;
        let this = self.clone();
        tokio::spawn(async move {
            let mut seen: HashMap<String, i64> = HashMap::new();
            let mut low_ms = Utc::now().timestamp_millis();
            loop {
                let polled_at = Utc::now().timestamp_millis();
                match this
                    .store
                    .since(&domain::id_floor(low_ms - LOOKBACK_MS), 1000)
                    .await
                {
                    Ok(found) => {
                        for n in found {
                            if seen.contains_key(&n.id) {
                                continue;
                            }
                            seen.insert(n.id.clone(), polled_at);
                            // No receiver is fine.
                            let _ = this.feed.send(Arc::new(n));
                        }
                        low_ms = polled_at;
                        seen.retain(|_, at| *at >= polled_at - 3 * LOOKBACK_MS);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.public_message(), "notification tail failed")
                    }
                }
                tokio::time::sleep(this.settings.tail_poll).await;
            }
        })
    }
}

/// The `/internal/events` handler: `budget.alert` and `weekly.summary` events.
pub struct AlertEvents(pub Notifications);

impl EventHandler for AlertEvents {
    async fn handle(&self, envelope: &Event, event: DomainEvent) -> Result<(), AppError> {
        match event {
            DomainEvent::BudgetAlert(data) => self.0.on_budget_alert(envelope, data).await,
            DomainEvent::WeeklySummary(data) => self.0.on_weekly_summary(envelope, data).await,
            other => Err(AppError::validation(
                "type",
                format!("notifications does not consume {} events", other.kind()),
            )),
        }
    }
}
