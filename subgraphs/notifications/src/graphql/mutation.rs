//! The `Mutation` fields.

use async_graphql::{Context, ID, Object, Result};
use contract::ids::NotificationId;
use kit::AppError;

use super::{
    Notification, NotificationPreferences, NotificationPreferencesInput, load_preferences, service,
};

/// A notification id from a client; one that is not an id names no notification.
fn notification_id(id: &ID) -> Result<NotificationId, AppError> {
    NotificationId::parse(id).map_err(|_| AppError::not_found("notification"))
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn mark_notification_read(&self, ctx: &Context<'_>, id: ID) -> Result<Notification> {
        let user = kit::auth::caller_id(ctx)?;
        let svc = service(ctx)?;
        let id = notification_id(&id)?;
        if !svc.store.mark_read(&user, &id).await? {
            return Err(AppError::not_found("notification").into());
        }
        let n = svc
            .store
            .get(&user, &id)
            .await?
            .ok_or_else(|| AppError::not_found("notification"))?;
        Ok(n.into())
    }

    /// Returns how many were unread.
    async fn mark_all_notifications_read(&self, ctx: &Context<'_>) -> Result<i64> {
        let user = kit::auth::caller_id(ctx)?;
        let n = service(ctx)?.store.mark_all_read(&user).await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }

    async fn delete_notification(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user = kit::auth::caller_id(ctx)?;
        let svc = service(ctx)?;
        if !svc.store.delete(&user, &notification_id(&id)?).await? {
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
        let user = kit::auth::caller_id(ctx)?;
        let prefs = load_preferences(ctx, &user).await?;
        let change = input.into_change()?;
        let prefs = service(ctx)?
            .update_preferences(&user, prefs, change)
            .await?;
        Ok(NotificationPreferences(prefs))
    }
}
