//! Storage: documents, indexes and queries of the `users` database. Methods take and
//! return domain types; the documents are mapped in [`docs`].

mod docs;
mod households;
mod two_factor;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use contract::ids::UserId;
use futures::TryStreamExt;
use kit::AppError;
use mongodb::bson::{self, Document, doc};
use mongodb::options::{FindOptions, IndexOptions};
use mongodb::{Collection, Database, IndexModel};

use docs::LoginFailureDoc;
pub use docs::{RefreshTokenDoc, UserDoc};
pub use households::{HouseholdDoc, InvitationDoc};
pub use two_factor::{Challenge, ChallengeDoc, TwoFactor, TwoFactorDoc};

use crate::domain::{FamilyId, RefreshToken, User};

#[derive(Clone)]
pub struct Store {
    users: Collection<UserDoc>,
    refresh_tokens: Collection<RefreshTokenDoc>,
    login_failures: Collection<LoginFailureDoc>,
    two_factor: Collection<TwoFactorDoc>,
    challenges: Collection<ChallengeDoc>,
    households: Collection<HouseholdDoc>,
    invitations: Collection<InvitationDoc>,
}

/// Which unique field a duplicate registration hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Email,
    Username,
}

impl Store {
    pub fn new(db: &Database) -> Store {
        Store {
            users: db.collection("users"),
            refresh_tokens: db.collection("refresh_tokens"),
            login_failures: db.collection("login_failures"),
            two_factor: db.collection("two_factor"),
            challenges: db.collection("login_challenges"),
            households: db.collection("households"),
            invitations: db.collection("household_invitations"),
        }
    }

    /// Creates the indexes every query relies on. Idempotent.
    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        let unique = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .unique(true)
                        .name(name.to_string())
                        .build(),
                )
                .build()
        };
        let plain = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        // Removes a document once the date at `field` is `after` in the past.
        let expiring = |field: &str, name: &str, after: Duration| {
            IndexModel::builder()
                .keys(doc! { field: 1 })
                .options(
                    IndexOptions::builder()
                        .name(name.to_string())
                        .expire_after(after)
                        .build(),
                )
                .build()
        };
        self.users
            .create_indexes([
                unique(doc! { "emailKey": 1 }, "email_unique"),
                unique(doc! { "usernameKey": 1 }, "username_unique"),
            ])
            .await?;
        self.refresh_tokens
            .create_indexes([
                plain(doc! { "familyId": 1 }, "family"),
                plain(doc! { "userId": 1 }, "user"),
                expiring("expiresAt", "expiry_ttl", Duration::ZERO),
            ])
            .await?;
        self.login_failures
            .create_indexes([
                plain(doc! { "key": 1, "at": 1 }, "key_at"),
                expiring("at", "at_ttl", Duration::from_secs(24 * 3600)),
            ])
            .await?;
        self.challenges
            .create_indexes([expiring("expiresAt", "expiry_ttl", Duration::ZERO)])
            .await?;
        self.households
            .create_indexes([plain(doc! { "memberIds": 1 }, "members")])
            .await?;
        self.invitations
            .create_indexes([
                plain(doc! { "householdId": 1, "status": 1 }, "household_status"),
                plain(doc! { "inviteeId": 1, "status": 1 }, "invitee_status"),
            ])
            .await?;
        Ok(())
    }

    /// Inserts a new user; a unique-index violation says which field is taken.
    pub async fn insert_user(&self, user: &User) -> Result<Result<(), Taken>, AppError> {
        let doc = UserDoc::of(user);
        match self.users.insert_one(&doc).await {
            Ok(_) => Ok(Ok(())),
            Err(e) if kit::error::is_duplicate_key(&e) => {
                let email_taken = self
                    .users
                    .count_documents(doc! { "emailKey": &doc.email_key })
                    .await?
                    > 0;
                let text = e.to_string();
                if email_taken || text.contains("email") {
                    Ok(Err(Taken::Email))
                } else {
                    Ok(Err(Taken::Username))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, AppError> {
        self.users
            .find_one(doc! { "_id": id.as_str() })
            .await?
            .map(User::try_from)
            .transpose()
    }

    /// The user whose lower-cased email is `key`.
    pub async fn user_by_email_key(&self, key: &str) -> Result<Option<User>, AppError> {
        self.users
            .find_one(doc! { "emailKey": key })
            .await?
            .map(User::try_from)
            .transpose()
    }

    /// Loads many users in one query.
    pub async fn users_by_ids(&self, ids: &[UserId]) -> Result<HashMap<UserId, User>, AppError> {
        let ids: Vec<&str> = ids.iter().map(UserId::as_str).collect();
        let docs: Vec<UserDoc> = self
            .users
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        docs.into_iter()
            .map(|d| User::try_from(d).map(|u| (u.id.clone(), u)))
            .collect()
    }

    /// Writes the profile fields of `user` (looked up by id).
    pub async fn update_profile(&self, user: &User) -> Result<(), AppError> {
        let d = UserDoc::of(user);
        self.users
            .update_one(
                doc! { "_id": &d.id },
                doc! { "$set": {
                    "firstName": &d.first_name,
                    "lastName": &d.last_name,
                    "currency": &d.currency,
                    "timezone": &d.timezone,
                    "monthlyIncomeMinor": d.monthly_income_minor,
                },
                // Server time; also sidesteps the local server storing `$set` dates as text.
                "$currentDate": { "updatedAt": true } },
            )
            .await?;
        Ok(())
    }

    pub async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<(), AppError> {
        self.refresh_tokens
            .insert_one(RefreshTokenDoc::of(token))
            .await?;
        Ok(())
    }

    /// The refresh token whose SHA-256 hex is `hash`.
    pub async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshToken>, AppError> {
        Ok(self
            .refresh_tokens
            .find_one(doc! { "_id": hash })
            .await?
            .map(RefreshToken::from))
    }

    /// Marks a token used if nobody used or revoked it first; false when it lost the race.
    pub async fn mark_refresh_token_used(&self, hash: &str) -> Result<bool, AppError> {
        let r = self
            .refresh_tokens
            .update_one(
                doc! { "_id": hash, "usedAt": null, "revokedAt": null },
                doc! { "$currentDate": { "usedAt": true } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Revokes every token of a family.
    pub async fn revoke_family(&self, family: &FamilyId) -> Result<(), AppError> {
        self.refresh_tokens
            .update_many(
                doc! { "familyId": family.as_str(), "revokedAt": null },
                doc! { "$currentDate": { "revokedAt": true } },
            )
            .await?;
        Ok(())
    }

    /// Failed logins for `key` since `since`, oldest first.
    pub async fn login_failures_since(
        &self,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, AppError> {
        let docs: Vec<LoginFailureDoc> = self
            .login_failures
            .find(doc! { "key": key, "at": { "$gt": bson::DateTime::from_chrono(since) } })
            .with_options(FindOptions::builder().sort(doc! { "at": 1 }).build())
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(|d| d.at.to_chrono()).collect())
    }

    pub async fn record_login_failure(&self, key: &str, at: DateTime<Utc>) -> Result<(), AppError> {
        self.login_failures
            .insert_one(LoginFailureDoc {
                id: kit::ids::new_id(),
                key: key.to_string(),
                at: bson::DateTime::from_chrono(at),
            })
            .await?;
        Ok(())
    }

    pub async fn clear_login_failures(&self, key: &str) -> Result<(), AppError> {
        self.login_failures.delete_many(doc! { "key": key }).await?;
        Ok(())
    }
}
