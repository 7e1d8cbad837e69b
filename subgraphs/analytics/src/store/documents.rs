//! The documents of the analytics database as stored, and their mapping to the domain
//! model and back: the one place that knows how an event, an expense, a read-model
//! row, a profile or a weekly run is written down. A stored value that does not read
//! back (an unknown type, currency, timezone or date) is an internal error naming the
//! record, the field and the value, never a default.

use kit::error::unreadable;
use std::fmt::Debug;

use chrono::NaiveDate;
use chrono_tz::Tz;
use contract::events::TxKind;
use contract::ids::{EventId, ExpenseId, HouseholdId, UserId};
use kit::AppError;
use kit::events::{Event, Outbox};
use kit::money::{Currency, Money};
use kit::users::UserProfile;
use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::domain::{BucketKey, DayTotal, ExpenseState, WeeklyRun};

/// The event log entry (the event as received).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload's version (absent on entries logged before versions: 1).
    #[serde(default = "first_version")]
    pub version: i64,
    pub user_id: String,
    pub occurred_at: String,
    /// The event's data as JSON text (kept exactly as sent).
    pub data: String,
    pub received_at: bson::DateTime,
}

fn first_version() -> i64 {
    1
}

/// An expense's latest known state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub version: i64,
    pub deleted: bool,
    /// `EXPENSE` or `INCOME`.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category: String,
    pub category_key: String,
    /// `YYYY-MM-DD` in the user's calendar.
    pub date: String,
    /// The household the expense is shared with (absent: personal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_id: Option<String>,
}

/// A read-model row: `_id` is `user|date|type|currency|categoryKey`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DailyDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub date: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub currency: String,
    pub category: String,
    pub category_key: String,
    /// An exact sum: a 64-bit integer, or its decimal text beyond 64 bits.
    #[serde(with = "stored_total")]
    pub total_minor: i128,
    pub count: i64,
}

/// A 128-bit sum of minor units as BSON holds it: an `Int64` whenever it fits (every
/// real row), its decimal digits as a string beyond (more than 9,000 of the largest
/// amounts on one day); never a double.
mod stored_total {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*v) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_str(&v.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        struct Total;
        impl Visitor<'_> for Total {
            type Value = i128;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or its decimal digits")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
                Ok(i128::from(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
                Ok(i128::from(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i128, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(Total)
    }
}

/// A user's timezone and currency as last seen (for the weekly job, which runs without
/// a user's token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProfileDoc {
    /// The user id.
    #[serde(rename = "_id")]
    pub id: String,
    /// IANA name.
    pub timezone: String,
    pub currency: String,
}

/// A weekly summary run: `_id` is `user|week`, unique, so once per user and week.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub week: String,
    pub created_at: bson::DateTime,
    #[serde(flatten)]
    pub events: Outbox,
}

/// `YYYY-MM-DD`, as dates are stored (and compared as text in range queries).
pub(super) fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn stored_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn stored_kind(text: &str) -> Option<TxKind> {
    [TxKind::Expense, TxKind::Income]
        .into_iter()
        .find(|k| k.as_str() == text)
}

/// The `_id` of the read-model row of `key`.
pub(super) fn bucket_id(key: &BucketKey) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        key.user_id,
        day(key.date),
        key.kind.as_str(),
        key.currency.code(),
        key.category_key
    )
}

impl EventDoc {
    pub fn from_event(e: &Event) -> EventDoc {
        EventDoc {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            version: i64::from(e.version),
            user_id: e.user_id.to_string(),
            occurred_at: e.occurred_at.clone(),
            data: e.data.to_string(),
            received_at: bson::DateTime::now(),
        }
    }

    pub fn to_event(&self) -> Result<Event, AppError> {
        let bad = |field: &str, value: &dyn Debug| unreadable("event", &self.id, field, value);
        Ok(Event {
            id: EventId::from_trusted(&self.id),
            kind: self.kind.clone(),
            version: u32::try_from(self.version).map_err(|_| bad("version", &self.version))?,
            user_id: UserId::from_trusted(&self.user_id),
            occurred_at: self.occurred_at.clone(),
            data: serde_json::from_str(&self.data).map_err(|_| bad("data", &self.data))?,
            trace: None,
        })
    }
}

impl TryFrom<ExpenseDoc> for ExpenseState {
    type Error = AppError;

    fn try_from(d: ExpenseDoc) -> Result<ExpenseState, AppError> {
        let bad = |field: &str, value: &dyn Debug| unreadable("expense", &d.id, field, value);
        let kind = stored_kind(&d.kind).ok_or_else(|| bad("type", &d.kind))?;
        let currency = Currency::parse(&d.currency).map_err(|_| bad("currency", &d.currency))?;
        let amount = Money::from_minor(d.amount_minor, currency)
            .map_err(|_| bad("amountMinor", &d.amount_minor))?;
        let date = stored_day(&d.date).ok_or_else(|| bad("date", &d.date))?;
        Ok(ExpenseState {
            kind,
            amount,
            date,
            version: d.version,
            deleted: d.deleted,
            id: ExpenseId::from_trusted(d.id),
            user_id: UserId::from_trusted(d.user_id),
            category: d.category,
            category_key: d.category_key,
            household: d.household_id.map(HouseholdId::from_trusted),
        })
    }
}

impl From<&ExpenseState> for ExpenseDoc {
    fn from(e: &ExpenseState) -> ExpenseDoc {
        ExpenseDoc {
            id: e.id.to_string(),
            user_id: e.user_id.to_string(),
            version: e.version,
            deleted: e.deleted,
            kind: e.kind.as_str().to_string(),
            amount_minor: e.amount.amount_minor(),
            currency: e.amount.currency().code().to_string(),
            category: e.category.clone(),
            category_key: e.category_key.clone(),
            date: day(e.date),
            household_id: e.household.as_ref().map(ToString::to_string),
        }
    }
}

impl DailyDoc {
    /// The row and the currency of its total.
    pub fn into_total(self) -> Result<(Currency, DayTotal), AppError> {
        let d = self;
        let bad = |field: &str, value: &dyn Debug| unreadable("daily row", &d.id, field, value);
        let kind = stored_kind(&d.kind).ok_or_else(|| bad("type", &d.kind))?;
        let currency = Currency::parse(&d.currency).map_err(|_| bad("currency", &d.currency))?;
        let date = stored_day(&d.date).ok_or_else(|| bad("date", &d.date))?;
        Ok((
            currency,
            DayTotal {
                date,
                kind,
                category: d.category,
                total_minor: d.total_minor,
                count: d.count,
            },
        ))
    }
}

impl TryFrom<ProfileDoc> for UserProfile {
    type Error = AppError;

    fn try_from(d: ProfileDoc) -> Result<UserProfile, AppError> {
        let bad = |field: &str, value: &dyn Debug| unreadable("profile", &d.id, field, value);
        Ok(UserProfile {
            timezone: d
                .timezone
                .parse::<Tz>()
                .map_err(|_| bad("timezone", &d.timezone))?,
            currency: Currency::parse(&d.currency).map_err(|_| bad("currency", &d.currency))?,
        })
    }
}

impl ProfileDoc {
    pub fn new(user_id: &UserId, p: &UserProfile) -> ProfileDoc {
        ProfileDoc {
            id: user_id.to_string(),
            timezone: p.timezone.name().to_string(),
            currency: p.currency.code().to_string(),
        }
    }
}

impl RunDoc {
    /// The `_id` of the run of `user` in `week`.
    pub fn id(user_id: &UserId, week: &str) -> String {
        format!("{user_id}|{week}")
    }

    /// The document of a new run carrying its events.
    pub fn new(run: &WeeklyRun, events: Outbox) -> RunDoc {
        RunDoc {
            id: RunDoc::id(&run.user_id, &run.week),
            user_id: run.user_id.to_string(),
            week: run.week.clone(),
            created_at: bson::DateTime::from_chrono(run.created_at),
            events,
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    const ID: &str = "0190a000-0000-7000-8000-000000000001";
    const USER: &str = "0190a000-0000-7000-8000-0000000000aa";

    fn expense_doc() -> ExpenseDoc {
        ExpenseDoc {
            id: ID.into(),
            user_id: USER.into(),
            version: 2,
            deleted: false,
            kind: "EXPENSE".into(),
            amount_minor: 1250,
            currency: "EUR".into(),
            category: "Food".into(),
            category_key: "food".into(),
            date: "2024-03-02".into(),
            household_id: None,
        }
    }

    fn daily_doc() -> DailyDoc {
        DailyDoc {
            id: format!("{USER}|2024-03-02|INCOME|EUR|food"),
            user_id: USER.into(),
            date: "2024-03-02".into(),
            kind: "INCOME".into(),
            currency: "EUR".into(),
            category: "Food".into(),
            category_key: "food".into(),
            total_minor: 1250,
            count: 1,
        }
    }

    use kit::testing::assert_internal as internal;

    #[test]
    fn documents_read_back_and_write_the_same() {
        let doc = expense_doc();
        let state = ExpenseState::try_from(doc.clone()).unwrap();
        assert_eq!(state.kind, TxKind::Expense);
        assert_eq!(state.amount.amount_text(), "12.50");
        assert_eq!(ExpenseDoc::from(&state), doc);
        // The row an expense counts in is the row the read model stores it under.
        let row = daily_doc();
        let (currency, total) = row.clone().into_total().unwrap();
        assert_eq!((currency.code(), total.kind), ("EUR", TxKind::Income));
        let mut income = state.clone();
        income.kind = TxKind::Income;
        assert_eq!(bucket_id(&income.bucket()), row.id);

        let profile = ProfileDoc {
            id: USER.into(),
            timezone: "Asia/Tokyo".into(),
            currency: "JPY".into(),
        };
        let p = UserProfile::try_from(profile.clone()).unwrap();
        assert_eq!(ProfileDoc::new(&UserId::from_trusted(USER), &p), profile);
    }

    #[test]
    fn row_totals_are_stored_as_integers_and_beyond_64_bits_as_exact_digits() {
        for (total, stored) in [
            (1250_i128, bson::Bson::Int64(1250)),
            (
                i128::from(i64::MAX) + 1,
                bson::Bson::String("9223372036854775808".into()),
            ),
            (
                -(10_i128.pow(30)),
                bson::Bson::String(format!("-1{}", "0".repeat(30))),
            ),
        ] {
            let row = DailyDoc {
                total_minor: total,
                ..daily_doc()
            };
            let doc = bson::to_document(&row).unwrap();
            assert_eq!(doc.get("totalMinor"), Some(&stored));
            let back: DailyDoc = bson::from_document(doc).unwrap();
            assert_eq!(back, row);
        }
        // A row written as a 32-bit integer reads back too; a double never does.
        let mut doc = bson::to_document(&daily_doc()).unwrap();
        doc.insert("totalMinor", 7_i32);
        assert_eq!(
            bson::from_document::<DailyDoc>(doc.clone())
                .unwrap()
                .total_minor,
            7
        );
        doc.insert("totalMinor", 7.5_f64);
        assert!(bson::from_document::<DailyDoc>(doc).is_err());
    }

    #[test]
    fn unknown_stored_values_are_internal_errors_naming_record_field_and_value() {
        for (change, field, value) in [
            (
                (|d: &mut ExpenseDoc| d.kind = "REFUND".into()) as fn(&mut ExpenseDoc),
                "type",
                "REFUND",
            ),
            (|d| d.currency = "XYZ".into(), "currency", "XYZ"),
            (|d| d.date = "02/03/2024".into(), "date", "02/03/2024"),
        ] {
            let mut doc = expense_doc();
            change(&mut doc);
            let e = ExpenseState::try_from(doc).unwrap_err();
            internal(e, &["expense", ID, field, value]);
        }

        let mut row = daily_doc();
        row.kind = "TRANSFER".into();
        let id = row.id.clone();
        internal(
            row.into_total().unwrap_err(),
            &["daily row", &id, "type", "TRANSFER"],
        );

        let profile = ProfileDoc {
            id: USER.into(),
            timezone: "Mars/Olympus_Mons".into(),
            currency: "USD".into(),
        };
        internal(
            UserProfile::try_from(profile).unwrap_err(),
            &["profile", USER, "timezone", "Mars/Olympus_Mons"],
        );

        let event = EventDoc {
            id: ID.into(),
            kind: "expense.created".into(),
            version: -1,
            user_id: USER.into(),
            occurred_at: "2024-03-02T00:00:00Z".into(),
            data: "{}".into(),
            received_at: bson::DateTime::now(),
        };
        internal(
            event.to_event().unwrap_err(),
            &["event", ID, "version", "-1"],
        );
    }
}
