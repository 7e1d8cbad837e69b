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
//! recorded in `processed_events`, reads the typed `DomainEvent`, runs the handler, then
//! records the id. Handlers are themselves idempotent (a crash between applying and
//! recording re-delivers).
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

pub use consumer::{EventHandler, consumer_app, has_service_token};
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
