//! The stored documents and their mapping to and from the domain, in one place. Field
//! names and stored texts are those the collections have always held.
//!
//! A stored value that does not read back (an unknown currency or timezone, an income
//! out of range) is an internal error naming the user, the field and the value: never
//! a default.

use chrono::{DateTime, Utc};
use contract::ids::UserId;
use kit::error::unreadable_because;
use kit::money::Money;
use kit::{AppError, Currency};
use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::domain::{Email, FamilyId, RefreshToken, User, Username};

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    /// Lower-cased username, unique.
    pub username_key: String,
    pub email: String,
    /// Lower-cased email, unique.
    pub email_key: String,
    pub password_hash: String,
    pub currency: String,
    pub timezone: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Minor units of `currency`.
    pub monthly_income_minor: Option<i64>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
}

/// A refresh token, stored only as the SHA-256 of its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RefreshTokenDoc {
    /// SHA-256 hex of the token.
    #[serde(rename = "_id")]
    pub hash: String,
    pub user_id: String,
    /// All tokens descending from one login share a family.
    pub family_id: String,
    pub created_at: bson::DateTime,
    pub expires_at: bson::DateTime,
    /// Set when the token was exchanged for a new one.
    pub used_at: Option<bson::DateTime>,
    pub revoked_at: Option<bson::DateTime>,
}

/// One failed login, counted within the lockout window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoginFailureDoc {
    #[serde(rename = "_id")]
    pub id: String,
    /// The lockout key: the normalised email tried.
    pub key: String,
    pub at: bson::DateTime,
}

impl TryFrom<UserDoc> for User {
    type Error = AppError;

    fn try_from(d: UserDoc) -> Result<User, AppError> {
        let currency = Currency::parse(&d.currency)
            .map_err(|e| unreadable_because("user", &d.id, "currency", &d.currency, e))?;
        let timezone = d
            .timezone
            .parse()
            .map_err(|e| unreadable_because("user", &d.id, "timezone", &d.timezone, e))?;
        let monthly_income = d
            .monthly_income_minor
            .map(|m| {
                Money::from_minor(m, currency).map_err(|e| {
                    unreadable_because("user", &d.id, "monthlyIncomeMinor", m.to_string(), e)
                })
            })
            .transpose()?;
        Ok(User {
            id: UserId::from_trusted(d.id),
            username: Username::from_trusted(d.username),
            email: Email::from_trusted(d.email),
            password_hash: d.password_hash,
            currency,
            timezone,
            first_name: d.first_name,
            last_name: d.last_name,
            monthly_income,
            created_at: d.created_at,
            updated_at: d.updated_at,
        })
    }
}

impl UserDoc {
    pub fn of(u: &User) -> UserDoc {
        UserDoc {
            id: u.id.to_string(),
            username: u.username.as_str().to_string(),
            username_key: u.username.key(),
            email: u.email.as_str().to_string(),
            email_key: u.email.key(),
            password_hash: u.password_hash.clone(),
            currency: u.currency.code().to_string(),
            timezone: u.timezone.name().to_string(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            monthly_income_minor: u.monthly_income.map(|m| m.amount_minor()),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<RefreshTokenDoc> for RefreshToken {
    fn from(d: RefreshTokenDoc) -> RefreshToken {
        RefreshToken {
            hash: d.hash,
            user_id: UserId::from_trusted(d.user_id),
            family: FamilyId::from_trusted(d.family_id),
            created_at: d.created_at.to_chrono(),
            expires_at: d.expires_at.to_chrono(),
            used_at: d.used_at.map(bson::DateTime::to_chrono),
            revoked_at: d.revoked_at.map(bson::DateTime::to_chrono),
        }
    }
}

impl RefreshTokenDoc {
    pub fn of(t: &RefreshToken) -> RefreshTokenDoc {
        RefreshTokenDoc {
            hash: t.hash.clone(),
            user_id: t.user_id.to_string(),
            family_id: t.family.to_string(),
            created_at: bson::DateTime::from_chrono(t.created_at),
            expires_at: bson::DateTime::from_chrono(t.expires_at),
            used_at: t.used_at.map(bson::DateTime::from_chrono),
            revoked_at: t.revoked_at.map(bson::DateTime::from_chrono),
        }
    }
}

#[cfg(test)]
mod tests {
    use kit::ErrorCode;

    use super::*;

    fn user_doc() -> UserDoc {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        UserDoc {
            id: "u1".into(),
            username: "Ada".into(),
            username_key: "ada".into(),
            email: "Ada@Example.com".into(),
            email_key: "ada@example.com".into(),
            password_hash: "$argon2id$...".into(),
            currency: "EUR".into(),
            timezone: "Europe/Paris".into(),
            first_name: Some("Ada".into()),
            last_name: None,
            monthly_income_minor: Some(123_450),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn documents_read_back_as_the_domain_and_write_back_unchanged() {
        let d = user_doc();
        let u = User::try_from(d.clone()).unwrap();
        assert_eq!(u.timezone, chrono_tz::Europe::Paris);
        assert_eq!(u.monthly_income.unwrap().amount_text(), "1234.50");
        assert_eq!(UserDoc::of(&u), d);

        let t = RefreshTokenDoc {
            hash: "h".into(),
            user_id: "u1".into(),
            family_id: "f".into(),
            created_at: bson::DateTime::from_millis(1),
            expires_at: bson::DateTime::from_millis(2),
            used_at: None,
            revoked_at: Some(bson::DateTime::from_millis(3)),
        };
        assert_eq!(RefreshTokenDoc::of(&RefreshToken::from(t.clone())), t);
    }

    #[test]
    fn unknown_stored_values_are_internal_errors_naming_user_field_and_value() {
        /// A change to a readable document, and what the error must name.
        type Case = (fn(&mut UserDoc), [&'static str; 2]);
        let cases: [Case; 3] = [
            (|d| d.currency = "XXY".into(), ["currency", "XXY"]),
            (
                |d| d.timezone = "Mars/Olympus".into(),
                ["timezone", "Mars/Olympus"],
            ),
            (
                |d| d.monthly_income_minor = Some(i64::MAX),
                ["monthlyIncomeMinor", "9223372036854775807"],
            ),
        ];
        for (change, expected) in cases {
            let mut d = user_doc();
            change(&mut d);
            let e = User::try_from(d).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Internal, "{e:?}");
            let AppError::Internal(cause) = e else {
                unreachable!()
            };
            let m = cause.to_string();
            for x in ["u1"].iter().chain(&expected) {
                assert!(m.contains(x), "{x:?} not in {m:?}");
            }
        }
    }
}
