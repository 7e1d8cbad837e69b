//! Events without a broker: an outbox embedded in the changed document, a dispatcher
//! that delivers at least once over HTTP, and the consumer side (service credential,
//! idempotency record).
//!
//! # Producer
//! The document a change writes carries the event in the same single-document write:
//! top-level `outbox` (the events), `outboxPending` (one `{c, e}` entry per consumer `c`
//! that has not yet acknowledged event `e`), `outboxNext` (per consumer, the oldest event
//! of the document it still waits for; derived from `outboxPending`) and `outboxRev`. A
//! new document is inserted with them; an existing one is replaced as a whole under an
//! optimistic version check (`replace_one({_id, version: v, outboxRev: r}, …)`), so the
//! change and its event are committed together or not at all, with no transaction.
//! Adding an event moves `outboxRev` on. Delivered events are pruned from `outbox` by
//! the producer's next write of that document.
//!
//! # Dispatcher: fair, batched, in order per user
//! Each producer instance runs one. Its unit of work is a *stream*, one (consumer, user)
//! pair, and one *batch*: at most `EVENT_BATCH_MAX` (100) of that user's oldest pending
//! events.
//!
//! - Streams are found with `distinct userId where outboxNext.<consumer> exists`, served
//!   by a partial index per consumer (`{userId, outboxNext.<consumer>}` over documents
//!   with something pending only, so delivered history costs nothing).
//! - Up to `EVENT_STREAMS` (8) streams are delivered at once; each delivers one batch and
//!   then, if it has more, goes to the back of the line (a first-come, first-served
//!   semaphore). So a user with a large backlog holds at most one slot for one batch at a
//!   time, and another user's event waits for at most one batch of each stream ahead of
//!   it, never for a backlog to drain. There is no pass that must finish before new
//!   streams are looked at: a local write, a write of another instance (seen on a change
//!   stream where the server has them), and the poll interval (`EVENT_POLL_MS`, the
//!   only sleep, when nothing else happens) all look again. A stream whose batch left
//!   more goes back in line without a query. A backlog drains at the pace of the databases and the consumer.
//! - One batch: the stream's lease is claimed (`outbox_leases`, `_id =
//!   "<consumer>|<user>"`, a conditional upsert: a held lease makes the upsert hit the
//!   unique `_id` and fail), so only one instance delivers a user's events at a time.
//!   Per producer collection at most `EVENT_BATCH_MAX` documents are read in
//!   `outboxNext` order; a document not read has no pending event older than the last
//!   read one's `outboxNext`, so only events up to that bound are taken, sorted by event
//!   id (UUIDv7, i.e. creation order). They go in one request to
//!   `<url>/internal/events/batch` with the `x-service-token` header (to a consumer
//!   without that endpoint, 404, one per request to `<url>/internal/events`).
//! - The consumer answers per event; the leading events it took (applied, already
//!   applied, parked) are acknowledged, document by document: the document's
//!   `outboxPending` and `outboxNext` are rewritten and `outboxRev` incremented under a
//!   check of the revision read, and recomputed from a fresh read if a producer wrote
//!   in between. A refusal (`RETRY`, a non-2xx answer, no answer) stops that stream so
//!   later events never overtake an earlier one, and schedules a retry with exponential
//!   backoff stored in the lease. Nothing is ever dropped: an unreachable consumer is
//!   retried until it answers, and catches up in order.
//! - Documents written before `outboxNext` existed get it when the dispatcher starts.
//!
//! # Consumer
//! `consumer_router` accepts only the service credential. `POST /internal/events` takes
//! one event; `POST /internal/events/batch` takes an array of at most
//! [`MAX_BATCH_EVENTS`] (500) and answers `{"results": [{"id", "outcome"}]}` with one
//! entry per event taken, in order: `APPLIED`, `DUPLICATE`, `PARKED`, or `RETRY` for a
//! passing failure, which ends the batch (later events are not looked at). After two
//! seconds a batch request begins no further event and answers what it took; the
//! producer sends the rest next. Either way, each event: the consumer skips event ids
//! it already recorded in `processed_events` (one lookup per batch), reads the typed
//! `DomainEvent`, runs the handler, then records the id. Handlers are themselves
//! idempotent (a crash between applying and recording re-delivers).
//!
//! # Poison events: one policy for every consumer
//! An event the consumer cannot read (unknown type or version, invalid payload) or
//! cannot apply (the handler refuses it with any error but `INTERNAL`) is parked in the
//! consumer's `dead_letters` collection with the reason, counted on `/metrics`, and
//! acknowledged, so it never blocks that user's later events and is never retried
//! forever or lost. `GET /internal/dead-letters` lists parked events and
//! `POST /internal/dead-letters/{id}/redrive` runs one through the same steps again
//! (service credential only); a re-driven event is applied at most once. Only an
//! `INTERNAL` failure (the database is down, say) answers 503, and the producer retries.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

pub use contract::events::{DomainEvent, Event, EventError};

mod consumer;
mod dispatch;

pub use consumer::{
    EventHandler, consumer_app, has_service_token, internal_answer, service_credential_required,
};
pub use dispatch::{DispatchSettings, Dispatcher, consumers_from_vars};

/// Header carrying the service credential on internal endpoints.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";
/// Path of every consumer's event endpoint (one event per request).
pub const EVENTS_PATH: &str = "/internal/events";
/// Path of every consumer's batch endpoint: a JSON array of one user's events, applied
/// in order, answered per event.
pub const EVENTS_BATCH_PATH: &str = "/internal/events/batch";
/// Most events a consumer takes in one batch request.
pub const MAX_BATCH_EVENTS: usize = 500;

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
    /// Per consumer, the oldest event of this document it has not acknowledged (absent
    /// when it has none): what the dispatcher's per-user queries sort and bound on.
    /// Always derived from `outbox_pending` (see [`next_pending`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outbox_next: BTreeMap<String, String>,
}

/// The oldest event id in `pending` waiting for `consumer` (event ids are UUIDv7 text, so
/// the smallest is the oldest).
pub fn next_pending<'a>(pending: &'a [Pending], consumer: &str) -> Option<&'a str> {
    pending
        .iter()
        .filter(|p| p.c == consumer)
        .map(|p| p.e.as_str())
        .min()
}

impl Outbox {
    /// An outbox holding one event for `consumers`.
    pub fn with(event: Event, consumers: &[String]) -> Outbox {
        let mut o = Outbox::default();
        o.push(event, consumers);
        o
    }

    /// Adds an event for every consumer, and drops events everyone acknowledged. The
    /// revision moves on, so an acknowledgement computed from the document as it was
    /// before this write is refused and recomputed (see the dispatcher).
    pub fn push(&mut self, event: Event, consumers: &[String]) {
        self.prune();
        for c in consumers {
            self.outbox_pending.push(Pending {
                c: c.clone(),
                e: event.id.to_string(),
            });
        }
        self.outbox.push(event);
        self.outbox_rev += 1;
        self.refresh_next();
    }

    /// Derives `outbox_next` from `outbox_pending`.
    pub fn refresh_next(&mut self) {
        let consumers: HashSet<&str> = self.outbox_pending.iter().map(|p| p.c.as_str()).collect();
        self.outbox_next = consumers
            .into_iter()
            .filter_map(|c| {
                Some((
                    c.to_string(),
                    next_pending(&self.outbox_pending, c)?.to_string(),
                ))
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
