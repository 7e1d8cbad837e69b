//! Typed ids. Every id the product issues is a UUIDv7 in canonical text (time-ordered,
//! also the document `_id`); a type per kind of thing keeps a budget id from being
//! passed where an expense id is meant. On the wire and in documents they are plain
//! strings (`#[serde(transparent)]`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A new time-ordered id (UUIDv7, canonical text).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True when `id` is shaped like an id we issue (any UUID in canonical text).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::parse_str(id).is_ok()
}

/// An id text that is not a canonical UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

macro_rules! typed_ids {
    ($( $(#[$doc:meta])* $name:ident => $kind:literal; )*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What the id names, for messages (`"expense"`).
            pub const KIND: &'static str = $kind;

            /// A new id.
            pub fn new() -> Self {
                $name(new_id())
            }

            /// An id a client sent: it must be a canonical UUID.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                if is_valid_id(text) {
                    Ok($name(text.to_string()))
                } else {
                    Err(IdError { kind: $kind })
                }
            }

            /// An id read from our own storage or a verified token, taken as it is.
            pub fn from_trusted(text: impl Into<String>) -> Self {
                $name(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    )*};
}

typed_ids! {
    /// A user (the `sub` of their access tokens).
    UserId => "user";
    /// An expense or income entry.
    ExpenseId => "expense";
    /// A budget.
    BudgetId => "budget";
    /// A budget alert.
    AlertId => "alert";
    /// A notification.
    NotificationId => "notification";
    /// A delivery of a notification on one channel.
    DeliveryId => "delivery";
    /// An event (ordered per user by creation time).
    EventId => "event";
    /// A recurring schedule.
    RecurrenceId => "recurrence";
    /// A household: people sharing budgets.
    HouseholdId => "household";
    /// An invitation to a household.
    InvitationId => "invitation";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_uuid_v7_and_time_ordered() {
        let a = ExpenseId::new();
        let b = ExpenseId::new();
        assert!(is_valid_id(a.as_str()));
        assert_eq!(
            uuid::Uuid::parse_str(a.as_str()).unwrap().get_version_num(),
            7
        );
        assert!(a < b);
    }

    #[test]
    fn parsing_refuses_what_we_never_issue() {
        assert_eq!(
            BudgetId::parse("not-an-id"),
            Err(IdError { kind: "budget" })
        );
        let id = BudgetId::new();
        assert_eq!(BudgetId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        let back: BudgetId = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(back, id);
    }
}
