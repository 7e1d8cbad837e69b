//! Domain events: the envelope every event travels in (outbox, HTTP, dead letters) and
//! the typed, versioned [`DomainEvent`] inside it.
//!
//! Producers build a `DomainEvent` and turn it into an [`Event`] with
//! [`DomainEvent::into_event`]; consumers call [`DomainEvent::from_event`], which tells
//! an unknown type, an unknown version and an invalid payload apart ([`EventError`]), so
//! a consumer can park what it cannot read with the reason instead of refusing it
//! forever.
//!
//! Wire form (JSON, camelCase):
//! `{"id", "type": "expense.created", "version": 1, "userId", "occurredAt", "data": {...}}`.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AlertId, BudgetId, EventId, ExpenseId, HouseholdId, UserId};

/// An event as stored in an outbox, sent over HTTP and kept in a dead-letter list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// UUIDv7: unique, and ordered by creation time.
    pub id: EventId,
    /// `expense.created`, `budget.alert`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The version of the payload's shape for this type (absent on events stored before
    /// versions were written: 1).
    #[serde(default = "first_version")]
    pub version: u32,
    /// Events are ordered per user.
    pub user_id: UserId,
    /// RFC 3339 UTC, milliseconds (text: stays exact through every store and wire).
    pub occurred_at: String,
    pub data: serde_json::Value,
    /// W3C `traceparent` of the work that raised the event (absent when traces are not
    /// exported): its consumer handles it in the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

fn first_version() -> u32 {
    1
}

impl Event {
    /// An envelope of the current version around a raw payload. Producers build
    /// [`DomainEvent`]s instead; this is for tools and tests that must send what a
    /// producer never would.
    pub fn new(kind: &str, user_id: &str, at: DateTime<Utc>, data: serde_json::Value) -> Event {
        Event {
            id: EventId::new(),
            kind: kind.to_string(),
            version: DomainEvent::VERSION,
            user_id: UserId::from_trusted(user_id),
            occurred_at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data,
            trace: crate::telemetry::traceparent(),
        }
    }
}

/// Why a consumer cannot read an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("unknown version {version} of event type {kind:?}")]
    UnknownVersion { kind: String, version: u32 },
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
}

impl EventError {
    /// A short stable name of the reason (`unknown_type`, `unknown_version`,
    /// `invalid_payload`), for metrics and lists.
    pub fn reason(&self) -> &'static str {
        match self {
            EventError::UnknownType(_) => "unknown_type",
            EventError::UnknownVersion { .. } => "unknown_version",
            EventError::InvalidPayload(_) => "invalid_payload",
        }
    }
}

/// Expense or income.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxKind {
    Expense,
    Income,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Expense => "EXPENSE",
            TxKind::Income => "INCOME",
        }
    }
}

/// The fields of an expense that consumers (budgets, analytics) work from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseSnapshot {
    #[serde(rename = "type")]
    pub kind: TxKind,
    /// Minor units of `currency`, greater than 0.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub category: String,
    /// The category folded to lower case (what budgets match on).
    pub category_key: String,
    /// The calendar date of the expense.
    pub date: NaiveDate,
    /// The household the expense is shared with (its budgets count it); absent for a
    /// personal expense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<HouseholdId>,
}

/// An expense written, changed or deleted: its state before and after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseChanged {
    pub expense_id: ExpenseId,
    /// The expense's version after the change (consumers apply each version once).
    pub version: i64,
    pub before: Option<ExpenseSnapshot>,
    /// `None` when the expense was deleted.
    pub after: Option<ExpenseSnapshot>,
}

/// How serious a budget alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertSeverity {
    /// A threshold below 100 %.
    Warning,
    /// 100 % or more.
    Critical,
}

impl AlertSeverity {
    pub fn of_threshold(threshold: i64) -> AlertSeverity {
        if threshold >= 100 {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Warning => "WARNING",
            AlertSeverity::Critical => "CRITICAL",
        }
    }
}

/// A budget crossed one of its thresholds in a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetAlertRaised {
    pub alert_id: AlertId,
    pub budget_id: BudgetId,
    /// `None`: the budget covers all spending.
    pub category: Option<String>,
    pub threshold: i64,
    pub percent_used: f64,
    pub severity: AlertSeverity,
    pub message: String,
    pub period_start: NaiveDate,
    pub spent_minor: i64,
    pub amount_minor: i64,
    pub currency: String,
    /// The household whose shared budget this is: every member is alerted. Absent for
    /// a personal budget (its owner, the envelope's user, is alerted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<HouseholdId>,
}

/// A user's spending of one week, summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeeklySummary {
    /// `2026-W48`.
    pub week: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub currency: String,
    pub spent_minor: i64,
    pub expense_count: i64,
    pub top_category: Option<String>,
    pub top_category_minor: Option<i64>,
    pub message: String,
}

/// Every event the services exchange. The serde tag is the envelope's `type`; each type
/// has one current version ([`DomainEvent::VERSION`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    #[serde(rename = "expense.created")]
    ExpenseCreated(ExpenseChanged),
    #[serde(rename = "expense.updated")]
    ExpenseUpdated(ExpenseChanged),
    #[serde(rename = "expense.deleted")]
    ExpenseDeleted(ExpenseChanged),
    #[serde(rename = "budget.alert")]
    BudgetAlert(BudgetAlertRaised),
    #[serde(rename = "weekly.summary")]
    WeeklySummary(WeeklySummary),
}

impl DomainEvent {
    /// The version every type is written with today.
    pub const VERSION: u32 = 1;

    /// Every type, as written in the envelope.
    pub const TYPES: &'static [&'static str] = &[
        "expense.created",
        "expense.updated",
        "expense.deleted",
        "budget.alert",
        "weekly.summary",
    ];

    /// The envelope's `type` of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            DomainEvent::ExpenseCreated(_) => "expense.created",
            DomainEvent::ExpenseUpdated(_) => "expense.updated",
            DomainEvent::ExpenseDeleted(_) => "expense.deleted",
            DomainEvent::BudgetAlert(_) => "budget.alert",
            DomainEvent::WeeklySummary(_) => "weekly.summary",
        }
    }

    /// The change of an `expense.*` event.
    pub fn expense_change(&self) -> Option<&ExpenseChanged> {
        match self {
            DomainEvent::ExpenseCreated(c)
            | DomainEvent::ExpenseUpdated(c)
            | DomainEvent::ExpenseDeleted(c) => Some(c),
            _ => None,
        }
    }

    /// Wraps the event in a new envelope for `user`.
    pub fn into_event(self, user: &UserId, at: DateTime<Utc>) -> Event {
        let kind = self.kind().to_string();
        // The adjacently tagged form is {"type", "data"}; the envelope keeps "data".
        let data = match serde_json::to_value(&self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("data").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        };
        Event::new(&kind, user.as_str(), at, data)
    }

    /// Reads the typed event out of an envelope.
    pub fn from_event(event: &Event) -> Result<DomainEvent, EventError> {
        if !Self::TYPES.contains(&event.kind.as_str()) {
            return Err(EventError::UnknownType(event.kind.clone()));
        }
        if event.version != Self::VERSION {
            return Err(EventError::UnknownVersion {
                kind: event.kind.clone(),
                version: event.version,
            });
        }
        let tagged = serde_json::json!({ "type": event.kind, "data": event.data });
        let parsed: DomainEvent = serde_json::from_value(tagged)
            .map_err(|e| EventError::InvalidPayload(e.to_string()))?;
        parsed.check().map_err(EventError::InvalidPayload)?;
        Ok(parsed)
    }

    /// Rules a payload's shape cannot say: positive amounts, currency codes.
    fn check(&self) -> Result<(), String> {
        fn currency(code: &str) -> Result<(), String> {
            if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(())
            } else {
                Err(format!("currency {code:?} is not an ISO 4217 code"))
            }
        }
        match self {
            DomainEvent::ExpenseCreated(c)
            | DomainEvent::ExpenseUpdated(c)
            | DomainEvent::ExpenseDeleted(c) => {
                for s in [&c.before, &c.after].into_iter().flatten() {
                    if s.amount_minor <= 0 {
                        return Err(format!("amountMinor {} is not positive", s.amount_minor));
                    }
                    currency(&s.currency)?;
                }
                if c.before.is_none() && c.after.is_none() {
                    return Err("neither before nor after".into());
                }
                Ok(())
            }
            DomainEvent::BudgetAlert(a) => currency(&a.currency),
            DomainEvent::WeeklySummary(w) => currency(&w.currency),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn snapshot() -> ExpenseSnapshot {
        ExpenseSnapshot {
            kind: TxKind::Expense,
            amount_minor: 1250,
            currency: "USD".into(),
            category: "Food".into(),
            category_key: "food".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            household: None,
        }
    }

    #[test]
    fn events_round_trip_through_the_envelope() {
        let change = ExpenseChanged {
            expense_id: ExpenseId::new(),
            version: 1,
            before: None,
            after: Some(snapshot()),
        };
        let user = UserId::new();
        let event = DomainEvent::ExpenseCreated(change.clone()).into_event(&user, Utc::now());
        assert_eq!(event.kind, "expense.created");
        assert_eq!(event.version, 1);
        assert_eq!(event.data["after"]["date"], "2026-11-30");
        assert_eq!(event.data["after"]["type"], "EXPENSE");
        let wire = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&wire).unwrap();
        assert_eq!(
            DomainEvent::from_event(&back).unwrap(),
            DomainEvent::ExpenseCreated(change)
        );
    }

    #[test]
    fn a_shared_expense_names_its_household_and_a_personal_one_leaves_it_out() {
        let household = crate::ids::HouseholdId::new();
        let shared = ExpenseSnapshot {
            household: Some(household.clone()),
            ..snapshot()
        };
        let wire = serde_json::to_value(&shared).unwrap();
        assert_eq!(wire["household"], household.as_str());
        assert_eq!(
            serde_json::from_value::<ExpenseSnapshot>(wire).unwrap(),
            shared
        );
        // A personal expense's snapshot is written as before households existed, and
        // one written then reads as personal.
        let personal = serde_json::to_value(snapshot()).unwrap();
        assert!(personal.get("household").is_none(), "{personal}");
        let old: ExpenseSnapshot = serde_json::from_value(personal).unwrap();
        assert_eq!(old.household, None);
    }

    #[test]
    fn unreadable_events_say_why() {
        let user = UserId::new();
        let good = DomainEvent::ExpenseCreated(ExpenseChanged {
            expense_id: ExpenseId::new(),
            version: 1,
            before: None,
            after: Some(snapshot()),
        })
        .into_event(&user, Utc::now());

        let mut unknown = good.clone();
        unknown.kind = "expense.teleported".into();
        assert_eq!(
            DomainEvent::from_event(&unknown).unwrap_err().reason(),
            "unknown_type"
        );

        let mut v2 = good.clone();
        v2.version = 2;
        assert_eq!(
            DomainEvent::from_event(&v2).unwrap_err().reason(),
            "unknown_version"
        );

        for data in [
            json!({"expenseId": "x"}),
            json!({"expenseId": "x", "version": 1, "before": null, "after": {"type": "EXPENSE", "amountMinor": -5, "currency": "USD", "category": "a", "categoryKey": "a", "date": "2026-01-01"}}),
            json!({"expenseId": "x", "version": 1, "before": null, "after": {"type": "EXPENSE", "amountMinor": 5, "currency": "USD", "category": "a", "categoryKey": "a", "date": "2026-02-30"}}),
            json!({"expenseId": "x", "version": 1, "before": null, "after": null}),
        ] {
            let mut bad = good.clone();
            bad.data = data;
            assert_eq!(
                DomainEvent::from_event(&bad).unwrap_err().reason(),
                "invalid_payload"
            );
        }
    }

    #[test]
    fn envelopes_stored_before_versions_read_as_version_one() {
        let text = json!({"id": EventId::new(), "type": "weekly.summary", "userId": "u",
            "occurredAt": "2026-11-30T00:00:00.000Z", "data": {}});
        let event: Event = serde_json::from_value(text).unwrap();
        assert_eq!(event.version, 1);
    }
}
