//! Error codes shared by every subgraph: one enum, each variant a stable code that
//! appears as GraphQL `extensions.code` (and as an HTTP status in the REST shim).

use async_graphql::ErrorExtensions;

use crate::money::MoneyError;

/// The stable codes of the public contract: one table, in the shared contract crate.
pub use contract::ErrorCode;

/// Errors a resolver returns. Internal causes are logged and never shown to clients.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error
/// without a code, so the only conversion is ours, which sets `extensions.code`.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    Validation {
        field: String,
        message: String,
    },
    Conflict {
        message: String,
        field: Option<String>,
    },
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// A total of amounts that cannot be represented exactly (`AMOUNT_OUT_OF_RANGE`).
    OutOfRange(String),
    /// A refusal with a code of its own (`PHONE_NOT_VERIFIED`, `LIMIT_REACHED`, ...),
    /// optionally naming the input field at fault.
    Refused {
        code: ErrorCode,
        message: String,
        field: Option<String>,
    },
    /// The password was right and the account has two-step sign-in: the code goes with
    /// `challenge` to `loginWithCode` within `expires_in_secs`.
    SecondStepRequired {
        challenge: String,
        expires_in_secs: u64,
    },
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e)
    }
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn unauthenticated() -> Self {
        AppError::Unauthenticated("authentication required".into())
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound(what.into())
    }

    pub fn conflict(message: impl Into<String>, field: Option<&str>) -> Self {
        AppError::Conflict {
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    /// A refusal coded `code` (one of the contract's codes), on `field` when one is at
    /// fault.
    pub fn refused(code: ErrorCode, message: impl Into<String>, field: Option<&str>) -> Self {
        AppError::Refused {
            code,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }

    /// A money error on a named input field.
    pub fn money(field: &str, e: MoneyError) -> Self {
        AppError::validation(field, e.to_string())
    }

    /// A money error of a computed total (no input field is at fault): a total beyond
    /// what can be represented is `AMOUNT_OUT_OF_RANGE`, anything else is ours.
    pub fn total(e: MoneyError) -> Self {
        match e {
            MoneyError::OutOfRange | MoneyError::TotalOutOfRange => {
                AppError::OutOfRange(e.to_string())
            }
            other => AppError::internal(other),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::Validation { .. } => ErrorCode::ValidationFailed,
            AppError::Conflict { .. } => ErrorCode::Conflict,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::OutOfRange(_) => ErrorCode::AmountOutOfRange,
            AppError::Refused { code, .. } => *code,
            AppError::SecondStepRequired { .. } => ErrorCode::TwoFactorRequired,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The message a client may see.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Unauthenticated(m) | AppError::Forbidden(m) | AppError::OutOfRange(m) => {
                m.clone()
            }
            AppError::NotFound(what) => format!("{what} not found"),
            AppError::Validation { message, .. }
            | AppError::Conflict { message, .. }
            | AppError::RateLimited { message, .. }
            | AppError::Refused { message, .. } => message.clone(),
            AppError::SecondStepRequired { .. } => {
                "enter the code from your authenticator app (or a recovery code)".to_string()
            }
            AppError::Internal(_) => "Internal server error".to_string(),
        }
    }
}

impl From<AppError> for anyhow::Error {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Internal(cause) => cause,
            other => anyhow::anyhow!("{}: {}", other.code().as_str(), other.public_message()),
        }
    }
}

impl From<mongodb::error::Error> for AppError {
    fn from(e: mongodb::error::Error) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> Self {
        if let AppError::Internal(cause) = &e {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        let code = e.code().as_str();
        let message = e.public_message();
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", code);
            match &e {
                AppError::Validation { field, .. } => ext.set("field", field.as_str()),
                AppError::Conflict {
                    field: Some(field), ..
                }
                | AppError::Refused {
                    field: Some(field), ..
                } => ext.set("field", field.as_str()),
                AppError::RateLimited {
                    retry_after_secs, ..
                } => ext.set("retryAfter", *retry_after_secs),
                AppError::SecondStepRequired {
                    challenge,
                    expires_in_secs,
                } => {
                    ext.set("challenge", challenge.as_str());
                    ext.set("expiresIn", *expires_in_secs);
                }
                _ => {}
            }
        })
    }
}

/// A stored value that does not read back (an unknown kind, currency, date...): an
/// internal error — logged, shown to clients as `INTERNAL` — naming the record, the
/// field and the value, never a silent default.
pub fn unreadable(record: &str, id: &str, field: &str, value: impl std::fmt::Debug) -> AppError {
    AppError::internal(anyhow::anyhow!(
        "{record} {id}: unreadable stored {field} {value:?}"
    ))
}

/// [`unreadable`], with why the value does not read.
pub fn unreadable_because(
    record: &str,
    id: &str,
    field: &str,
    value: impl std::fmt::Debug,
    why: impl std::fmt::Display,
) -> AppError {
    AppError::internal(anyhow::anyhow!(
        "{record} {id}: unreadable stored {field} {value:?}: {why}"
    ))
}

/// True when a MongoDB error is a duplicate-key violation of a unique index (E11000).
/// The server's error code of a failed command (e.g. 26 NamespaceNotFound, 27
/// IndexNotFound), if the server answered one.
pub fn server_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(ce) => Some(ce.code),
        _ => None,
    }
}

pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(we)) => we.code == 11000,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        ErrorKind::Command(ce) => ce.code == 11000,
        _ => e.to_string().contains("E11000"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e: async_graphql::Error =
            AppError::internal(anyhow::anyhow!("db password is x")).into();
        assert_eq!(e.message, "Internal server error");
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("INTERNAL"))
        );
    }

    #[test]
    fn a_total_out_of_range_is_its_own_client_error() {
        let e = AppError::total(MoneyError::TotalOutOfRange);
        assert_eq!(e.code(), ErrorCode::AmountOutOfRange);
        assert_eq!(ErrorCode::rest_status(e.code().as_str(), 200), 422);
        let g: async_graphql::Error = e.into();
        assert_eq!(
            g.extensions.unwrap().get("code"),
            Some(&async_graphql::Value::from("AMOUNT_OUT_OF_RANGE"))
        );
        let other = AppError::total(MoneyError::CurrencyMismatch(
            crate::money::Currency::USD,
            crate::money::Currency::parse("EUR").unwrap(),
        ));
        assert_eq!(other.code(), ErrorCode::Internal);
    }

    #[test]
    fn validation_errors_name_the_field() {
        let e: async_graphql::Error = AppError::validation("email", "not an email").into();
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("VALIDATION_FAILED"))
        );
        assert_eq!(ext.get("field"), Some(&async_graphql::Value::from("email")));
    }
}
