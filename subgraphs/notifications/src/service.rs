//! The notifications service: notifications from events, deliveries per outside
//! channel with retries, and the tail that feeds the subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use contract::events::{BudgetAlertRaised, WeeklySummary};
use contract::ids::{NotificationId, UserId};
use kit::AppError;
use kit::clock::Clock;
use kit::config::Secret;
use kit::events::{DomainEvent, Event, EventHandler};
use serde_json::json;
use tokio::sync::broadcast;

use crate::channels::push::{PushFailure, PushSettings, Vapid};
use crate::channels::sms::SmsSettings;
use crate::channels::{self, Failure, SmtpSettings};
use crate::domain::{
    self, AlertInfo, Attempt, Channel, Delivery, Notification, NotificationType, Preferences,
    PreferencesChange, Priority, RetryPolicy,
};
use crate::store::Store;

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

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.retry_base,
            max: self.retry_max,
            horizon: self.horizon,
        }
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
    pub webhooks: crate::channels::WebhookPolicy,
    /// Web Push: the settings, the client (its policy's resolver) and the VAPID key.
    pub push: PushSettings,
    pub push_http: reqwest::Client,
    pub vapid: Arc<Vapid>,
    /// SMS: the provider and its client.
    pub sms: SmsSettings,
    pub sms_http: reqwest::Client,
    /// The key phone verification codes are stored hashed under.
    pub code_key: Secret,
    /// New notifications, as seen by this instance's tail.
    pub feed: broadcast::Sender<Arc<Notification>>,
    /// This instance's name (`INSTANCE_ID`): its change-stream position is its own.
    pub instance: String,
    /// The users service: who the members of a household are, asked for each shared
    /// budget's alert (never cached: a removed member gets nothing more).
    pub users: Arc<kit::users::UserDirectory>,
}

/// What a new notification says; `source_key` makes it once-only.
pub struct NewNotification<'a> {
    pub user_id: &'a UserId,
    pub source_key: &'a str,
    pub kind: NotificationType,
    pub title: &'a str,
    pub message: &'a str,
    pub priority: Priority,
    pub alert: Option<AlertInfo>,
}

/// An internal error's cause (what the logs need), or a coded error's message.
fn cause(e: AppError) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

impl Notifications {
    /// A user's preferences: the stored ones, or the defaults when they never chose.
    pub async fn preferences(&self, user: &UserId) -> Result<Preferences, AppError> {
        Ok(self.store.get_preferences(user).await?.unwrap_or_default())
    }

    /// A user's preferences, their timezone brought up to date with `timezone` (from
    /// their profile) and stored when it changed.
    pub async fn preferences_in(
        &self,
        user: &UserId,
        timezone: Option<Tz>,
    ) -> Result<Preferences, AppError> {
        let mut prefs = self.preferences(user).await?;
        if let Some(tz) = timezone
            && tz != prefs.timezone
        {
            prefs.timezone = tz;
            self.store.put_preferences(user, &prefs).await?;
        }
        Ok(prefs)
    }

    /// Applies a change to `prefs` (the user's current preferences) and stores them.
    pub async fn update_preferences(
        &self,
        user: &UserId,
        mut prefs: Preferences,
        change: PreferencesChange,
    ) -> Result<Preferences, AppError> {
        prefs.apply(change);
        prefs.check_sms()?;
        self.store.put_preferences(user, &prefs).await?;
        Ok(prefs)
    }

    /// Stores a notification for `source_key` (once) and its deliveries (once per
    /// channel). Re-running it for the same source changes nothing already there.
    pub async fn notify(&self, new: NewNotification<'_>) -> Result<Option<Notification>, AppError> {
        let NewNotification {
            user_id,
            source_key,
            kind,
            title,
            message,
            priority,
            alert,
        } = new;
        let prefs = self.preferences(user_id).await?;
        let devices =
            if prefs.channel_on(Channel::Push) && prefs.type_channel_on(kind, Channel::Push) {
                self.store.push_devices_of(user_id).await?
            } else {
                Vec::new()
            };
        let channels = prefs.channels_for(kind, !devices.is_empty());
        if channels.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let n = Notification {
            id: NotificationId::new(),
            user_id: user_id.clone(),
            source_key: source_key.to_string(),
            kind,
            title: title.to_string(),
            message: message.to_string(),
            priority,
            channels,
            read: false,
            created_at: domain::to_millis(now),
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
        let not_before = prefs.not_before(now);
        for &channel in &n.channels {
            let targets: Vec<&str> = match channel {
                Channel::Push => devices.iter().map(|d| d.id.as_str()).collect(),
                other => prefs.target(other).into_iter().collect(),
            };
            for target in targets {
                let d = Delivery::new(&n, channel, target.to_string(), now, not_before);
                self.store.insert_delivery(&d).await?;
            }
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
        let alert = AlertInfo {
            alert_id: data.alert_id,
            budget_id: data.budget_id,
            category: data.category,
            threshold: data.threshold,
            percent_used: data.percent_used,
            severity: data.severity,
            period_start: data.period_start,
        };
        // A household's shared budget alerts each of its members as they are now (each
        // on their own channels and quiet hours, each once); a personal one its owner.
        let recipients: Vec<(UserId, String)> = match &data.household {
            None => vec![(envelope.user_id.clone(), format!("event|{}", envelope.id))],
            Some(h) => self
                .users
                .household_members(h)
                .await?
                .members
                .into_iter()
                .map(|m| {
                    let key = format!("event|{}|{}", envelope.id, m.user_id);
                    (m.user_id, key)
                })
                .collect(),
        };
        for (user_id, source_key) in &recipients {
            self.notify(NewNotification {
                user_id,
                source_key,
                kind,
                title: &title,
                message: &data.message,
                priority,
                alert: Some(alert.clone()),
            })
            .await?;
        }
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
            user_id: &envelope.user_id,
            source_key: &format!("weekly|{}|{week}", envelope.user_id),
            kind: NotificationType::WeeklySummary,
            title: &format!("Your week ({week})"),
            message: &data.message,
            priority: Priority::Low,
            alert: None,
        })
        .await?;
        Ok(())
    }

    /// One pass of the delivery worker: sends what is due. Deliveries run concurrently,
    /// so one slow or failing channel never holds up another.
    pub async fn deliver_due(&self) -> Result<usize, AppError> {
        let now = self.clock.now();
        let due = self.store.due(now, 50).await?;
        let mut mine = Vec::new();
        for d in due {
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %cause(e), "unreadable delivery left alone");
                    continue;
                }
            };
            if self.store.claim(&d.id, now, self.settings.lease).await? {
                mine.push(d);
            }
        }
        let n = mine.len();
        futures::future::join_all(mine.into_iter().map(|d| self.attempt(d))).await;
        Ok(n)
    }

    async fn attempt(&self, d: Delivery) {
        let span = tracing::info_span!(
            "delivery",
            service = "notifications",
            channel = %d.channel,
            delivery = %d.id,
            otel.kind = "producer",
        );
        contract::telemetry::follow(&span, d.trace.as_deref());
        self.attempt_in_span(d).instrument(span).await
    }

    async fn attempt_in_span(&self, d: Delivery) {
        let result = match self.store.get(&d.user_id, &d.notification_id).await {
            Ok(Some(n)) => self.send(&d, &n).await,
            Ok(None) => Err(Failure::permanent("the notification was deleted")),
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e.public_message(), "cannot load notification");
                return;
            }
        };
        let now = self.clock.now();
        let attempts = d.attempts + 1;
        let attempt = match result {
            Ok(()) => Attempt::Sent,
            Err(Failure {
                reason,
                permanent: true,
            }) => {
                tracing::warn!(delivery = %d.id, reason = %reason, "delivery refused for good");
                Attempt::GaveUp { reason }
            }
            Err(Failure { reason, .. }) => {
                let attempt = self
                    .settings
                    .retry()
                    .after_failure(&d, attempts, now, reason);
                match &attempt {
                    Attempt::GaveUp { reason } => {
                        tracing::warn!(delivery = %d.id, reason = %reason, "delivery failed for good")
                    }
                    Attempt::Retry { reason, .. } => {
                        tracing::info!(delivery = %d.id, attempts, reason = %reason, "delivery failed; will retry")
                    }
                    Attempt::Sent => {}
                }
                attempt
            }
        };
        if let Err(e) = self
            .store
            .record_attempt(&d.id, attempts, now, &attempt)
            .await
        {
            tracing::warn!(delivery = %d.id, error = %e.public_message(), "cannot record delivery state");
        }
    }

    async fn send(&self, d: &Delivery, n: &Notification) -> Result<(), Failure> {
        match d.channel {
            Channel::Email => channels::send_email(&self.smtp, &d.target, &n.title, &n.message)
                .await
                .map_err(Failure::retry),
            Channel::Webhook => channels::send_webhook(
                &self.http,
                &self.webhooks,
                &self.webhook_secret,
                &d.target,
                &payload(n),
            )
            .await
            .map_err(Failure::retry),
            Channel::Sms => {
                let text = format!("{}: {}", n.title, n.message);
                channels::sms::send_sms(&self.sms_http, &self.sms, &d.target, &text).await
            }
            Channel::Push => self.send_push(d, n).await,
            other => Err(Failure::permanent(format!("channel {other} has no sender"))),
        }
    }

    /// One push to the device of `d`; a device its push service no longer knows
    /// (404, 410) is removed.
    async fn send_push(&self, d: &Delivery, n: &Notification) -> Result<(), Failure> {
        let Some(device) = self
            .store
            .push_device(&d.target)
            .await
            .map_err(|e| Failure::retry(cause(e)))?
            .filter(|device| device.user_id == d.user_id)
        else {
            return Err(Failure::permanent("the device was removed"));
        };
        let urgency = match n.priority {
            Priority::High => "high",
            Priority::Medium => "normal",
            Priority::Low => "low",
        };
        let result = channels::push::send_push(
            &self.push_http,
            &self.push,
            &self.vapid,
            &device,
            &push_payload(n),
            self.settings.horizon,
            urgency,
        )
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(PushFailure::Failed(f)) => Err(f),
            Err(PushFailure::Gone(reason)) => {
                let removed = self
                    .store
                    .remove_push_device(&device.user_id, &device.id)
                    .await;
                if let Err(e) = removed {
                    tracing::warn!(device = %device.id, error = %cause(e), "cannot remove a gone device");
                }
                tracing::info!(device = %device.id, reason = %reason, "push subscription gone; device removed");
                Err(Failure::permanent(format!(
                    "{reason}; the device was removed"
                )))
            }
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

    /// Tails stored notifications (made by any instance) and publishes them to this
    /// instance's subscribers: through a change stream where the database offers one, so
    /// a notification is published as it commits; otherwise by polling an increasing,
    /// indexed key every `tail_poll`. A subscriber that connects later, or reconnects,
    /// replays what it missed from the store by its cursor (`after`), so the tail only
    /// serves what happens while this instance runs.
    pub fn spawn_tail(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            match this.store.follow_mode().await {
                kit::changes::Follow::ChangeStream => {
                    tracing::info!("the notification feed follows a change stream");
                    this.store
                        .follow_inserts(&this.instance, this.settings.tail_poll, |n| {
                            this.publish(n);
                            true
                        })
                        .await;
                }
                kit::changes::Follow::Polling => {
                    tracing::info!(
                        every_ms = this.settings.tail_poll.as_millis() as u64,
                        "the notification feed polls (the database has no change streams)"
                    );
                    this.poll_tail().await;
                }
            }
        })
    }

    /// Publishes a new notification to this instance's subscribers (none is fine).
    fn publish(&self, n: Result<Notification, AppError>) {
        match n {
            Ok(n) => {
                let _ = self.feed.send(Arc::new(n));
            }
            Err(e) => tracing::error!(error = %cause(e), "unreadable notification not published"),
        }
    }

    /// The polling tail: keys within `LOOKBACK` of the last poll are read again (a write
    /// committed late is not missed) and de-duplicated.
    async fn poll_tail(&self) {
        const LOOKBACK: TimeDelta = TimeDelta::milliseconds(5_000);
        let mut seen: HashMap<NotificationId, DateTime<Utc>> = HashMap::new();
        let mut low = Utc::now();
        loop {
            let polled_at = Utc::now();
            match self.store.since(low - LOOKBACK, 1000).await {
                Ok(found) => {
                    for n in found {
                        if let Ok(n) = &n {
                            if seen.contains_key(&n.id) {
                                continue;
                            }
                            seen.insert(n.id.clone(), polled_at);
                        }
                        self.publish(n);
                    }
                    low = polled_at;
                    seen.retain(|_, at| *at >= polled_at - LOOKBACK * 3);
                }
                Err(e) => {
                    tracing::warn!(error = %e.public_message(), "notification tail failed")
                }
            }
            tokio::time::sleep(self.settings.tail_poll).await;
        }
    }
}

/// What a webhook body and a push carry of a notification.
fn payload(n: &Notification) -> serde_json::Value {
    json!({
        "id": n.id,
        "type": n.kind.as_str(),
        "title": n.title,
        "message": n.message,
        "priority": n.priority.as_str(),
        "createdAt": domain::rfc3339_millis(n.created_at),
        "userId": n.user_id,
    })
}

/// The largest push payload: a 4096-byte `aes128gcm` record less its header (86
/// bytes), tag (16) and padding delimiter (1).
pub const MAX_PUSH_PAYLOAD: usize = 3993;

/// The push payload of `n` (its [`payload`] JSON), the message shortened when the
/// whole would not fit in one push.
fn push_payload(n: &Notification) -> Vec<u8> {
    let mut body = payload(n);
    let mut bytes = body.to_string().into_bytes();
    let mut message: Vec<char> = n.message.chars().collect();
    while bytes.len() > MAX_PUSH_PAYLOAD && !message.is_empty() {
        let over = bytes.len() - MAX_PUSH_PAYLOAD;
        message.truncate(message.len().saturating_sub(over.max(1) + 1));
        body["message"] = json!(format!("{}…", message.iter().collect::<String>()));
        bytes = body.to_string().into_bytes();
    }
    bytes
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
