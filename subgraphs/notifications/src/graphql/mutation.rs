//! The `Mutation` fields.

use async_graphql::{Context, ID, Object, Result};
use contract::ids::NotificationId;
use kit::AppError;

use super::{
    Notification, NotificationPreferences, NotificationPreferencesInput, PhoneVerification,
    PushSubscription, PushSubscriptionInput, load_preferences, service,
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

    /// Registers this browser for Web Push (subscribe with `webPushPublicKey` as the
    /// `applicationServerKey`); registering the same endpoint again renews its keys.
    /// At most 20 devices per user (`LIMIT_REACHED`).
    async fn register_push_subscription(
        &self,
        ctx: &Context<'_>,
        input: PushSubscriptionInput,
    ) -> Result<PushSubscription> {
        let user = kit::auth::caller_id(ctx)?;
        let device = service(ctx)?
            .register_push_device(&user, input.as_new())
            .await?;
        Ok(PushSubscription(device))
    }

    /// Removes a device from Web Push, named by its `id` or its `endpoint`.
    async fn remove_push_subscription(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        endpoint: Option<String>,
    ) -> Result<bool> {
        let user = kit::auth::caller_id(ctx)?;
        service(ctx)?
            .remove_push_device(&user, id.as_ref().map(|i| i.as_str()), endpoint.as_deref())
            .await?;
        Ok(true)
    }

    /// Sends a verification code by SMS to `phoneNumber` (E.164); the number is used
    /// once the code is confirmed. Codes last 10 minutes and allow 5 tries; at most one
    /// code per 30 seconds and 5 per hour (`RATE_LIMITED`).
    async fn set_phone_number(
        &self,
        ctx: &Context<'_>,
        phone_number: String,
    ) -> Result<PhoneVerification> {
        let user = kit::auth::caller_id(ctx)?;
        let v = service(ctx)?.set_phone_number(&user, &phone_number).await?;
        Ok(PhoneVerification(v))
    }

    /// Confirms the pending phone number with the code it was sent.
    async fn confirm_phone_number(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> Result<NotificationPreferences> {
        let user = kit::auth::caller_id(ctx)?;
        let prefs = load_preferences(ctx, &user).await?;
        let prefs = service(ctx)?
            .confirm_phone_number(&user, prefs, &code)
            .await?;
        Ok(NotificationPreferences(prefs))
    }

    /// Forgets the phone number (and any pending one); SMS is switched off.
    async fn remove_phone_number(&self, ctx: &Context<'_>) -> Result<NotificationPreferences> {
        let user = kit::auth::caller_id(ctx)?;
        let prefs = load_preferences(ctx, &user).await?;
        let prefs = service(ctx)?.remove_phone_number(&user, prefs).await?;
        Ok(NotificationPreferences(prefs))
    }
}
