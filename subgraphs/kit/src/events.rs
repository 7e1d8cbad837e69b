//! Events without a broker: an outbox embedded in the changed document, a dispatcher
//! that delivers at least once over HTTP, and the consumer side (service credential,
//! idempotency record).
//!
//! # Producer
//! The document a change writes carries the event in the same single-document write:
//! two top-level arrays, `outbox` (the events) and `outboxPending` (one `{c, e}` entry per
//! consumer `c` that has not yet acknowledged event `e`). A new document is inserted
//! with them; an existing one is replaced as a whole under an optimistic version check
//! (`replace_one({_id, version: v, outboxRev: r}, …)`), so the change and its event are committed
//! together or not at all, with no transaction. Delivered events are pruned from
//! `outbox` by the producer's next write of that document.
//!
//! # Dispatcher
//! Each producer instance runs one. Per consumer it finds the users with pending
//! entries (`distinct userId where outboxPending.c = consumer`), then for each user takes
//! a lease (`outbox_leases`, `_id = "<consumer>|<user>"`, claimed with a conditional
//! upsert: a held lease makes the upsert hit the unique `_id` and fail) so that only
//! one instance delivers a user's events at a time. Holding the lease it loads all of
//! that user's pending events, sorts them by event id (UUIDv7, i.e. creation order) and
//! POSTs them one by one to `<url>/internal/events` with the `x-service-token` header.
//! A 2xx answer removes the `{c, e}` entry (`$pull`); anything else stops that user's
//! delivery (so later events never overtake an earlier one) and schedules a retry with
//! exponential backoff stored in the lease document. Nothing is ever dropped: an
//! unreachable consumer is retried until it answers, and catches up in order.
//!
//! # Consumer
//! `consumer_router` accepts only the service credential, skips event ids it already
//! recorded in `processed_events`, runs the handler, then records the id. Handlers are
//! themselves idempotent (a crash between applying and recording re-delivers).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::config::{ConfigError, Secret, Vars, var_or};
use crate::error::{AppError, is_duplicate_key};

/// Header carrying the service credential on internal endpoints.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";
/// Path of every consumer's event endpoint.
pub const EVENTS_PATH: &str = "/internal/events";

/// An event as stored in an outbox and sent over HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// UUIDv7: unique, and ordered by creation time.
    pub id: String,
    /// `expense.created`, `budget.alert`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Events are ordered per user.
    pub user_id: String,
    /// RFC 3339 UTC (text: stays exact through every store and wire).
    pub occurred_at: String,
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(
        kind: &str,
        user_id: &str,
        at: chrono::DateTime<chrono::Utc>,
        data: serde_json::Value,
    ) -> Event {
        Event {
            id: crate::ids::new_id(),
            kind: kind.to_string(),
            user_id: user_id.to_string(),
            occurred_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data,
        }
    }
}

/// One consumer that has not yet acknowledged one event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// Consumer name.
    pub c: String,
    /// Event id.
    pub e: String,
}

/// The outbox fields of a producer document (flattened into it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Outbox {
    #[serde(default)]
    pub outbox: Vec<Event>,
    #[serde(default)]
    pub outbox_pending: Vec<Pending>,
    /// Incremented by the dispatcher with every acknowledgement it records. A producer
    /// replacing the document includes the value it read in its filter, so a
    /// replacement built before an acknowledgement cannot bring the delivered entry back
    /// (which would re-deliver an old event after a newer one).
    #[serde(default)]
    pub outbox_rev: i64,
}

impl Outbox {
    /// An outbox holding one event for `consumers`.
    pub fn with(event: Event, consumers: &[String]) -> Outbox {
        let mut o = Outbox::default();
        o.push(event, consumers);
        o
    }

    /// Adds an event for every consumer, and drops events everyone acknowledged.
    pub fn push(&mut self, event: Event, consumers: &[String]) {
        self.prune();
        for c in consumers {
            self.outbox_pending.push(Pending {
                c: c.clone(),
                e: event.id.clone(),
            });
        }
        self.outbox.push(event);
    }

    /// Removes events that no consumer is waiting for.
    pub fn prune(&mut self) {
        let waiting: HashSet<&str> = self.outbox_pending.iter().map(|p| p.e.as_str()).collect();
        self.outbox.retain(|e| waiting.contains(e.id.as_str()));
    }
}

/// A consumer of a producer's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    /// Base URL; events go to `<url>/internal/events`.
    pub url: String,
}

/// Parses `budgets=http://127.0.0.1:3003,analytics=http://127.0.0.1:3004`.
pub fn parse_consumers(text: &str) -> Result<Vec<Consumer>, String> {
    let mut out: Vec<Consumer> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("expected name=url, got {part:?}"))?;
        let (name, url) = (name.trim(), url.trim().trim_end_matches('/'));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("bad consumer name {name:?}"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "consumer {name}: url must start with http:// or https://"
            ));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(format!("consumer {name} listed twice"));
        }
        out.push(Consumer {
            name: name.to_string(),
            url: url.to_string(),
        });
    }
    Ok(out)
}

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
                    if let Some(ev) = outbox.outbox.iter().find(|e| e.id == p.e) {
                        pending.insert(ev.id.clone(), (name.clone(), doc_id.clone(), ev.clone()));
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

/// Handles one event; must be idempotent (it may see an event again after a crash).
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: Event) -> BoxFuture<'_, Result<(), AppError>>;
}

struct ConsumerState<H> {
    handler: H,
    processed: Collection<Document>,
    token: Secret,
}

/// Creates the idempotency record's indexes: entries expire after 30 days, far longer
/// than any retry.
pub async fn ensure_consumer_indexes(db: &Database) -> Result<(), AppError> {
    db.collection::<Document>("processed_events")
        .create_index(
            IndexModel::builder()
                .keys(doc! { "processedAt": 1 })
                .options(
                    IndexOptions::builder()
                        .name("processed_ttl".to_string())
                        .expire_after(Duration::from_secs(30 * 24 * 3600))
                        .build(),
                )
                .build(),
        )
        .await?;
    Ok(())
}

/// `POST /internal/events`: service credential only; idempotent by event id.
pub fn consumer_router<H: EventHandler>(handler: H, db: &Database, token: Secret) -> Router {
    let state = Arc::new(ConsumerState {
        handler,
        processed: db.collection("processed_events"),
        token,
    });
    Router::new()
        .route(EVENTS_PATH, post(receive::<H>))
        .with_state(state)
}

/// Creates the idempotency record's indexes and returns `consumer_router`.
pub async fn consumer_app<H: EventHandler>(
    handler: H,
    db: &Database,
    token: Secret,
) -> Result<Router, AppError> {
    ensure_consumer_indexes(db).await?;
    Ok(consumer_router(handler, db, token))
}

fn plain(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// True when the request carries the service credential.
pub fn has_service_token(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(SERVICE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| crate::auth::secrets_equal(v, token.expose()))
}

async fn receive<H: EventHandler>(
    State(state): State<Arc<ConsumerState<H>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !has_service_token(&headers, &state.token) {
        return plain(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "service credential required",
        );
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("not an event: {e}"),
            );
        }
    };
    let id = event.id.clone();
    match state.processed.find_one(doc! { "_id": &id }).await {
        Ok(Some(_)) => return plain(StatusCode::OK, "DUPLICATE", "already processed"),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "processed_events lookup failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL", "try again");
        }
    }
    let kind = event.kind.clone();
    if let Err(e) = state.handler.handle(event).await {
        let message = e.public_message();
        if let AppError::Internal(cause) = &e {
            tracing::error!(event = %id, kind = %kind, error = %format!("{cause:#}"), "event handler failed");
        } else {
            tracing::warn!(event = %id, kind = %kind, error = %message, "event rejected");
        }
        return plain(StatusCode::SERVICE_UNAVAILABLE, e.code().as_str(), &message);
    }
    let record = doc! { "_id": &id, "type": &kind, "processedAt": bson::DateTime::now() };
    match state.processed.insert_one(record).await {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot record processed event; a re-delivery is harmless")
        }
    }
    plain(StatusCode::OK, "OK", "processed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_parse_from_text() {
        let c = parse_consumers("budgets=http://127.0.0.1:3003/, analytics=http://a:1").unwrap();
        assert_eq!(c[0].name, "budgets");
        assert_eq!(c[0].url, "http://127.0.0.1:3003");
        assert_eq!(c[1].url, "http://a:1");
        assert!(parse_consumers("budgets").is_err());
        assert!(parse_consumers("b=ftp://x").is_err());
        assert!(parse_consumers("b=http://x,b=http://y").is_err());
        assert!(parse_consumers("").unwrap().is_empty());
    }

    #[test]
    fn the_outbox_keeps_only_events_someone_waits_for() {
        let at = chrono::Utc::now();
        let consumers = vec!["a".to_string(), "b".to_string()];
        let e1 = Event::new("x", "u", at, json!({}));
        let mut o = Outbox::with(e1.clone(), &consumers);
        assert_eq!(o.outbox_pending.len(), 2);
        o.outbox_pending.clear();
        o.push(Event::new("y", "u", at, json!({})), &consumers);
        assert_eq!(o.outbox.len(), 1);
        assert_ne!(o.outbox[0].id, e1.id);
    }
}
