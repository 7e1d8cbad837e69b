//! REST errors: `{"error", "code", "details"}` with the HTTP status that fits, and
//! the single mapping from GraphQL `extensions.code` to a status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contract::ErrorCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The body of every REST error.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable machine code (the GraphQL `extensions.code`).
    pub code: String,
    /// Field-level details (`[{field, message}]`, CSV `[{row, line, column, message}]`) or null.
    #[schema(value_type = Option<Vec<Object>>, required = true)]
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                code: code.to_owned(),
                details: Value::Null,
            },
            retry_after: None,
        }
    }

    /// An error with a code of the one table, at that code's status.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, code.as_str(), message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.body.details = details;
        self
    }

    /// 400 naming the offending field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::coded(
            ErrorCode::ValidationFailed,
            format!("Invalid `{field}`: {message}"),
        )
        .with_details(serde_json::json!([{ "field": field, "message": message }]))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::NotFound, message)
    }

    /// The REST error for the first entry of a GraphQL `errors` list; `fallback`
    /// is the HTTP status the router answered with.
    pub fn from_graphql(error: &Value, fallback: StatusCode) -> Self {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("Request failed")
            .to_owned();
        let ext = error.get("extensions");
        let code = ext
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("SUBGRAPH_ERROR")
            .to_owned();
        let status = status_for_code(&code, fallback);
        let details = match ext {
            Some(e) => {
                if let Some(list) = e.get("errors").filter(|v| v.is_array()) {
                    list.clone()
                } else if let Some(challenge) = e.get("challenge").and_then(Value::as_str) {
                    // TWO_FACTOR_REQUIRED: what `/api/auth/login/code` takes with the code.
                    serde_json::json!([{
                        "field": "code",
                        "message": message,
                        "challenge": challenge,
                        "expiresIn": e.get("expiresIn").cloned().unwrap_or(Value::Null),
                    }])
                } else if let Some(field) = e.get("field").and_then(Value::as_str) {
                    serde_json::json!([{ "field": rest_field_name(field), "message": message }])
                } else {
                    Value::Null
                }
            }
            None => Value::Null,
        };
        let retry_after = ext
            .and_then(|e| e.get("retryAfter"))
            .and_then(Value::as_u64);
        Self {
            status,
            body: ErrorBody {
                error: message,
                code,
                details,
            },
            retry_after,
        }
    }
}

/// GraphQL argument names that the REST routes spell differently.
fn rest_field_name(field: &str) -> &str {
    match field {
        "from" => "startDate",
        "to" => "endDate",
        "first" => "limit",
        "after" => "cursor",
        "alertThresholds" => "alertThreshold",
        other => other,
    }
}

/// The HTTP status of a GraphQL error code, from the one table
/// (`contract::ErrorCode::rest_status`). Unknown codes keep the router's status when it
/// is a client error, else count as a bad upstream; never a 500.
pub fn status_for_code(code: &str, fallback: StatusCode) -> StatusCode {
    StatusCode::from_u16(contract::ErrorCode::rest_status(code, fallback.as_u16()))
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn graphql_codes_map_to_their_http_statuses() {
        let ok = StatusCode::OK;
        assert_eq!(
            status_for_code("UNAUTHENTICATED", ok),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status_for_code("FORBIDDEN", ok), StatusCode::FORBIDDEN);
        assert_eq!(status_for_code("NOT_FOUND", ok), StatusCode::NOT_FOUND);
        assert_eq!(
            status_for_code("VALIDATION_FAILED", ok),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_for_code("CONFLICT", ok), StatusCode::CONFLICT);
        assert_eq!(
            status_for_code("RATE_LIMITED", ok),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for_code("SUBGRAPH_UNAVAILABLE", ok),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for_code("SUBGRAPH_TIMEOUT", ok),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn unknown_codes_are_a_bad_gateway_never_a_500() {
        assert_eq!(
            status_for_code("INTERNAL", StatusCode::OK),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status_for_code("WHATEVER", StatusCode::INTERNAL_SERVER_ERROR),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn validation_error_details_name_the_rest_field() {
        let e = serde_json::json!({"message": "bad date", "extensions": {"code": "VALIDATION_FAILED", "field": "from"}});
        let api = ApiError::from_graphql(&e, StatusCode::OK);
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        assert_eq!(api.body.details[0]["field"], "startDate");
    }

    #[test]
    fn rate_limit_error_carries_retry_after() {
        let e = serde_json::json!({"message": "slow down", "extensions": {"code": "RATE_LIMITED", "retryAfter": 3}});
        let resp = ApiError::from_graphql(&e, StatusCode::TOO_MANY_REQUESTS).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    }
}
