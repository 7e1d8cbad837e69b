//! The GraphQL schema of the notifications subgraph.

use std::sync::Arc;

use async_graphql::{
    Context, Enum, ErrorExtensions, ID, InputObject, MaybeUndefined, Object, Result, Schema,
    SimpleObject, Subscription,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use kit::AppError;
use kit::scalars::Date;
use kit::users::{AccessToken, UserDirectory};
use tokio::sync::broadcast;

use crate::domain;
use crate::service::{Notifications, preferences_of};
use crate::store::{DeliveryDoc, NotificationDoc, PreferencesDoc};

pub type NotificationsSchema = Schema<Query, Mutation, SubscriptionRoot>;

pub fn build_schema(n: Notifications, users: UserDirectory) -> NotificationsSchema {
    Schema::build(Query, Mutation, SubscriptionRoot)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(n)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

pub fn bare_schema() -> NotificationsSchema {
    Schema::build(Query, Mutation, SubscriptionRoot)
        .enable_federation()
        .enable_subscription_in_federation()
        .finish()
}

use kit::auth::caller_id;

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Notifications, AppError> {
    kit::server::context_data(ctx)
}

macro_rules! string_enum {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        #[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
        pub enum $name { $($variant),* }
        impl $name {
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn from_text(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

string_enum!(NotificationType {
    BudgetAlert => "BUDGET_ALERT",
    BudgetExceeded => "BUDGET_EXCEEDED",
    WeeklySummary => "WEEKLY_SUMMARY",
    MonthlyReport => "MONTHLY_REPORT",
    System => "SYSTEM",
});

string_enum!(Priority {
    Low => "LOW",
    Medium => "MEDIUM",
    High => "HIGH",
});

string_enum!(Channel {
    InApp => "IN_APP",
    Email => "EMAIL",
    Webhook => "WEBHOOK",
    Websocket => "WEBSOCKET",
});

string_enum!(DeliveryStatus {
    Pending => "PENDING",
    Sent => "SENT",
    Failed => "FAILED",
});

/// The state of one outside channel of a notification.
#[derive(SimpleObject)]
pub struct Delivery {
    channel: Channel,
    status: DeliveryStatus,
    attempts: i64,
    /// Why the last attempt failed (or why delivery was given up).
    reason: Option<String>,
    /// When it was sent or given up.
    finished_at: Option<DateTime<Utc>>,
}

impl Delivery {
    fn of(d: DeliveryDoc) -> Option<Delivery> {
        Some(Delivery {
            channel: Channel::from_text(&d.channel)?,
            status: DeliveryStatus::from_text(&d.status)?,
            attempts: d.attempts,
            reason: d.last_error,
            finished_at: d.done_ms.and_then(DateTime::from_timestamp_millis),
        })
    }
}

pub struct Notification(pub Arc<NotificationDoc>);

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> NotificationType {
        NotificationType::from_text(&self.0.kind).unwrap_or(NotificationType::System)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn priority(&self) -> Priority {
        Priority::from_text(&self.0.priority).unwrap_or(Priority::Medium)
    }
    /// The channels this notification goes to (from the preferences when it was made).
    async fn channels(&self) -> Vec<Channel> {
        self.0
            .channels
            .iter()
            .filter_map(|c| Channel::from_text(c))
            .collect()
    }
    async fn read(&self) -> bool {
        self.0.read
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.to_chrono()
    }
    /// Delivery state of the outside channels (EMAIL, WEBHOOK).
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<Delivery>> {
        let ds = service(ctx)?.store.deliveries_of(&self.0.id).await?;
        let mut out: Vec<Delivery> = ds.into_iter().filter_map(Delivery::of).collect();
        out.sort_by_key(|d| d.channel.as_str());
        Ok(out)
    }
}

#[derive(SimpleObject)]
pub struct NotificationEdge {
    cursor: String,
    node: Notification,
}

#[derive(SimpleObject)]
pub struct NotificationPageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct NotificationConnection {
    edges: Vec<NotificationEdge>,
    page_info: NotificationPageInfo,
    /// Matching notifications in all pages.
    total_count: i64,
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

#[derive(SimpleObject)]
pub struct NotificationPreferences {
    channels: Vec<ChannelPreference>,
    types: Vec<TypePreference>,
    /// Where EMAIL goes; EMAIL is used only when set.
    email: Option<String>,
    /// Where WEBHOOK posts go (signed JSON); WEBHOOK is used only when set.
    webhook_url: Option<String>,
    quiet_hours: Option<QuietHours>,
    /// The IANA timezone quiet hours are read in: the user's profile timezone.
    timezone: String,
}

impl NotificationPreferences {
    fn of(d: &PreferencesDoc) -> NotificationPreferences {
        let p = preferences_of(Some(d.clone()));
        NotificationPreferences {
            channels: domain::CHANNELS
                .iter()
                .filter_map(|c| {
                    Some(ChannelPreference {
                        channel: Channel::from_text(c)?,
                        enabled: p.channel_on(c),
                    })
                })
                .collect(),
            types: domain::TYPES
                .iter()
                .filter_map(|t| {
                    Some(TypePreference {
                        kind: NotificationType::from_text(t)?,
                        enabled: p.type_on(t),
                    })
                })
                .collect(),
            email: d.email.clone(),
            webhook_url: d.webhook_url.clone(),
            quiet_hours: p.quiet_hours.map(|q| QuietHours {
                start: q.start.format("%H:%M").to_string(),
                end: q.end.format("%H:%M").to_string(),
            }),
            timezone: p.timezone.name().to_string(),
        }
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

/// The caller's stored preferences, with the timezone of their profile.
async fn load_preferences(ctx: &Context<'_>, user: &str) -> Result<PreferencesDoc, AppError> {
    let svc = service(ctx)?;
    let mut doc = svc
        .store
        .get_preferences(user)
        .await?
        .unwrap_or_else(|| PreferencesDoc {
            user_id: user.to_string(),
            timezone: "UTC".into(),
            ..Default::default()
        });
    if let (Some(token), Ok(users)) = (ctx.data_opt::<AccessToken>(), ctx.data::<UserDirectory>()) {
        let profile = users.profile(user, &token.0).await?;
        let tz = profile.timezone.name().to_string();
        if tz != doc.timezone {
            doc.timezone = tz;
            svc.store.put_preferences(&doc).await?;
        }
    }
    Ok(doc)
}

fn own(n: NotificationDoc) -> Notification {
    Notification(Arc::new(n))
}

pub struct Query;

#[Object]
impl Query {
    /// The caller's notifications, newest first.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        unread_only: Option<bool>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<NotificationConnection> {
        let user = caller_id(ctx)?;
        let first = first.unwrap_or(50);
        if !(1..=100).contains(&first) {
            return Err(AppError::validation("first", "first must be between 1 and 100").into());
        }
        if let Some(a) = &after
            && !kit::ids::is_valid_id(a)
        {
            return Err(AppError::validation("after", "not a cursor from this list").into());
        }
        let svc = service(ctx)?;
        let unread = unread_only.unwrap_or(false);
        let mut page = svc
            .store
            .page(&user, unread, after.as_deref(), i64::from(first) + 1)
            .await?;
        let has_next_page = page.len() > first as usize;
        page.truncate(first as usize);
        let total_count = svc.store.count(&user, unread).await?;
        Ok(NotificationConnection {
            page_info: NotificationPageInfo {
                has_next_page,
                end_cursor: page.last().map(|n| n.key.clone()),
            },
            edges: page
                .into_iter()
                .map(|n| NotificationEdge {
                    cursor: n.key.clone(),
                    node: own(n),
                })
                .collect(),
            total_count: i64::try_from(total_count).unwrap_or(i64::MAX),
        })
    }

    async fn unread_notification_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let user = caller_id(ctx)?;
        let n = service(ctx)?.store.count(&user, true).await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }

    async fn notification_preferences(&self, ctx: &Context<'_>) -> Result<NotificationPreferences> {
        let user = caller_id(ctx)?;
        let doc = load_preferences(ctx, &user).await?;
        Ok(NotificationPreferences::of(&doc))
    }

    /// Entity resolution for `Notification`: only the caller's own.
    #[graphql(entity)]
    async fn find_notification_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<Notification>> {
        let user = caller_id(ctx)?;
        Ok(service(ctx)?.store.get(&user, &id).await?.map(own))
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn mark_notification_read(&self, ctx: &Context<'_>, id: ID) -> Result<Notification> {
        let user = caller_id(ctx)?;
        let svc = service(ctx)?;
        if !svc.store.mark_read(&user, &id).await? {
            return Err(AppError::not_found("notification").into());
        }
        let n = svc
            .store
            .get(&user, &id)
            .await?
            .ok_or_else(|| AppError::not_found("notification"))?;
        Ok(own(n))
    }

    /// Returns how many were unread.
    async fn mark_all_notifications_read(&self, ctx: &Context<'_>) -> Result<i64> {
        let user = caller_id(ctx)?;
        let n = service(ctx)?.store.mark_all_read(&user).await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }

    async fn delete_notification(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user = caller_id(ctx)?;
        if !service(ctx)?.store.delete(&user, &id).await? {
            return Err(AppError::not_found("notification").into());
        }
        Ok(true)
    }

    /// Everything is checked before anything is written.
    async fn update_notification_preferences(
        &self,
        ctx: &Context<'_>,
        input: NotificationPreferencesInput,
    ) -> Result<NotificationPreferences> {
        let user = caller_id(ctx)?;
        let mut doc = load_preferences(ctx, &user).await?;
        match input.email {
            MaybeUndefined::Value(e) => doc.email = Some(domain::email(&e)?),
            MaybeUndefined::Null => doc.email = None,
            MaybeUndefined::Undefined => {}
        }
        match input.webhook_url {
            MaybeUndefined::Value(u) => doc.webhook_url = Some(domain::webhook_url(&u)?),
            MaybeUndefined::Null => doc.webhook_url = None,
            MaybeUndefined::Undefined => {}
        }
        match input.quiet_hours {
            MaybeUndefined::Value(q) => {
                let start = domain::local_time("quietHours.start", &q.start)?;
                let end = domain::local_time("quietHours.end", &q.end)?;
                if start == end {
                    return Err(
                        AppError::validation("quietHours", "start and end must differ").into(),
                    );
                }
                doc.quiet_start = Some(start.format("%H:%M").to_string());
                doc.quiet_end = Some(end.format("%H:%M").to_string());
            }
            MaybeUndefined::Null => {
                doc.quiet_start = None;
                doc.quiet_end = None;
            }
            MaybeUndefined::Undefined => {}
        }
        for c in input.channels.unwrap_or_default() {
            let name = c.channel.as_str().to_string();
            doc.disabled_channels.retain(|x| *x != name);
            if !c.enabled {
                doc.disabled_channels.push(name);
            }
        }
        for t in input.types.unwrap_or_default() {
            let name = t.kind.as_str().to_string();
            doc.disabled_types.retain(|x| *x != name);
            if !t.enabled {
                doc.disabled_types.push(name);
            }
        }
        service(ctx)?.store.put_preferences(&doc).await?;
        Ok(NotificationPreferences::of(&doc))
    }
}

/// A budget, owned and resolved by the budgets subgraph.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Budget {
    id: ID,
}

/// A budget alert, owned and resolved by the budgets subgraph.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct BudgetAlert {
    id: ID,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AlertSeverity {
    Warning,
    Critical,
}

/// A budget alert as it happened; `alert` and `budget` are resolved by the budgets
/// subgraph through the router, the other fields are carried by the event.
#[derive(SimpleObject)]
pub struct BudgetAlertEvent {
    alert: BudgetAlert,
    budget: Budget,
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
    fn of(n: Arc<NotificationDoc>) -> Option<BudgetAlertEvent> {
        let a = n.alert.clone()?;
        Some(BudgetAlertEvent {
            alert: BudgetAlert { id: ID(a.alert_id) },
            budget: Budget {
                id: ID(a.budget_id),
            },
            category: a.category,
            threshold: a.threshold,
            percent_used: a.percent_used,
            severity: if a.severity == "CRITICAL" {
                AlertSeverity::Critical
            } else {
                AlertSeverity::Warning
            },
            message: n.message.clone(),
            period_start: Date::parse(&a.period_start).ok(),
            created_at: n.created_at.to_chrono(),
            notification: Notification(n),
        })
    }
}

/// The caller's notifications as this instance's tail sees them. A subscriber that
/// falls more than the buffer behind gets a `SLOW_SUBSCRIBER` error and the
/// subscription ends (others are not slowed down).
pub fn user_feed(
    rx: broadcast::Receiver<Arc<NotificationDoc>>,
    user: String,
) -> impl Stream<Item = Result<Arc<NotificationDoc>>> {
    futures::stream::unfold(Some(rx), move |state| {
        let user = user.clone();
        async move {
            let mut rx = state?;
            loop {
                match rx.recv().await {
                    Ok(n) if n.user_id == user => return Some((Ok(n), Some(rx))),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let e = async_graphql::Error::new(format!(
                            "subscriber too slow: {missed} events missed; subscription closed"
                        ))
                        .extend_with(|_, ext| ext.set("code", "SLOW_SUBSCRIBER"));
                        return Some((Err(e), None));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The caller's budget alerts as they are notified.
    async fn budget_alerts(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<BudgetAlertEvent>>> {
        use futures::StreamExt;
        let user = caller_id(ctx)?;
        let rx = service(ctx)?.feed.subscribe();
        Ok(user_feed(rx, user).filter_map(|r| async move {
            match r {
                Ok(n) => BudgetAlertEvent::of(n).map(Ok),
                Err(e) => Some(Err(e)),
            }
        }))
    }

    /// The caller's new notifications.
    async fn notification_added(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<Notification>>> {
        use futures::StreamExt;
        let user = caller_id(ctx)?;
        let rx = service(ctx)?.feed.subscribe();
        Ok(user_feed(rx, user).map(|r| r.map(Notification)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn doc(user: &str) -> Arc<NotificationDoc> {
        Arc::new(NotificationDoc {
            id: kit::ids::new_id(),
            key: String::new(),
            user_id: user.into(),
            source_key: String::new(),
            kind: "SYSTEM".into(),
            title: String::new(),
            message: String::new(),
            priority: "LOW".into(),
            channels: Vec::new(),
            read: false,
            created_at: mongodb::bson::DateTime::now(),
            alert: None,
        })
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_its_buffer_gets_a_clear_error_and_is_closed() {
        let (tx, _) = broadcast::channel(2);
        let slow = user_feed(tx.subscribe(), "u".into());
        let mut fast = Box::pin(user_feed(tx.subscribe(), "u".into()));
        // The fast one keeps up; the slow one never reads.
        for _ in 0..6 {
            tx.send(doc("u")).unwrap();
            assert!(fast.next().await.unwrap().is_ok());
        }
        drop(tx);
        let got: Vec<_> = slow.collect().await;
        assert_eq!(got.len(), 1, "an error, then the end");
        let e = got[0].as_ref().unwrap_err();
        assert!(e.message.contains("too slow"), "{}", e.message);
        assert!(fast.next().await.is_none());
    }

    #[tokio::test]
    async fn a_subscriber_sees_only_its_own_users_notifications() {
        let (tx, _) = broadcast::channel(8);
        let feed = user_feed(tx.subscribe(), "me".into());
        tx.send(doc("other")).unwrap();
        tx.send(doc("me")).unwrap();
        drop(tx);
        let got: Vec<_> = feed.collect().await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().user_id, "me");
    }
}
