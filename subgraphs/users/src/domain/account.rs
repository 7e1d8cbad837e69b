//! A user account and the refresh tokens of its logins.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use contract::ids::UserId;
use kit::money::{Decimal, Money};
use kit::{AppError, Currency};

use super::{Email, Username};

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub email: Email,
    /// The argon2id PHC string of the password.
    pub password_hash: String,
    /// The home currency.
    pub currency: Currency,
    /// The IANA timezone in which months and budget periods are computed.
    pub timezone: Tz,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// In `currency`.
    pub monthly_income: Option<Money>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new account, every field checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub username: Username,
    pub email: Email,
    /// Of an accepted length; only its hash is kept.
    pub password: String,
    pub currency: Currency,
    pub timezone: Tz,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A profile change: `None` leaves a field alone; `Some(None)` clears it. Names,
/// currency and timezone are checked; the income is checked against the currency the
/// profile ends up with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileChange {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub currency: Option<Currency>,
    pub timezone: Option<Tz>,
    pub monthly_income: Option<Option<Decimal>>,
}

impl User {
    /// Applies `change` made at `now`; nothing changes when it is refused.
    pub fn apply(&mut self, change: ProfileChange, now: DateTime<Utc>) -> Result<(), AppError> {
        let currency = change.currency.unwrap_or(self.currency);
        // The income is a decimal in the user's currency: keep its value across a
        // currency change when the new currency can hold it exactly.
        let income = match change.monthly_income {
            Some(v) => v,
            None => self.monthly_income.map(|m| m.to_decimal()),
        };
        let monthly_income = income
            .map(|d| {
                let m = Money::from_decimal(d, currency)
                    .map_err(|e| AppError::money("monthlyIncome", e))?;
                if m.amount_minor() < 0 {
                    return Err(AppError::validation(
                        "monthlyIncome",
                        "must not be negative",
                    ));
                }
                Ok(m)
            })
            .transpose()?;
        if let Some(name) = change.first_name {
            self.first_name = name;
        }
        if let Some(name) = change.last_name {
            self.last_name = name;
        }
        if let Some(tz) = change.timezone {
            self.timezone = tz;
        }
        self.currency = currency;
        self.monthly_income = monthly_income;
        self.updated_at = now;
        Ok(())
    }
}

/// All refresh tokens descending from one login share a family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FamilyId(String);

impl FamilyId {
    /// The family of a new login.
    pub fn new() -> FamilyId {
        FamilyId(contract::ids::new_id())
    }

    /// A family as stored.
    pub fn from_trusted(text: impl Into<String>) -> FamilyId {
        FamilyId(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for FamilyId {
    fn default() -> Self {
        FamilyId::new()
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A refresh token, known only by the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 hex of the token.
    pub hash: String,
    pub user_id: UserId,
    pub family: FamilyId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Set when the token was exchanged for a new one.
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(income: Option<&str>) -> User {
        let now = Utc::now();
        User {
            id: UserId::new(),
            username: Username::from_trusted("ada"),
            email: Email::from_trusted("ada@example.com"),
            password_hash: String::new(),
            currency: Currency::USD,
            timezone: Tz::UTC,
            first_name: None,
            last_name: None,
            monthly_income: income.map(|t| Money::parse(t, Currency::USD).unwrap()),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_income_keeps_its_value_across_a_currency_change_when_it_can() {
        let eur = Currency::parse("EUR").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let mut u = user(Some("1234.50"));
        u.apply(
            ProfileChange {
                currency: Some(eur),
                ..Default::default()
            },
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            u.monthly_income,
            Some(Money::parse("1234.50", eur).unwrap())
        );

        // Yen have no cents: refused, and nothing changed.
        let before = u.clone();
        let e = u
            .apply(
                ProfileChange {
                    currency: Some(jpy),
                    first_name: Some(Some("Ada".into())),
                    ..Default::default()
                },
                Utc::now(),
            )
            .unwrap_err();
        assert!(matches!(e, AppError::Validation { ref field, .. } if field == "monthlyIncome"));
        assert_eq!(u, before);
    }
}
