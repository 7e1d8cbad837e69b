//! Two-step sign-in records: one `two_factor` document per user who enrolled, and the
//! short-lived `login_challenges` between a password and its code. Every change is one
//! conditional write, so two requests racing with one code cannot both succeed.

use chrono::{DateTime, Utc};
use contract::ids::UserId;
use kit::AppError;
use mongodb::bson::{self, doc};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::domain::totp::TotpSecret;

/// A user's authenticator secret; enabled once `confirmed_ms` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwoFactorDoc {
    /// The user's id.
    #[serde(rename = "_id")]
    pub user_id: String,
    /// Base32 secret shared with the authenticator app.
    pub secret: String,
    /// When it was turned on, epoch milliseconds (a number: one local server stores a
    /// date written by `$set` as text).
    pub confirmed_ms: Option<i64>,
    /// The last TOTP step a code was accepted for: codes of this step or earlier are
    /// refused (no replay).
    pub last_step: i64,
    /// SHA-256 of each unused recovery code.
    #[serde(default)]
    pub recovery: Vec<String>,
}

/// A user's two-step sign-in as read.
#[derive(Debug, Clone)]
pub struct TwoFactor {
    pub secret: TotpSecret,
    pub enabled: bool,
    pub recovery_left: usize,
}

/// A password accepted, waiting for its code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeDoc {
    /// SHA-256 hex of the challenge token.
    #[serde(rename = "_id")]
    pub hash: String,
    pub user_id: String,
    /// The lockout key of the login (the normalised email).
    pub key: String,
    pub expires_at: bson::DateTime,
}

/// A challenge as read.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub user_id: UserId,
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// The user's two-step sign-in, if they started enrolling.
    pub async fn two_factor(&self, user: &UserId) -> Result<Option<TwoFactor>, AppError> {
        let Some(d) = self
            .two_factor
            .find_one(doc! { "_id": user.as_str() })
            .await?
        else {
            return Ok(None);
        };
        let secret = TotpSecret::from_base32(&d.secret).ok_or_else(|| {
            kit::error::unreadable("two_factor", &d.user_id, "secret", "(not shown)")
        })?;
        Ok(Some(TwoFactor {
            secret,
            enabled: d.confirmed_ms.is_some(),
            recovery_left: d.recovery.len(),
        }))
    }

    /// Starts (or restarts) enrolment with a new secret; false when two-step sign-in
    /// is already on (it is never replaced while on).
    pub async fn begin_two_factor(
        &self,
        user: &UserId,
        secret: &TotpSecret,
    ) -> Result<bool, AppError> {
        let pending = TwoFactorDoc {
            user_id: user.to_string(),
            secret: secret.base32(),
            confirmed_ms: None,
            last_step: 0,
            recovery: Vec::new(),
        };
        let replaced = self
            .two_factor
            .replace_one(doc! { "_id": user.as_str(), "confirmedMs": null }, &pending)
            .await?;
        if replaced.matched_count == 1 {
            return Ok(true);
        }
        match self.two_factor.insert_one(&pending).await {
            Ok(_) => Ok(true),
            // Another document for the user exists: it is confirmed (or a racing
            // enrolment won; the caller asks again).
            Err(e) if kit::error::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Turns two-step sign-in on with the code's `step` used and the recovery codes'
    /// hashes; false when it was not pending with `secret` (or the step was used).
    pub async fn confirm_two_factor(
        &self,
        user: &UserId,
        secret: &TotpSecret,
        step: i64,
        recovery: &[String],
        at: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let r = self
            .two_factor
            .update_one(
                doc! {
                    "_id": user.as_str(),
                    "secret": secret.base32(),
                    "confirmedMs": null,
                    "lastStep": { "$lt": step },
                },
                doc! { "$set": {
                    "confirmedMs": at.timestamp_millis(),
                    "lastStep": step,
                    "recovery": recovery,
                } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Takes a code's `step` for an enabled two-step sign-in; false when that step (or a
    /// later one) was already taken: the code is being replayed.
    pub async fn take_step(&self, user: &UserId, step: i64) -> Result<bool, AppError> {
        let r = self
            .two_factor
            .update_one(
                doc! {
                    "_id": user.as_str(),
                    "confirmedMs": { "$ne": null },
                    "lastStep": { "$lt": step },
                },
                doc! { "$set": { "lastStep": step } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Spends a recovery code (by hash); false when it is not one of the unused ones.
    pub async fn take_recovery_code(&self, user: &UserId, hash: &str) -> Result<bool, AppError> {
        let r = self
            .two_factor
            .update_one(
                doc! {
                    "_id": user.as_str(),
                    "confirmedMs": { "$ne": null },
                    // `$in`: array element match that holds on every local server.
                    "recovery": { "$in": [hash] },
                },
                doc! { "$pull": { "recovery": hash } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Turns two-step sign-in off.
    pub async fn remove_two_factor(&self, user: &UserId) -> Result<(), AppError> {
        self.two_factor
            .delete_one(doc! { "_id": user.as_str() })
            .await?;
        Ok(())
    }

    pub async fn insert_challenge(
        &self,
        hash: &str,
        user: &UserId,
        key: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), AppError> {
        self.challenges
            .insert_one(ChallengeDoc {
                hash: hash.to_string(),
                user_id: user.to_string(),
                key: key.to_string(),
                expires_at: bson::DateTime::from_chrono(expires_at),
            })
            .await?;
        Ok(())
    }

    pub async fn challenge(&self, hash: &str) -> Result<Option<Challenge>, AppError> {
        Ok(self
            .challenges
            .find_one(doc! { "_id": hash })
            .await?
            .map(|d| Challenge {
                user_id: UserId::from_trusted(d.user_id),
                key: d.key,
                expires_at: d.expires_at.to_chrono(),
            }))
    }

    /// Ends a challenge; false when it was already ended (a second use).
    pub async fn end_challenge(&self, hash: &str) -> Result<bool, AppError> {
        let r = self.challenges.delete_one(doc! { "_id": hash }).await?;
        Ok(r.deleted_count == 1)
    }
}
