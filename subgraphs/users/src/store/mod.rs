//! Storage: documents, indexes and queries of the `users` database.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use kit::AppError;
use mongodb::bson::{self, Document, doc};
use mongodb::options::{FindOptions, IndexOptions};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    /// Lower-cased username, unique.
    pub username_key: String,
    pub email: String,
    /// Lower-cased email, unique.
    pub email_key: String,
    pub password_hash: String,
    pub currency: String,
    pub timezone: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Minor units of `currency`.
    pub monthly_income_minor: Option<i64>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
}

/// A refresh token, stored only as the SHA-256 of its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshTokenDoc {
    /// SHA-256 hex of the token.
    #[serde(rename = "_id")]
    pub hash: String,
    pub user_id: String,
    /// All tokens descending from one login share a family.
    pub family_id: String,
    pub created_at: bson::DateTime,
    pub expires_at: bson::DateTime,
    /// Set when the token was exchanged for a new one.
    pub used_at: Option<bson::DateTime>,
    pub revoked_at: Option<bson::DateTime>,
}

/// One failed login, counted within the lockout window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginFailureDoc {
    #[serde(rename = "_id")]
    id: String,
    key: String,
    at: bson::DateTime,
}

#[derive(Clone)]
pub struct Store {
    users: Collection<UserDoc>,
    refresh_tokens: Collection<RefreshTokenDoc>,
    login_failures: Collection<LoginFailureDoc>,
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
                IndexModel::builder()
                    .keys(doc! { "expiresAt": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("expiry_ttl".to_string())
                            .expire_after(Duration::from_secs(0))
                            .build(),
                    )
                    .build(),
            ])
            .await?;
        self.login_failures
            .create_indexes([
                plain(doc! { "key": 1, "at": 1 }, "key_at"),
                IndexModel::builder()
                    .keys(doc! { "at": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("at_ttl".to_string())
                            .expire_after(Duration::from_secs(24 * 3600))
                            .build(),
                    )
                    .build(),
            ])
            .await?;
        Ok(())
    }

    /// Inserts a new user; a unique-index violation says which field is taken.
    pub async fn insert_user(&self, user: &UserDoc) -> Result<Result<(), Taken>, AppError> {
        match self.users.insert_one(user).await {
            Ok(_) => Ok(Ok(())),
            Err(e) if kit::error::is_duplicate_key(&e) => {
                let email_taken = self
                    .users
                    .count_documents(doc! { "emailKey": &user.email_key })
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

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserDoc>, AppError> {
        Ok(self.users.find_one(doc! { "_id": id }).await?)
    }

    pub async fn user_by_email_key(&self, key: &str) -> Result<Option<UserDoc>, AppError> {
        Ok(self.users.find_one(doc! { "emailKey": key }).await?)
    }

    /// Loads many users in one query.
    pub async fn users_by_ids(&self, ids: &[String]) -> Result<HashMap<String, UserDoc>, AppError> {
        let docs: Vec<UserDoc> = self
            .users
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(|d| (d.id.clone(), d)).collect())
    }

    /// Writes the profile fields of `user` (looked up by id).
    pub async fn update_profile(&self, user: &UserDoc) -> Result<(), AppError> {
        self.users
            .update_one(
                doc! { "_id": &user.id },
                doc! { "$set": {
                    "firstName": &user.first_name,
                    "lastName": &user.last_name,
                    "currency": &user.currency,
                    "timezone": &user.timezone,
                    "monthlyIncomeMinor": user.monthly_income_minor,
                },
                // Server time; also sidesteps the local server storing `$set` dates as text.
                "$currentDate": { "updatedAt": true } },
            )
            .await?;
        Ok(())
    }

    pub async fn insert_refresh_token(&self, token: &RefreshTokenDoc) -> Result<(), AppError> {
        self.refresh_tokens.insert_one(token).await?;
        Ok(())
    }

    pub async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenDoc>, AppError> {
        Ok(self.refresh_tokens.find_one(doc! { "_id": hash }).await?)
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
    pub async fn revoke_family(&self, family_id: &str) -> Result<(), AppError> {
        self.refresh_tokens
            .update_many(
                doc! { "familyId": family_id, "revokedAt": null },
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
