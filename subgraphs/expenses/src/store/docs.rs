//! The stored documents and their mapping to the domain and back: the one place that
//! knows how an expense or a category is written in the database.
//!
//! The documents' field names and value forms are those of every expense ever
//! written. A stored value that does not read back (an unknown type, frequency,
//! payment method, currency or timezone, a malformed date) is an internal error
//! naming the record, the field and the value, never a silent default.

pub(crate) use kit::error::unreadable_because as unreadable;

use chrono::NaiveDate;
use contract::ids::{ExpenseId, HouseholdId, UserId};
use kit::AppError;
use kit::events::Outbox;
use kit::money::{Currency, Money};
use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::domain::{
    CustomCategory, Expense, Frequency, PaymentMethod, Schedule, TxType, day_key, parse_day_key,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecurrenceDoc {
    /// `DAILY`, `WEEKLY`, `MONTHLY` or `YEARLY`.
    pub frequency: String,
    /// `YYYY-MM-DD`, inclusive.
    pub end_date: Option<String>,
    /// IANA name of the user's timezone when the series was set.
    pub timezone: String,
    /// Names this schedule: `<expense id>:<version that set it>`.
    pub series: String,
    /// Index of the next occurrence to create (0 is the expense itself).
    pub next_index: i64,
    /// `YYYYMMDD` of that occurrence; null when the series has ended.
    pub next_day: Option<String>,
}

/// A stored expense or income (see [`Expense`]); deleted ones stay as tombstones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// `EXPENSE` or `INCOME`.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub category: String,
    /// The category folded to lower case (what filters match).
    pub category_key: String,
    pub description: String,
    /// `YYYY-MM-DD` in the user's calendar.
    pub date: String,
    /// `YYYYMMDD|<id>`: what lists sort by and cursors name.
    pub sort_key: String,
    /// `cash`, `card`, `bank_transfer`, `mobile` or `other`.
    pub payment_method: Option<String>,
    pub tags: Vec<String>,
    pub recurrence: Option<RecurrenceDoc>,
    /// The recurring expense this one is an occurrence of.
    pub recurring_from: Option<String>,
    /// The household the expense is shared with (absent: personal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_id: Option<String>,
    /// The client's idempotency key, `recur:<template>:<n>` for occurrences, or
    /// `id:<id>` when none was given (so the unique index never sees a null).
    pub idem_key: String,
    /// SHA-256 of the canonical input, to tell a replay from a reuse.
    pub idem_hash: Option<String>,
    /// Incremented by every write; the optimistic-concurrency check of replacements.
    pub version: i64,
    pub deleted: bool,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(flatten)]
    pub events: Outbox,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoryDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// `EXPENSE` or `INCOME`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// The name folded to lower case; unique per user and type.
    pub key: String,
    pub created_at: bson::DateTime,
}

/// An expense as read for a change, with the outbox its document carries: a
/// replacement keeps the events not yet delivered, and is refused if the dispatcher
/// recorded an acknowledgement since this read (see `Store::replace`).
#[derive(Debug, Clone)]
pub struct Stored {
    pub expense: Expense,
    pub outbox: Outbox,
}

fn date(id: &str, field: &str, text: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| unreadable("expense", id, field, text, e))
}

fn tx_type(record: &str, id: &str, text: &str) -> Result<TxType, AppError> {
    TxType::parse(text).ok_or_else(|| unreadable(record, id, "type", text, "not EXPENSE or INCOME"))
}

impl RecurrenceDoc {
    fn to_domain(&self, id: &str) -> Result<Schedule, AppError> {
        let frequency = Frequency::parse(&self.frequency).ok_or_else(|| {
            unreadable(
                "expense",
                id,
                "recurrence.frequency",
                &self.frequency,
                "not DAILY, WEEKLY, MONTHLY or YEARLY",
            )
        })?;
        let timezone = self
            .timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|e| unreadable("expense", id, "recurrence.timezone", &self.timezone, e))?;
        let end_date = self
            .end_date
            .as_deref()
            .map(|d| date(id, "recurrence.endDate", d))
            .transpose()?;
        let next_day = self
            .next_day
            .as_deref()
            .map(|d| {
                parse_day_key(d).ok_or_else(|| {
                    unreadable(
                        "expense",
                        id,
                        "recurrence.nextDay",
                        d,
                        "not a YYYYMMDD date",
                    )
                })
            })
            .transpose()?;
        Ok(Schedule {
            frequency,
            end_date,
            timezone,
            series: self.series.clone(),
            next_index: self.next_index,
            next_day,
        })
    }

    fn of(s: &Schedule) -> RecurrenceDoc {
        RecurrenceDoc {
            frequency: s.frequency.as_str().to_string(),
            end_date: s.end_date.map(|d| d.to_string()),
            timezone: s.timezone.name().to_string(),
            series: s.series.clone(),
            next_index: s.next_index,
            next_day: s.next_day.map(day_key),
        }
    }
}

impl TryFrom<ExpenseDoc> for Stored {
    type Error = AppError;

    fn try_from(d: ExpenseDoc) -> Result<Stored, AppError> {
        let id = d.id.as_str();
        let kind = tx_type("expense", id, &d.kind)?;
        let currency = Currency::parse(&d.currency)
            .map_err(|e| unreadable("expense", id, "currency", &d.currency, e))?;
        let amount = Money::from_minor(d.amount_minor, currency)
            .map_err(|e| unreadable("expense", id, "amountMinor", d.amount_minor, e))?;
        let date = date(id, "date", &d.date)?;
        let payment_method = d
            .payment_method
            .as_deref()
            .map(|p| {
                PaymentMethod::parse(p).ok_or_else(|| {
                    unreadable("expense", id, "paymentMethod", p, "not a payment method")
                })
            })
            .transpose()?;
        let recurrence = d.recurrence.as_ref().map(|r| r.to_domain(id)).transpose()?;
        let expense = Expense {
            kind,
            amount,
            date,
            payment_method,
            recurrence,
            user_id: UserId::from_trusted(d.user_id),
            category: d.category,
            description: d.description,
            tags: d.tags,
            recurring_from: d.recurring_from.map(ExpenseId::from_trusted),
            household: d.household_id.map(HouseholdId::from_trusted),
            idem_key: d.idem_key,
            idem_hash: d.idem_hash,
            version: d.version,
            deleted: d.deleted,
            created_at: d.created_at.to_chrono(),
            updated_at: d.updated_at.to_chrono(),
            id: ExpenseId::from_trusted(d.id),
        };
        Ok(Stored {
            expense,
            outbox: d.events,
        })
    }
}

impl TryFrom<ExpenseDoc> for Expense {
    type Error = AppError;

    fn try_from(d: ExpenseDoc) -> Result<Expense, AppError> {
        Stored::try_from(d).map(|s| s.expense)
    }
}

impl ExpenseDoc {
    /// The document of `e`, carrying the events of `events`.
    pub fn new(e: &Expense, events: Outbox) -> ExpenseDoc {
        ExpenseDoc {
            id: e.id.to_string(),
            user_id: e.user_id.to_string(),
            kind: e.kind.as_str().to_string(),
            amount_minor: e.amount.amount_minor(),
            currency: e.amount.currency().code().to_string(),
            category: e.category.clone(),
            category_key: e.category_key(),
            description: e.description.clone(),
            date: e.date.to_string(),
            sort_key: e.sort_key().as_str().to_string(),
            payment_method: e.payment_method.map(|p| p.as_str().to_string()),
            tags: e.tags.clone(),
            recurrence: e.recurrence.as_ref().map(RecurrenceDoc::of),
            recurring_from: e.recurring_from.as_ref().map(ToString::to_string),
            household_id: e.household.as_ref().map(ToString::to_string),
            idem_key: e.idem_key.clone(),
            idem_hash: e.idem_hash.clone(),
            version: e.version,
            deleted: e.deleted,
            created_at: bson::DateTime::from_chrono(e.created_at),
            updated_at: bson::DateTime::from_chrono(e.updated_at),
            events,
        }
    }
}

impl TryFrom<CategoryDoc> for CustomCategory {
    type Error = AppError;

    fn try_from(d: CategoryDoc) -> Result<CustomCategory, AppError> {
        Ok(CustomCategory {
            kind: tx_type("category", &d.id, &d.kind)?,
            user_id: UserId::from_trusted(d.user_id),
            name: d.name,
            created_at: d.created_at.to_chrono(),
        })
    }
}

impl CategoryDoc {
    /// The document of a new category (with a new id).
    pub fn new(c: &CustomCategory) -> CategoryDoc {
        CategoryDoc {
            id: kit::ids::new_id(),
            user_id: c.user_id.to_string(),
            kind: c.kind.as_str().to_string(),
            name: c.name.clone(),
            key: c.key(),
            created_at: bson::DateTime::from_chrono(c.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use kit::ErrorCode;

    use super::*;

    fn doc() -> ExpenseDoc {
        let id = "01890a5d-ac96-774b-bcce-b302099a8057";
        ExpenseDoc {
            id: id.into(),
            user_id: "01890a5d-ac96-774b-bcce-b302099a8000".into(),
            kind: "EXPENSE".into(),
            amount_minor: 1250,
            currency: "USD".into(),
            category: "Pets".into(),
            category_key: "pets".into(),
            description: "food for the cat".into(),
            date: "2024-01-31".into(),
            sort_key: format!("20240131|{id}"),
            payment_method: Some("bank_transfer".into()),
            tags: vec!["home".into()],
            recurrence: Some(RecurrenceDoc {
                frequency: "MONTHLY".into(),
                end_date: Some("2024-12-31".into()),
                timezone: "Europe/Berlin".into(),
                series: format!("{id}:1"),
                next_index: 2,
                next_day: Some("20240331".into()),
            }),
            recurring_from: None,
            household_id: Some("01890a5d-ac96-774b-bcce-b302099a8111".into()),
            idem_key: "key:abc".into(),
            idem_hash: Some("hash".into()),
            version: 3,
            deleted: false,
            created_at: bson::DateTime::from_millis(1_706_659_200_123),
            updated_at: bson::DateTime::from_millis(1_706_659_300_456),
            events: Outbox::default(),
        }
    }

    fn internal_message(e: AppError) -> String {
        assert_eq!(e.code(), ErrorCode::Internal);
        match e {
            AppError::Internal(cause) => cause.to_string(),
            other => panic!("not internal: {other:?}"),
        }
    }

    #[test]
    fn a_document_reads_back_and_writes_the_same_document() {
        let d = doc();
        let e = Expense::try_from(d.clone()).unwrap();
        assert_eq!(e.kind, TxType::Expense);
        assert_eq!(e.amount.amount_text(), "12.50");
        assert_eq!(e.payment_method, Some(PaymentMethod::BankTransfer));
        assert_eq!(e.category_key(), "pets");
        let s = e.recurrence.clone().unwrap();
        assert_eq!(s.frequency, Frequency::Monthly);
        assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(s.next_day, NaiveDate::from_ymd_opt(2024, 3, 31));
        assert_eq!(
            e.created_at,
            Utc.timestamp_millis_opt(1_706_659_200_123).unwrap()
        );
        assert_eq!(ExpenseDoc::new(&e, Outbox::default()), d);
    }

    #[test]
    fn unknown_stored_values_are_internal_errors_naming_record_field_and_value() {
        // (field, stored value, how the document is spoiled with it)
        type Spoil = fn(&mut ExpenseDoc);
        let cases: [(&str, &str, Spoil); 8] = [
            ("type", "REFUND", |d| d.kind = "REFUND".into()),
            ("currency", "XYZ", |d| d.currency = "XYZ".into()),
            ("date", "2024-02-30", |d| d.date = "2024-02-30".into()),
            ("paymentMethod", "cheque", |d| {
                d.payment_method = Some("cheque".into())
            }),
            ("recurrence.frequency", "HOURLY", |d| {
                d.recurrence.as_mut().unwrap().frequency = "HOURLY".into()
            }),
            ("recurrence.timezone", "Mars/Olympus", |d| {
                d.recurrence.as_mut().unwrap().timezone = "Mars/Olympus".into()
            }),
            ("recurrence.endDate", "someday", |d| {
                d.recurrence.as_mut().unwrap().end_date = Some("someday".into())
            }),
            ("recurrence.nextDay", "2024-03-31", |d| {
                d.recurrence.as_mut().unwrap().next_day = Some("2024-03-31".into())
            }),
        ];
        for (field, value, spoil) in cases {
            let mut d = doc();
            spoil(&mut d);
            let message = internal_message(Expense::try_from(d.clone()).unwrap_err());
            assert!(message.contains(&d.id), "{field}: {message}");
            assert!(
                message.contains(&format!("stored {field} \"{value}\"")),
                "{field}: {message}"
            );
        }
    }

    #[test]
    fn an_unknown_stored_category_type_is_an_internal_error() {
        let d = CategoryDoc {
            id: "c1".into(),
            user_id: "u1".into(),
            kind: "GIFT".into(),
            name: "Pets".into(),
            key: "pets".into(),
            created_at: bson::DateTime::from_millis(0),
        };
        let message = internal_message(CustomCategory::try_from(d).unwrap_err());
        assert!(message.contains("category c1"), "{message}");
        assert!(message.contains("stored type \"GIFT\""), "{message}");
    }
}
