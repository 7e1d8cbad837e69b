//! Where a user is reached besides email and webhooks: their browsers registered for
//! Web Push, and their phone number, verified by a code sent by SMS before SMS uses it.
//! Every input is checked before anything is written, and a refusal writes nothing.

use contract::ids::UserId;
use kit::{AppError, ErrorCode};

use crate::channels::sms;
use crate::domain::phone::{self, PhoneVerification};
use crate::domain::push::{self, MAX_PUSH_DEVICES, PushDevice};
use crate::domain::{Channel, Preferences, PreferencesChange};
use crate::service::Notifications;

/// A browser's push subscription as a client gives it.
pub struct NewPushDevice<'a> {
    pub endpoint: &'a str,
    pub p256dh: &'a str,
    pub auth: &'a str,
    pub name: Option<&'a str>,
}

fn too_many_devices() -> AppError {
    AppError::refused(
        ErrorCode::LimitReached,
        format!("at most {MAX_PUSH_DEVICES} devices can be registered for push; remove one first"),
        Some("endpoint"),
    )
}

impl Notifications {
    /// Registers (or renews the keys of) a browser's push subscription for `user`. An
    /// endpoint is one device: registered again by another user, it becomes theirs.
    pub async fn register_push_device(
        &self,
        user: &UserId,
        new: NewPushDevice<'_>,
    ) -> Result<PushDevice, AppError> {
        let endpoint = push::push_endpoint(new.endpoint)?;
        self.push
            .check_endpoint(&endpoint)
            .map_err(|e| AppError::validation("endpoint", e))?;
        let (p256dh, auth) = push::push_keys(new.p256dh, new.auth)?;
        let name = new.name.map(push::device_name).transpose()?.flatten();
        let endpoint = endpoint.to_string();
        let id = push::device_id(&endpoint);
        let existing = self.store.push_device(&id).await?;
        let renewal = existing.as_ref().is_some_and(|d| &d.user_id == user);
        if !renewal && self.store.count_push_devices(user).await? >= MAX_PUSH_DEVICES {
            return Err(too_many_devices());
        }
        let device = PushDevice {
            id,
            user_id: user.clone(),
            endpoint,
            p256dh,
            auth,
            name,
            created_at: existing
                .filter(|_| renewal)
                .map_or_else(|| domain_now(self), |d| d.created_at),
        };
        self.store.put_push_device(&device).await?;
        // Registrations racing each other may pass the count together: the one that
        // finds itself past the limit takes itself back.
        if !renewal && self.store.count_push_devices(user).await? > MAX_PUSH_DEVICES {
            self.store.remove_push_device(user, &device.id).await?;
            return Err(too_many_devices());
        }
        Ok(device)
    }

    /// Removes the user's device named by its id or its endpoint.
    pub async fn remove_push_device(
        &self,
        user: &UserId,
        id: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<(), AppError> {
        let id = match (id, endpoint) {
            (Some(id), None) => id.to_string(),
            (None, Some(endpoint)) => {
                if endpoint.len() > push::MAX_ENDPOINT_BYTES {
                    return Err(AppError::not_found("push subscription"));
                }
                push::device_id(endpoint.trim())
            }
            _ => {
                return Err(AppError::validation(
                    "id",
                    "give either the device's id or its endpoint",
                ));
            }
        };
        if !self.store.remove_push_device(user, &id).await? {
            return Err(AppError::not_found("push subscription"));
        }
        Ok(())
    }

    /// Starts verifying `raw` as the user's phone number: a code is sent to it by SMS.
    /// Nothing is kept when the code cannot be sent.
    pub async fn set_phone_number(
        &self,
        user: &UserId,
        raw: &str,
    ) -> Result<PhoneVerification, AppError> {
        let number = phone::phone_number(raw)?;
        let now = domain_now(self);
        let previous = self.store.verification(user).await?;
        let sent = PhoneVerification::sends_after(previous.as_ref(), now)?;
        let code = phone::new_code();
        let verification = PhoneVerification {
            user_id: user.clone(),
            code_hash: phone::code_hash(self.code_key.expose(), user, &number, &code),
            phone: number,
            expires_at: now
                + chrono::Duration::from_std(phone::CODE_TTL).unwrap_or(chrono::Duration::zero()),
            attempts: 0,
            sent,
        };
        self.store.put_verification(&verification).await?;
        let text = format!(
            "Your Smart Expense Tracker code is {code}. It expires in {} minutes.",
            phone::CODE_TTL.as_secs() / 60
        );
        let sent = sms::send_sms(&self.sms_http, &self.sms, &verification.phone, &text).await;
        if let Err(failure) = sent {
            // Back to how it was: the earlier code (and its throttle) or none.
            match &previous {
                Some(p) => self.store.put_verification(p).await?,
                None => self.store.delete_verification(user).await?,
            }
            tracing::warn!(reason = %failure.reason, "verification code not sent");
            return Err(AppError::refused(
                ErrorCode::DeliveryFailed,
                "the code could not be sent by SMS; try again later",
                Some("phoneNumber"),
            ));
        }
        Ok(verification)
    }

    /// Confirms the user's pending number with `raw` (the code it was sent): the number
    /// becomes the one SMS goes to.
    pub async fn confirm_phone_number(
        &self,
        user: &UserId,
        prefs: Preferences,
        raw: &str,
    ) -> Result<Preferences, AppError> {
        let code = phone::verification_code(raw)?;
        let refused = |m: &str| AppError::validation("code", m);
        let Some(pending) = self.store.verification(user).await? else {
            return Err(refused("no code is waiting: set the phone number first"));
        };
        if pending.expires_at <= domain_now(self) {
            return Err(refused(
                "the code has expired: set the phone number again for a new one",
            ));
        }
        let Some(counted) = self
            .store
            .count_code_attempt(user, phone::MAX_CODE_ATTEMPTS)
            .await?
        else {
            return Err(refused(
                "too many wrong codes: set the phone number again for a new one",
            ));
        };
        let expected = phone::code_hash(self.code_key.expose(), user, &counted.phone, &code);
        if !kit::auth::secrets_equal(&expected, &counted.code_hash) {
            let left = counted.attempts_left() - 1;
            return Err(refused(&format!(
                "wrong code ({left} {} left)",
                if left == 1 { "try" } else { "tries" }
            )));
        }
        let prefs = self
            .update_preferences(
                user,
                prefs,
                PreferencesChange {
                    phone: Some(Some(counted.phone)),
                    ..Default::default()
                },
            )
            .await?;
        self.store.delete_verification(user).await?;
        Ok(prefs)
    }

    /// Forgets the user's phone number (verified or pending); SMS is switched off.
    pub async fn remove_phone_number(
        &self,
        user: &UserId,
        prefs: Preferences,
    ) -> Result<Preferences, AppError> {
        let prefs = self
            .update_preferences(
                user,
                prefs,
                PreferencesChange {
                    phone: Some(None),
                    channels: vec![(Channel::Sms, false)],
                    ..Default::default()
                },
            )
            .await?;
        self.store.delete_verification(user).await?;
        Ok(prefs)
    }
}

/// Now, to the millisecond stored dates keep.
fn domain_now(n: &Notifications) -> chrono::DateTime<chrono::Utc> {
    crate::domain::to_millis(n.clock.now())
}
