//! Storage of the notifications subgraph (db `notifications`):
//! - `notifications`: one per source (`sourceKey` unique: the event id, or
//!   `weekly|<user>|<week>`), `key` (= `_id`, a UUIDv7) is the increasing key that
//!   pagination and the subscription tail use;
//! - `deliveries`: one per (notification, outside channel), `_id` = `<id>|<channel>`,
//!   so a channel is never given the same notification twice;
//! - `preferences`: one per user.

use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

pub const NOTIFICATIONS: &str = "notifications";
pub const DELIVERIES: &str = "deliveries";
pub const PREFERENCES: &str = "preferences";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    /// Same as `_id`; indexed with `userId`.
    pub key: String,
    pub user_id: String,
    pub source_key: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    pub channels: Vec<String>,
    #[serde(deserialize_with = "lenient_bool")]
    pub read: bool,
    pub created_at: bson::DateTime,
    /// The alert, for budget alert notifications.
    pub alert: Option<AlertData>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertData {
    pub alert_id: String,
    pub budget_id: String,
    pub category: Option<String>,
    pub threshold: i64,
    pub percent_used: f64,
    pub severity: String,
    pub period_start: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub notification_id: String,
    pub user_id: String,
    pub channel: String,
    /// Email address or URL, fixed when the notification was made.
    pub target: String,
    /// `PENDING`, `SENT` or `FAILED`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Epoch milliseconds (numbers compare the same everywhere).
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub lease_until_ms: i64,
    pub done_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreferencesDoc {
    #[serde(rename = "_id")]
    pub user_id: String,
    pub disabled_channels: Vec<String>,
    pub disabled_types: Vec<String>,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    /// `HH:MM` local times.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    pub timezone: String,
}

/// Reads a boolean also when stored as a number: nx-27017 stores the `true` of a
/// `$set` as `1` (real MongoDB keeps the boolean; both read the same here).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match bson::Bson::deserialize(d)? {
        bson::Bson::Boolean(b) => Ok(b),
        bson::Bson::Int32(n) => Ok(n != 0),
        bson::Bson::Int64(n) => Ok(n != 0),
        other => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

#[derive(Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: &Database) -> Store {
        Store { db: db.clone() }
    }

    pub fn notifications(&self) -> Collection<NotificationDoc> {
        self.db.collection(NOTIFICATIONS)
    }

    pub fn deliveries(&self) -> Collection<DeliveryDoc> {
        self.db.collection(DELIVERIES)
    }

    pub fn preferences(&self) -> Collection<PreferencesDoc> {
        self.db.collection(PREFERENCES)
    }

    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        let n = self.notifications();
        n.create_index(index(doc! { "sourceKey": 1 }, "source_key", true))
            .await?;
        n.create_index(index(doc! { "userId": 1, "key": -1 }, "user_key", false))
            .await?;
        n.create_index(index(doc! { "key": 1 }, "tail_key", false))
            .await?;
        self.deliveries()
            .create_index(index(
                doc! { "status": 1, "nextAttemptMs": 1 },
                "due",
                false,
            ))
            .await?;
        self.deliveries()
            .create_index(index(
                doc! { "notificationId": 1 },
                "by_notification",
                false,
            ))
            .await?;
        Ok(())
    }

    /// Inserts a notification; false when its source was already notified.
    pub async fn insert_notification(&self, n: &NotificationDoc) -> Result<bool, AppError> {
        kit::db::insert_new(&self.notifications(), n).await
    }

    pub async fn by_source(&self, source_key: &str) -> Result<Option<NotificationDoc>, AppError> {
        Ok(self
            .notifications()
            .find_one(doc! { "sourceKey": source_key })
            .await?)
    }

    /// Creates a delivery unless that (notification, channel) already has one.
    pub async fn insert_delivery(&self, d: &DeliveryDoc) -> Result<bool, AppError> {
        kit::db::insert_new(&self.deliveries(), d).await
    }

    pub async fn get(&self, user_id: &str, id: &str) -> Result<Option<NotificationDoc>, AppError> {
        Ok(self
            .notifications()
            .find_one(doc! { "_id": id, "userId": user_id })
            .await?)
    }

    /// A page, newest first, after the cursor key.
    pub async fn page(
        &self,
        user_id: &str,
        unread_only: bool,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationDoc>, AppError> {
        let mut filter = doc! { "userId": user_id };
        if unread_only {
            filter.insert("read", false);
        }
        if let Some(a) = after {
            filter.insert("key", doc! { "$lt": a });
        }
        Ok(self
            .notifications()
            .find(filter)
            .sort(doc! { "key": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    pub async fn count(&self, user_id: &str, unread_only: bool) -> Result<u64, AppError> {
        let mut filter = doc! { "userId": user_id };
        if unread_only {
            filter.insert("read", false);
        }
        Ok(self.notifications().count_documents(filter).await?)
    }

    pub async fn mark_read(&self, user_id: &str, id: &str) -> Result<bool, AppError> {
        let r = self
            .notifications()
            .update_one(
                doc! { "_id": id, "userId": user_id },
                doc! { "$set": { "read": true } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    pub async fn mark_all_read(&self, user_id: &str) -> Result<u64, AppError> {
        let r = self
            .notifications()
            .update_many(
                doc! { "userId": user_id, "read": false },
                doc! { "$set": { "read": true } },
            )
            .await?;
        Ok(r.modified_count)
    }

    pub async fn delete(&self, user_id: &str, id: &str) -> Result<bool, AppError> {
        let r = self
            .notifications()
            .delete_one(doc! { "_id": id, "userId": user_id })
            .await?;
        Ok(r.deleted_count == 1)
    }

    pub async fn deliveries_of(&self, notification_id: &str) -> Result<Vec<DeliveryDoc>, AppError> {
        Ok(self
            .deliveries()
            .find(doc! { "notificationId": notification_id })
            .await?
            .try_collect()
            .await?)
    }

    /// Deliveries due now, not leased.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<DeliveryDoc>, AppError> {
        Ok(self
            .deliveries()
            .find(doc! { "status": "PENDING", "nextAttemptMs": { "$lte": now_ms } })
            .sort(doc! { "nextAttemptMs": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Takes a delivery for `lease_ms`; false when another worker holds it or it is done.
    pub async fn claim(&self, id: &str, now_ms: i64, lease_ms: i64) -> Result<bool, AppError> {
        let r = self
            .deliveries()
            .update_one(
                doc! { "_id": id, "status": "PENDING", "leaseUntilMs": { "$lt": now_ms } },
                doc! { "$set": { "leaseUntilMs": now_ms + lease_ms } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    pub async fn finish(&self, id: &str, set: Document) -> Result<(), AppError> {
        self.deliveries()
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await?;
        Ok(())
    }

    /// Notifications whose key is above `low`, oldest first (the subscription tail).
    pub async fn since(&self, low: &str, limit: i64) -> Result<Vec<NotificationDoc>, AppError> {
        Ok(self
            .notifications()
            .find(doc! { "key": { "$gt": low } })
            .sort(doc! { "key": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    pub async fn get_preferences(&self, user_id: &str) -> Result<Option<PreferencesDoc>, AppError> {
        Ok(self.preferences().find_one(doc! { "_id": user_id }).await?)
    }

    pub async fn put_preferences(&self, p: &PreferencesDoc) -> Result<(), AppError> {
        self.preferences()
            .replace_one(doc! { "_id": &p.user_id }, p)
            .upsert(true)
            .await?;
        Ok(())
    }
}
