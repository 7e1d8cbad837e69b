//! The dispatcher: delivers the outboxes of a producer's collections to its consumers,
//! at least once, in order per user (see the module above).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{Consumer, EVENTS_PATH, Event, Outbox, SERVICE_TOKEN_HEADER, parse_consumers};
use crate::config::{ConfigError, Secret, Vars, var_or};
use crate::error::{AppError, is_duplicate_key};

/// Timing of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// `EVENT_POLL_MS` (default 1000): how often pending events are looked for (a local
    /// write also wakes the dispatcher at once).
    pub poll: Duration,
    /// `EVENT_RETRY_BASE_MS` (default 500): first retry delay, doubled per failure.
    pub retry_base: Duration,
    /// `EVENT_RETRY_MAX_MS` (default 300000): longest retry delay.
    pub retry_max: Duration,
    /// `EVENT_LEASE_MS` (default 30000): how long a claim on a user's stream lasts
    /// without renewal (an instance that dies mid-delivery is replaced after this).
    pub lease: Duration,
    /// `EVENT_HTTP_TIMEOUT_MS` (default 10000).
    pub http_timeout: Duration,
}

impl DispatchSettings {
    pub const VARS: &'static [&'static str] = &[
        "EVENT_CONSUMERS",
        "EVENT_POLL_MS",
        "EVENT_RETRY_BASE_MS",
        "EVENT_RETRY_MAX_MS",
        "EVENT_LEASE_MS",
        "EVENT_HTTP_TIMEOUT_MS",
    ];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        let ms = |name: &str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(var_or(vars, name, default)?))
        };
        Ok(DispatchSettings {
            poll: ms("EVENT_POLL_MS", 1000)?,
            retry_base: ms("EVENT_RETRY_BASE_MS", 500)?,
            retry_max: ms("EVENT_RETRY_MAX_MS", 300_000)?,
            lease: ms("EVENT_LEASE_MS", 30_000)?,
            http_timeout: ms("EVENT_HTTP_TIMEOUT_MS", 10_000)?,
        })
    }

    /// Fast timings for tests.
    pub fn fast() -> Self {
        DispatchSettings {
            poll: Duration::from_millis(50),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
            lease: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// `EVENT_CONSUMERS`, or `defaults` when unset.
pub fn consumers_from_vars(
    vars: &(impl Vars + ?Sized),
    defaults: &str,
) -> Result<Vec<Consumer>, ConfigError> {
    let text = vars
        .get("EVENT_CONSUMERS")
        .unwrap_or_else(|| defaults.to_string());
    parse_consumers(&text).map_err(|m| ConfigError::new("EVENT_CONSUMERS", m))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseDoc {
    #[serde(rename = "_id")]
    id: String,
    owner: String,
    /// Epoch milliseconds (numbers: comparisons and `$set` behave the same everywhere).
    lease_until: i64,
    retry_at: i64,
    attempts: i64,
}

/// Delivers the outboxes of some collections to their consumers.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<DispatcherInner>,
}

struct DispatcherInner {
    db: Database,
    collections: Vec<String>,
    consumers: Vec<Consumer>,
    token: Secret,
    http: reqwest::Client,
    settings: DispatchSettings,
    owner: String,
    wake: Notify,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Dispatcher {
    pub fn new(
        db: Database,
        collections: &[&str],
        consumers: Vec<Consumer>,
        token: Secret,
        settings: DispatchSettings,
    ) -> Dispatcher {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .build()
            .unwrap_or_default();
        Dispatcher {
            inner: Arc::new(DispatcherInner {
                db,
                collections: collections.iter().map(|c| c.to_string()).collect(),
                consumers,
                token,
                http,
                settings,
                owner: crate::ids::new_id(),
                wake: Notify::new(),
            }),
        }
    }

    /// A dispatcher with no collections and no consumers, never started: for a schema
    /// built only to export its SDL.
    pub fn inert(db: &Database) -> Dispatcher {
        Dispatcher::new(
            db.clone(),
            &[],
            Vec::new(),
            Secret::new(String::new()),
            DispatchSettings::fast(),
        )
    }

    /// Names of the consumers, for the `outboxPending` of new events.
    pub fn consumer_names(&self) -> Vec<String> {
        self.inner
            .consumers
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Asks for a delivery round now (after a local write).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Indexes the dispatcher's queries need on a producer collection.
    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        for name in &self.inner.collections {
            self.inner
                .db
                .collection::<Document>(name)
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { "outboxPending.c": 1, "userId": 1 })
                        .options(
                            IndexOptions::builder()
                                .name("outbox_pending".to_string())
                                .build(),
                        )
                        .build(),
                )
                .await?;
        }
        Ok(())
    }

    /// Runs delivery rounds until the task is aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.round().await {
                    tracing::warn!(error = %format!("{e:#}"), "event delivery round failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(this.inner.settings.poll) => {},
                    _ = this.inner.wake.notified() => {},
                }
            }
        })
    }

    /// One delivery round over every consumer and user with pending events.
    pub async fn round(&self) -> anyhow::Result<()> {
        for consumer in &self.inner.consumers {
            let mut users: HashSet<String> = HashSet::new();
            for name in &self.inner.collections {
                let coll = self.inner.db.collection::<Document>(name);
                for u in coll
                    .distinct("userId", doc! { "outboxPending.c": &consumer.name })
                    .await?
                {
                    if let bson::Bson::String(s) = u {
                        users.insert(s);
                    }
                }
            }
            futures::stream::iter(users)
                .for_each_concurrent(8, |user| async move {
                    if let Err(e) = self.deliver_user(consumer, &user).await {
                        tracing::warn!(consumer = %consumer.name, user = %user,
                            error = %format!("{e:#}"), "event delivery failed");
                    }
                })
                .await;
        }
        Ok(())
    }

    fn leases(&self) -> Collection<LeaseDoc> {
        self.inner.db.collection("outbox_leases")
    }

    /// Claims the (consumer, user) stream: free or expired lease, retry time reached.
    async fn claim(&self, key: &str) -> Result<Option<i64>, AppError> {
        let now = now_ms();
        let until = now + millis(self.inner.settings.lease);
        let r = self
            .leases()
            .update_one(
                // An explicit `$and`: the local server evaluates a field beside `$or`
                // wrongly in some cases; this form means the same on MongoDB.
                doc! { "$and": [
                    { "_id": key },
                    { "retryAt": { "$lte": now } },
                    { "$or": [ { "leaseUntil": { "$lt": now } }, { "owner": &self.inner.owner } ] },
                ] },
                doc! {
                    "$set": { "owner": &self.inner.owner, "leaseUntil": until },
                    "$setOnInsert": { "retryAt": 0_i64, "attempts": 0_i64 },
                },
            )
            .upsert(true)
            .await;
        match r {
            Ok(r) if r.matched_count == 1 || r.upserted_id.is_some() => {
                let attempts = self
                    .leases()
                    .find_one(doc! { "_id": key })
                    .await?
                    .map(|l| l.attempts)
                    .unwrap_or(0);
                Ok(Some(attempts))
            }
            Ok(_) => Ok(None),
            // Someone holds the lease (or must wait): the upsert collided with `_id`.
            Err(e) if is_duplicate_key(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, key: &str, retry: Option<i64>) -> Result<(), AppError> {
        let set = match retry {
            None => doc! { "leaseUntil": 0_i64, "attempts": 0_i64, "retryAt": 0_i64 },
            Some(attempts) => {
                let factor = 1_u32
                    .checked_shl(attempts.clamp(0, 20) as u32)
                    .unwrap_or(u32::MAX);
                let delay = self
                    .inner
                    .settings
                    .retry_base
                    .saturating_mul(factor)
                    .min(self.inner.settings.retry_max);
                doc! { "leaseUntil": 0_i64, "attempts": attempts + 1, "retryAt": now_ms() + millis(delay) }
            }
        };
        self.leases()
            .update_one(
                doc! { "_id": key, "owner": &self.inner.owner },
                doc! { "$set": set },
            )
            .await?;
        Ok(())
    }

    async fn renew(&self, key: &str) -> Result<bool, AppError> {
        let r = self
            .leases()
            .update_one(
                doc! { "_id": key, "owner": &self.inner.owner },
                doc! { "$set": { "leaseUntil": now_ms() + millis(self.inner.settings.lease) } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    async fn deliver_user(&self, consumer: &Consumer, user: &str) -> anyhow::Result<()> {
        let key = format!("{}|{}", consumer.name, user);
        let Some(attempts) = self.claim(&key).await? else {
            return Ok(());
        };
        // Every pending event of this user for this consumer, oldest first.
        let mut pending: BTreeMap<String, (String, String, Event)> = BTreeMap::new();
        for name in &self.inner.collections {
            let coll = self.inner.db.collection::<Document>(name);
            let mut cursor = coll
                .find(doc! { "userId": user, "outboxPending.c": &consumer.name })
                .projection(doc! { "outbox": 1, "outboxPending": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let doc_id = d.get_str("_id").unwrap_or_default().to_string();
                let outbox: Outbox = bson::from_document(d)?;
                for p in outbox
                    .outbox_pending
                    .iter()
                    .filter(|p| p.c == consumer.name)
                {
                    if let Some(ev) = outbox.outbox.iter().find(|e| e.id.as_str() == p.e) {
                        pending.insert(
                            ev.id.to_string(),
                            (name.clone(), doc_id.clone(), ev.clone()),
                        );
                    } else {
                        // An entry without its event cannot be delivered; drop the entry.
                        coll.update_one(
                            doc! { "_id": &doc_id },
                            doc! { "$pull": { "outboxPending": { "c": &consumer.name, "e": &p.e } } },
                        )
                        .await?;
                    }
                }
            }
        }
        let url = format!("{}{}", consumer.url, EVENTS_PATH);
        for (event_id, (coll, doc_id, event)) in pending {
            let sent = self
                .inner
                .http
                .post(&url)
                .header(SERVICE_TOKEN_HEADER, self.inner.token.expose())
                .json(&event)
                .send()
                .await;
            let ok = match sent {
                Ok(resp) if resp.status().is_success() => true,
                Ok(resp) => {
                    tracing::warn!(consumer = %consumer.name, event = %event_id,
                        status = resp.status().as_u16(), "consumer refused event; will retry");
                    false
                }
                Err(e) => {
                    tracing::info!(consumer = %consumer.name, event = %event_id,
                        error = %e, "consumer unreachable; will retry");
                    false
                }
            };
            if !ok {
                self.release(&key, Some(attempts)).await?;
                return Ok(());
            }
            self.inner
                .db
                .collection::<Document>(&coll)
                .update_one(
                    doc! { "_id": &doc_id },
                    doc! {
                        "$pull": { "outboxPending": { "c": &consumer.name, "e": &event_id } },
                        "$inc": { "outboxRev": 1 },
                    },
                )
                .await?;
            if !self.renew(&key).await? {
                // Lost the lease (took too long): another instance carries on.
                return Ok(());
            }
        }
        self.release(&key, None).await?;
        Ok(())
    }
}
