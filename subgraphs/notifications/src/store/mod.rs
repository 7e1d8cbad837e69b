//! Storage of the notifications subgraph (db `notifications`):
//! - `notifications`: one per source (`sourceKey` unique: the event id, or
//!   `weekly|<user>|<week>`), `key` (= `_id`, a UUIDv7) is the increasing key that
//!   pagination and the subscription tail use;
//! - `deliveries`: one per (notification, outside channel), `_id` = `<id>|<channel>`,
//!   so a channel is never given the same notification twice;
//! - `preferences`: one per user.
//!
//! Methods take and return domain types; the documents are mapped in [`docs`].

mod docs;

use std::time::Duration;

use chrono::{DateTime, Utc};
use contract::ids::{DeliveryId, NotificationId, UserId};
use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use mongodb::bson::{Document, doc};
use mongodb::{Collection, Database};

pub use docs::{AlertData, DeliveryDoc, NotificationDoc, PreferencesDoc};

use crate::domain::{self, Attempt, Delivery, DeliveryStatus, Notification, Preferences};

pub const NOTIFICATIONS: &str = "notifications";
pub const DELIVERIES: &str = "deliveries";
pub const PREFERENCES: &str = "preferences";

#[derive(Clone)]
pub struct Store {
    db: Database,
}

/// Every document read as the domain; the first that does not read is the error.
fn read_all<D, T>(docs: Vec<D>) -> Result<Vec<T>, AppError>
where
    T: TryFrom<D, Error = AppError>,
{
    docs.into_iter().map(T::try_from).collect()
}

impl Store {
    pub fn new(db: &Database) -> Store {
        Store { db: db.clone() }
    }

    fn notifications(&self) -> Collection<NotificationDoc> {
        self.db.collection(NOTIFICATIONS)
    }

    fn deliveries(&self) -> Collection<DeliveryDoc> {
        self.db.collection(DELIVERIES)
    }

    fn preferences(&self) -> Collection<PreferencesDoc> {
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
    pub async fn insert_notification(&self, n: &Notification) -> Result<bool, AppError> {
        kit::db::insert_new(&self.notifications(), &NotificationDoc::of(n)).await
    }

    pub async fn by_source(&self, source_key: &str) -> Result<Option<Notification>, AppError> {
        self.notifications()
            .find_one(doc! { "sourceKey": source_key })
            .await?
            .map(Notification::try_from)
            .transpose()
    }

    /// Creates a delivery unless that (notification, channel) already has one.
    pub async fn insert_delivery(&self, d: &Delivery) -> Result<bool, AppError> {
        kit::db::insert_new(&self.deliveries(), &DeliveryDoc::of(d)).await
    }

    pub async fn get(
        &self,
        user: &UserId,
        id: &NotificationId,
    ) -> Result<Option<Notification>, AppError> {
        self.notifications()
            .find_one(doc! { "_id": id.as_str(), "userId": user.as_str() })
            .await?
            .map(Notification::try_from)
            .transpose()
    }

    /// A page, newest first, after the cursor (a notification id).
    pub async fn page(
        &self,
        user: &UserId,
        unread_only: bool,
        after: Option<&NotificationId>,
        limit: i64,
    ) -> Result<Vec<Notification>, AppError> {
        let mut filter = doc! { "userId": user.as_str() };
        if unread_only {
            filter.insert("read", false);
        }
        if let Some(a) = after {
            filter.insert("key", doc! { "$lt": a.as_str() });
        }
        let docs: Vec<NotificationDoc> = self
            .notifications()
            .find(filter)
            .sort(doc! { "key": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        read_all(docs)
    }

    pub async fn count(&self, user: &UserId, unread_only: bool) -> Result<u64, AppError> {
        let mut filter = doc! { "userId": user.as_str() };
        if unread_only {
            filter.insert("read", false);
        }
        Ok(self.notifications().count_documents(filter).await?)
    }

    pub async fn mark_read(&self, user: &UserId, id: &NotificationId) -> Result<bool, AppError> {
        let r = self
            .notifications()
            .update_one(
                doc! { "_id": id.as_str(), "userId": user.as_str() },
                doc! { "$set": { "read": true } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    pub async fn mark_all_read(&self, user: &UserId) -> Result<u64, AppError> {
        let r = self
            .notifications()
            .update_many(
                doc! { "userId": user.as_str(), "read": false },
                doc! { "$set": { "read": true } },
            )
            .await?;
        Ok(r.modified_count)
    }

    pub async fn delete(&self, user: &UserId, id: &NotificationId) -> Result<bool, AppError> {
        let r = self
            .notifications()
            .delete_one(doc! { "_id": id.as_str(), "userId": user.as_str() })
            .await?;
        Ok(r.deleted_count == 1)
    }

    pub async fn deliveries_of(&self, id: &NotificationId) -> Result<Vec<Delivery>, AppError> {
        let docs: Vec<DeliveryDoc> = self
            .deliveries()
            .find(doc! { "notificationId": id.as_str() })
            .await?
            .try_collect()
            .await?;
        read_all(docs)
    }

    /// Deliveries due at `now`, each read on its own: one that does not read back is
    /// an error of its own and does not hold up the others.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Result<Delivery, AppError>>, AppError> {
        let docs: Vec<DeliveryDoc> = self
            .deliveries()
            .find(doc! {
                "status": DeliveryStatus::Pending.as_str(),
                "nextAttemptMs": { "$lte": now.timestamp_millis() },
            })
            .sort(doc! { "nextAttemptMs": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(Delivery::try_from).collect())
    }

    /// Takes a delivery for `lease`; false when another worker holds it or it is done.
    pub async fn claim(
        &self,
        id: &DeliveryId,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, AppError> {
        let now_ms = now.timestamp_millis();
        let r = self
            .deliveries()
            .update_one(
                doc! {
                    "_id": id.as_str(),
                    "status": DeliveryStatus::Pending.as_str(),
                    "leaseUntilMs": { "$lt": now_ms },
                },
                doc! { "$set": { "leaseUntilMs": now_ms + domain::millis(lease) } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    /// Records attempt number `attempts`, made at `now`, and what it came to.
    pub async fn record_attempt(
        &self,
        id: &DeliveryId,
        attempts: i64,
        now: DateTime<Utc>,
        attempt: &Attempt,
    ) -> Result<(), AppError> {
        let now_ms = now.timestamp_millis();
        let set: Document = match attempt {
            Attempt::Sent => doc! {
                "status": DeliveryStatus::Sent.as_str(),
                "attempts": attempts,
                "doneMs": now_ms,
                "lastError": null,
            },
            Attempt::GaveUp { reason } => doc! {
                "status": DeliveryStatus::Failed.as_str(),
                "attempts": attempts,
                "doneMs": now_ms,
                "lastError": reason,
            },
            Attempt::Retry { reason, next } => doc! {
                "attempts": attempts,
                "lastError": reason,
                "nextAttemptMs": next.timestamp_millis(),
                "leaseUntilMs": 0_i64,
            },
        };
        self.deliveries()
            .update_one(doc! { "_id": id.as_str() }, doc! { "$set": set })
            .await?;
        Ok(())
    }

    /// The user's notifications after `after` (a notification id), oldest first, at
    /// most `limit`: what a subscription that resumes from `after` replays.
    pub async fn user_after(
        &self,
        user: &UserId,
        after: &NotificationId,
        limit: i64,
    ) -> Result<Vec<Notification>, AppError> {
        let docs: Vec<NotificationDoc> = self
            .notifications()
            .find(doc! { "userId": user.as_str(), "key": { "$gt": after.as_str() } })
            .sort(doc! { "key": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        read_all(docs)
    }

    /// How this database lets the tail find new notifications.
    pub async fn follow_mode(&self) -> kit::changes::Follow {
        kit::changes::follow_mode(&self.db).await
    }

    /// Calls `each` with every notification inserted from now on, as it commits (a change
    /// stream; see [`kit::changes`]), until `each` returns `false`. A restarted
    /// `instance` resumes after the last notification it saw.
    pub async fn follow_inserts(
        &self,
        instance: &str,
        retry: std::time::Duration,
        mut each: impl FnMut(Result<Notification, AppError>) -> bool,
    ) {
        let coll = self.db.collection(NOTIFICATIONS);
        let position = kit::changes::Position::new(&self.db, "notifications.feed", instance);
        kit::changes::follow_inserts::<NotificationDoc, _>(coll, Some(position), retry, |doc| {
            each(doc.and_then(Notification::try_from))
        })
        .await
    }

    /// Notifications with ids issued after `after`, oldest first (the subscription
    /// tail), each read on its own as in [`Store::due`].
    pub async fn since(
        &self,
        after: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Result<Notification, AppError>>, AppError> {
        let low = domain::id_floor(after.timestamp_millis());
        let docs: Vec<NotificationDoc> = self
            .notifications()
            .find(doc! { "key": { "$gt": low } })
            .sort(doc! { "key": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(Notification::try_from).collect())
    }

    pub async fn get_preferences(&self, user: &UserId) -> Result<Option<Preferences>, AppError> {
        self.preferences()
            .find_one(doc! { "_id": user.as_str() })
            .await?
            .map(Preferences::try_from)
            .transpose()
    }

    pub async fn put_preferences(&self, user: &UserId, p: &Preferences) -> Result<(), AppError> {
        self.preferences()
            .replace_one(doc! { "_id": user.as_str() }, PreferencesDoc::of(user, p))
            .upsert(true)
            .await?;
        Ok(())
    }
}
