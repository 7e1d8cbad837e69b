//! The consumer side: `POST /internal/events`, the idempotency record, and the one
//! poison-event policy (dead letters, their metrics, listing and re-driving).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    DomainEvent, EVENTS_BATCH_PATH, EVENTS_PATH, Event, EventError, MAX_BATCH_EVENTS,
    SERVICE_TOKEN_HEADER,
};
use crate::config::Secret;
use crate::error::{AppError, is_duplicate_key};

/// The consumer's collection of parked events.
pub const DEAD_LETTERS: &str = "dead_letters";
/// Most bytes of an unreadable body kept in its dead letter.
const MAX_KEPT_BODY: usize = 64 * 1024;
/// How long one batch request may keep taking events (the one under way is finished).
const BATCH_TIME: Duration = Duration::from_secs(2);
/// How long a re-drive holds a dead letter before another may take it.
const REDRIVE_LEASE: Duration = Duration::from_secs(60);

/// Applies one event; must be idempotent (it may see an event again after a crash).
///
/// An `AppError::Internal` is a passing failure: the consumer answers 503 and the
/// producer retries. Any other error says this event can never be applied as it is,
/// and the event is parked with that reason.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        envelope: &Event,
        event: DomainEvent,
    ) -> impl Future<Output = Result<(), AppError>> + Send;
}

struct Metrics {
    registry: Registry,
    received: IntCounterVec,
    parked: IntCounterVec,
    dead_letters: IntGauge,
}

impl Metrics {
    fn new(consumer: &str) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(
            None,
            Some([("consumer".to_string(), consumer.to_string())].into()),
        )?;
        let received = IntCounterVec::new(
            Opts::new(
                "events_received_total",
                "Events received on /internal/events and re-drives, by outcome",
            ),
            &["outcome"],
        )?;
        let parked = IntCounterVec::new(
            Opts::new(
                "events_parked_total",
                "Events parked as dead letters, by reason",
            ),
            &["reason"],
        )?;
        let dead_letters = IntGauge::new(
            "events_dead_letters",
            "Events parked in the dead-letter collection now",
        )?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(parked.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        Ok(Metrics {
            registry,
            received,
            parked,
            dead_letters,
        })
    }
}

struct ConsumerState<H> {
    /// The consuming service's name, on its spans.
    name: String,
    handler: H,
    processed: Collection<Document>,
    dead: Collection<Document>,
    token: Secret,
    metrics: Metrics,
}

/// What became of one event.
enum Outcome {
    Applied,
    Duplicate,
    Parked {
        reason: &'static str,
        detail: String,
    },
    Retry(AppError),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Parked { .. } => "parked",
            Outcome::Retry(_) => "retry",
        }
    }
}

/// Creates the indexes of the idempotency record (entries expire after 30 days, far
/// longer than any retry) and of the dead letters.
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
    db.collection::<Document>(DEAD_LETTERS)
        .create_index(crate::db::index(doc! { "parkedAt": 1 }, "parked_at", false))
        .await?;
    Ok(())
}

/// `POST /internal/events`, `POST /internal/events/batch`, `GET /internal/dead-letters`,
/// `POST /internal/dead-letters/{id}/redrive` (service credential only) and `GET /metrics`.
pub fn consumer_router<H: EventHandler>(
    name: &str,
    handler: H,
    db: &Database,
    token: Secret,
) -> Result<Router, AppError> {
    let metrics = Metrics::new(name).map_err(AppError::internal)?;
    let state = Arc::new(ConsumerState {
        name: name.to_string(),
        handler,
        processed: db.collection("processed_events"),
        dead: db.collection(DEAD_LETTERS),
        token,
        metrics,
    });
    Ok(Router::new()
        .route(EVENTS_PATH, post(receive::<H>))
        .route(EVENTS_BATCH_PATH, post(receive_batch::<H>))
        .route("/internal/dead-letters", get(list_dead_letters::<H>))
        .route("/internal/dead-letters/{id}/redrive", post(redrive::<H>))
        .route("/metrics", get(render_metrics::<H>))
        .with_state(state))
}

/// Creates the consumer's indexes and returns `consumer_router`.
pub async fn consumer_app<H: EventHandler>(
    name: &str,
    handler: H,
    db: &Database,
    token: Secret,
) -> Result<Router, AppError> {
    ensure_consumer_indexes(db).await?;
    consumer_router(name, handler, db, token)
}

/// The JSON answer of an internal route: `{"code", "message"}` with `status`.
pub fn internal_answer(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// An internal route's answer to a request without the service credential.
pub fn service_credential_required() -> Response {
    internal_answer(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "service credential required",
    )
}

/// True when the request carries the service credential.
pub fn has_service_token(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(SERVICE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| crate::auth::secrets_equal(v, token.expose()))
}

impl<H: EventHandler> ConsumerState<H> {
    /// Reads, de-duplicates and applies one event; never parks or records a failure
    /// itself (the callers decide where the outcome goes).
    async fn process(&self, event: &Event) -> Outcome {
        self.process_known(event, None).await
    }

    /// `process`, with the ids already recorded among a batch's events looked up before
    /// (`None`: look this one up).
    async fn process_known(&self, event: &Event, recorded: Option<&HashSet<String>>) -> Outcome {
        let seen = match recorded {
            Some(ids) => Ok(ids.contains(event.id.as_str())),
            None => self
                .processed
                .find_one(doc! { "_id": event.id.as_str() })
                .await
                .map(|d| d.is_some()),
        };
        match seen {
            Ok(true) => return Outcome::Duplicate,
            Ok(false) => {}
            Err(e) => return Outcome::Retry(e.into()),
        }
        let domain = match DomainEvent::from_event(event) {
            Ok(d) => d,
            Err(e) => {
                return Outcome::Parked {
                    reason: e.reason(),
                    detail: e.to_string(),
                };
            }
        };
        match self.handler.handle(event, domain).await {
            Ok(()) => {}
            Err(e @ AppError::Internal(_)) => return Outcome::Retry(e),
            Err(e) => {
                return Outcome::Parked {
                    reason: "rejected",
                    detail: format!("{}: {}", e.code().as_str(), e.public_message()),
                };
            }
        }
        let record = doc! {
            "_id": event.id.as_str(),
            "type": &event.kind,
            "processedAt": bson::DateTime::now(),
        };
        match self.processed.insert_one(record).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot record processed event; a re-delivery is harmless")
            }
        }
        Outcome::Applied
    }

    /// Keeps an event that cannot be applied, with why. Parking it again (a re-delivery)
    /// replaces the reason and counts the attempt.
    async fn park(
        &self,
        id: &str,
        event_text: &str,
        head: Option<&Event>,
        reason: &str,
        detail: &str,
    ) -> Result<(), AppError> {
        let now = bson::DateTime::now();
        let mut set = doc! {
            "event": event_text,
            "reason": reason,
            "detail": detail,
            "lastParkedAt": now,
            "leaseUntil": 0_i64,
        };
        if let Some(e) = head {
            set.insert("type", &e.kind);
            set.insert("version", i64::from(e.version));
            set.insert("userId", e.user_id.as_str());
        }
        // Insert first; a dead letter already there (a re-delivery, a failed re-drive)
        // gets the new reason and one more attempt.
        let mut fresh = set.clone();
        fresh.insert("_id", id);
        fresh.insert("parkedAt", now);
        fresh.insert("attempts", 1_i64);
        match self.dead.insert_one(fresh).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                self.dead
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$set": set, "$inc": { "attempts": 1_i64 } },
                    )
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.metrics.parked.with_label_values(&[reason]).inc();
        tracing::warn!(event = %id, reason, detail, "event parked as a dead letter");
        Ok(())
    }
}

/// What the consumer made of one event it was sent (a refusal to take it at all is an
/// `Err`: the producer sends it again later).
enum Taken {
    Applied,
    Duplicate,
    /// Parked, with the answer's message.
    Parked(String),
}

impl<H: EventHandler> ConsumerState<H> {
    /// Takes one event as sent: not even an envelope, it is kept whole (up to a limit)
    /// under an id of its own; an event is de-duplicated and applied, or parked.
    async fn take(
        &self,
        body: &[u8],
        recorded: Option<&HashSet<String>>,
    ) -> Result<Taken, AppError> {
        let event: Event = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(MAX_KEPT_BODY)]);
                let id = crate::ids::new_id();
                self.metrics.received.with_label_values(&["parked"]).inc();
                self.park(
                    &id,
                    &text,
                    None,
                    "unreadable",
                    &format!("not an event: {e}"),
                )
                .await?;
                return Ok(Taken::Parked("not an event; parked".to_string()));
            }
        };
        // Handled in the trace of the work that raised it.
        let span = tracing::info_span!(
            "event",
            service = %self.name,
            event.kind = %event.kind,
            event.id = %event.id.as_str(),
            otel.kind = "consumer",
        );
        contract::telemetry::follow(&span, event.trace.as_deref());
        let outcome = self.process_known(&event, recorded).instrument(span).await;
        self.metrics
            .received
            .with_label_values(&[outcome.label()])
            .inc();
        match outcome {
            Outcome::Applied => Ok(Taken::Applied),
            Outcome::Duplicate => Ok(Taken::Duplicate),
            Outcome::Parked { reason, detail } => {
                let text = String::from_utf8_lossy(body);
                self.park(event.id.as_str(), &text, Some(&event), reason, &detail)
                    .await?;
                Ok(Taken::Parked(detail))
            }
            Outcome::Retry(e) => Err(e),
        }
    }
}

/// `POST /internal/events`: one event.
async fn receive<H: EventHandler>(
    State(state): State<Arc<ConsumerState<H>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !has_service_token(&headers, &state.token) {
        return service_credential_required();
    }
    match state.take(&body, None).await {
        Ok(Taken::Applied) => internal_answer(StatusCode::OK, "OK", "processed"),
        Ok(Taken::Duplicate) => internal_answer(StatusCode::OK, "DUPLICATE", "already processed"),
        Ok(Taken::Parked(message)) => internal_answer(StatusCode::OK, "PARKED", &message),
        Err(e) => retry(&e),
    }
}

/// `POST /internal/events/batch`: a JSON array of at most `MAX_BATCH_EVENTS` events (one
/// user's, oldest first), each taken as `POST /internal/events` takes one, in order.
/// Answers `{"results": [{"id", "outcome"}]}`, one entry per event taken (`APPLIED`,
/// `DUPLICATE`, `PARKED`); a passing failure ends the batch with a `RETRY` entry, and
/// the events after it are not looked at (the producer sends them again, in order).
/// After `BATCH_TIME` no further event is begun: the answer is shorter than the batch,
/// without a `RETRY`, and the producer sends the rest next.
async fn receive_batch<H: EventHandler>(
    State(state): State<Arc<ConsumerState<H>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !has_service_token(&headers, &state.token) {
        return service_credential_required();
    }
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) if items.len() <= MAX_BATCH_EVENTS => items,
        Ok(Value::Array(_)) => {
            return internal_answer(
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                &format!("a batch holds at most {MAX_BATCH_EVENTS} events"),
            );
        }
        _ => {
            return internal_answer(
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                "a batch is a JSON array of events",
            );
        }
    };
    // One query for the ids already recorded, instead of one per event.
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i.get("id").and_then(Value::as_str))
        .collect();
    let recorded: HashSet<String> = match state
        .processed
        .find(doc! { "_id": { "$in": &ids } })
        .projection(doc! { "_id": 1 })
        .await
    {
        Ok(cursor) => match cursor.try_collect::<Vec<Document>>().await {
            Ok(docs) => docs
                .iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
                .collect(),
            Err(e) => return retry(&e.into()),
        },
        Err(e) => return retry(&e.into()),
    };
    let deadline = Instant::now() + BATCH_TIME;
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        if !results.is_empty() && Instant::now() >= deadline {
            // The rest is left for the producer's next request: no stream holds a
            // consumer (or its producer's turn) for long.
            break;
        }
        let id = item.get("id").and_then(Value::as_str).map(str::to_string);
        let text = serde_json::to_vec(&item).unwrap_or_default();
        let outcome = match state.take(&text, Some(&recorded)).await {
            Ok(Taken::Applied) => "APPLIED",
            Ok(Taken::Duplicate) => "DUPLICATE",
            Ok(Taken::Parked(_)) => "PARKED",
            Err(e) => {
                let _ = retry(&e); // logs the cause
                results.push(json!({ "id": id, "outcome": "RETRY" }));
                break;
            }
        };
        results.push(json!({ "id": id, "outcome": outcome }));
    }
    axum::Json(json!({ "results": results })).into_response()
}

/// 503: the producer keeps the event and sends it again later.
fn retry(e: &AppError) -> Response {
    if let AppError::Internal(cause) = e {
        tracing::error!(error = %format!("{cause:#}"), "event not processed; the producer will retry");
    }
    internal_answer(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL", "try again")
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
}

fn dead_letter_json(d: &Document) -> Value {
    let text = |k: &str| d.get_str(k).ok().map(str::to_string);
    // Whole numbers as stored (a server may keep a small int64 as int32).
    let int = |k: &str| match d.get(k) {
        Some(bson::Bson::Int64(n)) => Some(*n),
        Some(bson::Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    };
    let at = |k: &str| {
        d.get_datetime(k)
            .ok()
            .and_then(|t| t.try_to_rfc3339_string().ok())
    };
    json!({
        "id": text("_id"),
        "type": text("type"),
        "version": int("version"),
        "userId": text("userId"),
        "reason": text("reason"),
        "detail": text("detail"),
        "attempts": int("attempts"),
        "parkedAt": at("parkedAt"),
        "lastParkedAt": at("lastParkedAt"),
        "event": text("event"),
    })
}

/// `GET /internal/dead-letters?limit=N` (1..=1000, default 100), oldest first.
async fn list_dead_letters<H: EventHandler>(
    State(state): State<Arc<ConsumerState<H>>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !has_service_token(&headers, &state.token) {
        return service_credential_required();
    }
    let limit = match params.map(|p| p.0.limit.unwrap_or(100)) {
        Ok(n) if (1..=1000).contains(&n) => n,
        _ => {
            return internal_answer(
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                "limit is a whole number from 1 to 1000",
            );
        }
    };
    let listed = async {
        let total = state.dead.count_documents(doc! {}).await?;
        let docs: Vec<Document> = state
            .dead
            .find(doc! {})
            .sort(doc! { "parkedAt": 1, "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok::<_, mongodb::error::Error>((total, docs))
    };
    match listed.await {
        Ok((total, docs)) => axum::Json(json!({
            "total": total,
            "deadLetters": docs.iter().map(dead_letter_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => retry(&e.into()),
    }
}

/// `POST /internal/dead-letters/{id}/redrive`: runs a parked event through the consumer
/// again. Applied (or found already applied): the dead letter is removed. Still not
/// applicable: it stays, with the new reason. One re-drive of an event at a time.
async fn redrive<H: EventHandler>(
    State(state): State<Arc<ConsumerState<H>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !has_service_token(&headers, &state.token) {
        return service_credential_required();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let lease_until = now + i64::try_from(REDRIVE_LEASE.as_millis()).unwrap_or(i64::MAX);
    let claimed = async {
        let r = state
            .dead
            .update_one(
                doc! { "_id": &id, "leaseUntil": { "$lt": now } },
                doc! { "$set": { "leaseUntil": lease_until } },
            )
            .await?;
        if r.matched_count == 0 {
            return Ok(None);
        }
        state.dead.find_one(doc! { "_id": &id }).await
    };
    let dead = match claimed.await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return match state.dead.find_one(doc! { "_id": &id }).await {
                Ok(Some(_)) => internal_answer(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    "this dead letter is being re-driven",
                ),
                Ok(None) => {
                    internal_answer(StatusCode::NOT_FOUND, "NOT_FOUND", "no such dead letter")
                }
                Err(e) => retry(&e.into()),
            };
        }
        Err(e) => return retry(&e.into()),
    };
    let text = dead.get_str("event").unwrap_or_default().to_string();
    let outcome = match serde_json::from_str::<Event>(&text) {
        Ok(event) => state.process(&event).await,
        Err(e) => Outcome::Parked {
            reason: "unreadable",
            detail: format!("not an event: {e}"),
        },
    };
    state
        .metrics
        .received
        .with_label_values(&[outcome.label()])
        .inc();
    let label = outcome.label();
    let settled = match outcome {
        Outcome::Applied | Outcome::Duplicate => state
            .dead
            .delete_one(doc! { "_id": &id })
            .await
            .map(|_| {
                axum::Json(json!({ "id": id, "outcome": label.to_uppercase() })).into_response()
            })
            .map_err(AppError::from),
        Outcome::Parked { reason, detail } => {
            let head = serde_json::from_str::<Event>(&text).ok();
            state
                .park(&id, &text, head.as_ref(), reason, &detail)
                .await
                .map(|()| {
                    axum::Json(json!({
                        "id": id, "outcome": "PARKED", "reason": reason, "detail": detail,
                    }))
                    .into_response()
                })
        }
        Outcome::Retry(e) => Err(e),
    };
    match settled {
        Ok(resp) => resp,
        Err(e) => {
            // Free the lease so the next re-drive may try at once.
            let _ = state
                .dead
                .update_one(
                    doc! { "_id": &id },
                    doc! { "$set": { "leaseUntil": 0_i64 } },
                )
                .await;
            retry(&e)
        }
    }
}

/// `GET /metrics`: the consumer's counters, and the dead letters parked now.
async fn render_metrics<H: EventHandler>(State(state): State<Arc<ConsumerState<H>>>) -> Response {
    match state.dead.count_documents(doc! {}).await {
        Ok(n) => state
            .metrics
            .dead_letters
            .set(i64::try_from(n).unwrap_or(i64::MAX)),
        Err(e) => tracing::warn!(error = %e, "cannot count dead letters"),
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&state.metrics.registry.gather(), &mut out) {
        return retry(&AppError::internal(e));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

impl From<EventError> for AppError {
    fn from(e: EventError) -> Self {
        AppError::validation("data", e.to_string())
    }
}
