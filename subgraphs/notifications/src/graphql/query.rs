//! The `Query` fields.

use async_graphql::{Context, Object, Result};
use contract::ids::NotificationId;
use kit::AppError;

use super::{
    NotificationConnection, NotificationEdge, NotificationPageInfo, NotificationPreferences,
    PushSubscription, load_preferences, service,
};

// Every field here is a root field: it shares the response's one `data` object with
// the other subgraphs' root fields, so it is nullable (`Option`), and a failure here
// costs only this field (see schema/README.md, "Nullability across subgraphs").
#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// The caller's notifications, newest first.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        unread_only: Option<bool>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<NotificationConnection>> {
        let user = kit::auth::caller_id(ctx)?;
        let first = first.unwrap_or(50);
        if !(1..=100).contains(&first) {
            return Err(AppError::validation("first", "first must be between 1 and 100").into());
        }
        let after = after
            .map(|a| {
                NotificationId::parse(&a)
                    .map_err(|_| AppError::validation("after", "not a cursor from this list"))
            })
            .transpose()?;
        let svc = service(ctx)?;
        let unread = unread_only.unwrap_or(false);
        let mut page = svc
            .store
            .page(&user, unread, after.as_ref(), i64::from(first) + 1)
            .await?;
        let has_next_page = page.len() > first as usize;
        page.truncate(first as usize);
        let total_count = svc.store.count(&user, unread).await?;
        Ok(Some(NotificationConnection {
            page_info: NotificationPageInfo {
                has_next_page,
                end_cursor: page.last().map(|n| n.id.to_string()),
            },
            edges: page
                .into_iter()
                .map(|n| NotificationEdge {
                    cursor: n.id.to_string(),
                    node: n.into(),
                })
                .collect(),
            total_count: i64::try_from(total_count).unwrap_or(i64::MAX),
        }))
    }

    async fn unread_notification_count(&self, ctx: &Context<'_>) -> Result<Option<i64>> {
        let user = kit::auth::caller_id(ctx)?;
        let n = service(ctx)?.store.count(&user, true).await?;
        Ok(Some(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    /// The application server key (VAPID public key, base64url) a web client passes to
    /// `pushManager.subscribe` before `registerPushSubscription`.
    async fn web_push_public_key(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(Some(service(ctx)?.vapid.public_key().to_string()))
    }

    /// The caller's devices registered for Web Push, oldest first.
    async fn push_subscriptions(&self, ctx: &Context<'_>) -> Result<Option<Vec<PushSubscription>>> {
        let user = kit::auth::caller_id(ctx)?;
        let devices = service(ctx)?.store.push_devices_of(&user).await?;
        Ok(Some(devices.into_iter().map(PushSubscription).collect()))
    }

    async fn notification_preferences(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<NotificationPreferences>> {
        let user = kit::auth::caller_id(ctx)?;
        Ok(Some(NotificationPreferences(
            load_preferences(ctx, &user).await?,
        )))
    }
}
