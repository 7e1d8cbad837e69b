//! Storage of the notifications subgraph (db `notifications`):
//! - `notifications`: one per source (`sourceKey` unique: the event id, or
//!   `weekly|<user>|<week>`), `key` (= `_id`, a UUIDv7) is the increasing key that
//!   pagination and the subscription tail use;
//! - `deliveries`: one per (notification, outside channel), `_id` = `<id>|<channel>`,
//!   so a channel is never given the same notification twice;
//! - `preferences`: one per user;
//! - `push_devices`: a browser's push subscription, `_id` = hex SHA-256 of its endpoint
//!   (an endpoint is one device, of the user who registered it last);
//! - `phone_verifications`: the number a user asked to use and its code's hash, one per
//!   user, until confirmed;
//! - `keys`: the development VAPID key made when none is configured (shared by every
//!   instance over the database).
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

pub use docs::{
    AlertData, DeliveryDoc, NotificationDoc, PhoneVerificationDoc, PreferencesDoc, PushDeviceDoc,
};

use crate::domain::{
    self, Attempt, Delivery, DeliveryStatus, Notification, PhoneVerification, Preferences,
    PushDevice,
};

pub const NOTIFICATIONS: &str = "notifications";
pub const DELIVERIES: &str = "deliveries";
pub const PREFERENCES: &str = "preferences";
pub const PUSH_DEVICES: &str = "push_devices";
pub const PHONE_VERIFICATIONS: &str = "phone_verifications";
pub const KEYS: &str = "keys";

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

    fn push_devices(&self) -> Collection<PushDeviceDoc> {
        self.db.collection(PUSH_DEVICES)
    }

    fn verifications(&self) -> Collection<PhoneVerificationDoc> {
        self.db.collection(PHONE_VERIFICATIONS)
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
        self.push_devices()
            .create_index(index(
                doc! { "userId": 1, "createdMs": 1 },
                "user_devices",
                false,
            ))
            .await?;
        Ok(())
    }

    /// The stored development VAPID key, stored as `candidate` when there is none yet:
    /// every instance over the database signs with the same one.
    pub async fn development_key(&self, candidate: &str) -> Result<String, AppError> {
        let keys = self.db.collection::<Document>(KEYS);
        let id = "vapid-development";
        kit::db::insert_new(&keys, &doc! { "_id": id, "privateKey": candidate }).await?;
        let stored = keys
            .find_one(doc! { "_id": id })
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("{KEYS} {id}: not stored")))?;
        stored
            .get_str("privateKey")
            .map(str::to_string)
            .map_err(|e| kit::error::unreadable_because("key", id, "privateKey", &stored, e))
    }

    pub async fn push_device(&self, id: &str) -> Result<Option<PushDevice>, AppError> {
        self.push_devices()
            .find_one(doc! { "_id": id })
            .await?
            .map(PushDevice::try_from)
            .transpose()
    }

    /// The user's devices, oldest first.
    pub async fn push_devices_of(&self, user: &UserId) -> Result<Vec<PushDevice>, AppError> {
        let docs: Vec<PushDeviceDoc> = self
            .push_devices()
            .find(doc! { "userId": user.as_str() })
            .sort(doc! { "createdMs": 1 })
            .limit(i64::try_from(domain::push::MAX_PUSH_DEVICES).unwrap_or(20) * 2)
            .await?
            .try_collect()
            .await?;
        read_all(docs)
    }

    pub async fn count_push_devices(&self, user: &UserId) -> Result<u64, AppError> {
        Ok(self
            .push_devices()
            .count_documents(doc! { "userId": user.as_str() })
            .await?)
    }

    /// Stores a device (its endpoint's one document, whoever had it before).
    pub async fn put_push_device(&self, d: &PushDevice) -> Result<(), AppError> {
        self.push_devices()
            .replace_one(doc! { "_id": d.id.as_str() }, PushDeviceDoc::of(d))
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Removes the user's device `id`; false when they have none such.
    pub async fn remove_push_device(&self, user: &UserId, id: &str) -> Result<bool, AppError> {
        let r = self
            .push_devices()
            .delete_one(doc! { "_id": id, "userId": user.as_str() })
            .await?;
        Ok(r.deleted_count == 1)
    }

    pub async fn verification(&self, user: &UserId) -> Result<Option<PhoneVerification>, AppError> {
        self.verifications()
            .find_one(doc! { "_id": user.as_str() })
            .await?
            .map(PhoneVerification::try_from)
            .transpose()
    }

    pub async fn put_verification(&self, v: &PhoneVerification) -> Result<(), AppError> {
        self.verifications()
            .replace_one(
                doc! { "_id": v.user_id.as_str() },
                PhoneVerificationDoc::of(v),
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    pub async fn delete_verification(&self, user: &UserId) -> Result<(), AppError> {
        self.verifications()
            .delete_one(doc! { "_id": user.as_str() })
            .await?;
        Ok(())
    }

    /// Counts one try at the user's code, atomically, while fewer than `max` were made;
    /// the verification as it was before, or `None` when none is left to try.
    pub async fn count_code_attempt(
        &self,
        user: &UserId,
        max: i64,
    ) -> Result<Option<PhoneVerification>, AppError> {
        self.verifications()
            .find_one_and_update(
                doc! { "_id": user.as_str(), "attempts": { "$lt": max } },
                doc! { "$inc": { "attempts": 1_i64 } },
            )
            .await?
            .map(PhoneVerification::try_from)
            .transpose()
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
