//! The accounts domain: users, refresh tokens, and the rules of what a valid email,
//! username, password, timezone and name are. No GraphQL or BSON here.

mod account;
pub mod household;
pub mod password;
pub mod totp;

use kit::AppError;

pub use account::{FamilyId, ProfileChange, RefreshToken, Registration, User};

/// Longest password accepted; longer inputs are refused before hashing.
pub const PASSWORD_MAX: usize = 128;
pub const PASSWORD_MIN: usize = 8;

/// A trimmed email address; `key()` is its case-insensitive identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Email, AppError> {
        let bad = || AppError::validation("email", "must be a valid email address");
        let s = input.trim();
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(bad());
        }
        Ok(Email(s.to_string()))
    }

    /// An address as stored: checked when it was registered.
    pub fn from_trusted(text: impl Into<String>) -> Email {
        Email(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identity used for uniqueness and lookup: lower-cased.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// 3..=32 characters of `[A-Za-z0-9_.-]`; unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Username, AppError> {
        let s = input.trim();
        let ok_len = (3..=32).contains(&s.chars().count());
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok_len || !ok_chars {
            return Err(AppError::validation(
                "username",
                "must be 3 to 32 characters of letters, digits, '_', '.' or '-'",
            ));
        }
        Ok(Username(s.to_string()))
    }

    /// A username as stored: checked when it was registered.
    pub fn from_trusted(text: impl Into<String>) -> Username {
        Username(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// Checks a new password's length (in characters).
pub fn check_password(password: &str) -> Result<(), AppError> {
    let n = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
        return Err(AppError::validation(
            "password",
            format!("must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

/// A valid IANA timezone name such as `Europe/Paris` or `UTC`.
pub fn parse_timezone(input: &str) -> Result<chrono_tz::Tz, AppError> {
    input.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        AppError::validation(
            "timezone",
            format!("unknown IANA timezone {:?}", input.trim()),
        )
    })
}

pub fn parse_currency(input: &str) -> Result<kit::Currency, AppError> {
    kit::Currency::parse(input).map_err(|e| AppError::money("currency", e))
}

/// An optional personal name: trimmed, at most 100 characters; blank means none.
pub fn parse_name(field: &str, input: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(s) = input.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if s.chars().count() > 100 || s.chars().any(char::is_control) {
        return Err(AppError::validation(
            field,
            "must be at most 100 characters, without control characters",
        ));
    }
    Ok(Some(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: AppError) -> String {
        match e {
            AppError::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn emails_are_trimmed_and_keyed_case_insensitively() {
        let e = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(e.key(), "ada.lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@x.com",
            "a@",
            "a@b",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            "a@@b.com",
        ] {
            assert_eq!(field_of(Email::parse(bad).unwrap_err()), "email", "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert!(Username::parse("ada_l.ove-1").is_ok());
        assert_eq!(Username::parse("Ada").unwrap().key(), "ada");
        for bad in [
            "ab",
            "a".repeat(33).as_str(),
            "has space",
            "émile",
            "semi;colon",
        ] {
            assert_eq!(
                field_of(Username::parse(bad).unwrap_err()),
                "username",
                "{bad}"
            );
        }
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"é".repeat(128)).is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn timezones_are_iana_names() {
        assert!(parse_timezone("Europe/Paris").is_ok());
        assert!(parse_timezone("UTC").is_ok());
        assert_eq!(
            field_of(parse_timezone("Mars/Olympus").unwrap_err()),
            "timezone"
        );
    }
}
