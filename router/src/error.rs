//! GraphQL errors as the router returns them, and the router's own error codes.

use serde::Serialize;
use serde_json::{Map, Value};

pub use contract::ErrorCode;

/// The codes the router itself produces, as text: names for entries of the one table
/// (`contract::ErrorCode`), which holds each code's text and HTTP status.
pub mod codes {
    use contract::ErrorCode;

    pub const GRAPHQL_PARSE_FAILED: &str = ErrorCode::GraphqlParseFailed.as_str();
    pub const GRAPHQL_VALIDATION_FAILED: &str = ErrorCode::GraphqlValidationFailed.as_str();
    pub const BAD_USER_INPUT: &str = ErrorCode::BadUserInput.as_str();
    pub const BAD_REQUEST: &str = ErrorCode::BadRequest.as_str();
    pub const OPERATION_RESOLUTION_FAILURE: &str = ErrorCode::OperationResolutionFailure.as_str();
    pub const QUERY_PLANNING_FAILED: &str = ErrorCode::QueryPlanningFailed.as_str();
    pub const SUBGRAPH_UNAVAILABLE: &str = ErrorCode::SubgraphUnavailable.as_str();
    pub const SUBGRAPH_TIMEOUT: &str = ErrorCode::SubgraphTimeout.as_str();
    pub const SUBGRAPH_BAD_RESPONSE: &str = ErrorCode::SubgraphBadResponse.as_str();
    pub const UNAUTHENTICATED: &str = ErrorCode::Unauthenticated.as_str();
    pub const RATE_LIMITED: &str = ErrorCode::RateLimited.as_str();
    pub const QUERY_TOO_COMPLEX: &str = ErrorCode::QueryTooComplex.as_str();
    pub const PERSISTED_QUERY_NOT_FOUND: &str = ErrorCode::PersistedQueryNotFound.as_str();
    pub const PERSISTED_QUERY_NOT_SUPPORTED: &str = ErrorCode::PersistedQueryNotSupported.as_str();
    pub const OPERATION_NOT_IN_SAFELIST: &str = ErrorCode::OperationNotInSafelist.as_str();
    pub const INTROSPECTION_DISABLED: &str = ErrorCode::IntrospectionDisabled.as_str();
    pub const INTERNAL: &str = ErrorCode::Internal.as_str();
    pub const TOO_MANY_OPERATIONS: &str = ErrorCode::TooManyOperations.as_str();
}

/// One entry of a response's `errors` list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphQLError {
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl GraphQLError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: None,
            extensions: Map::new(),
        }
    }

    pub fn with_code(message: impl Into<String>, code: &str) -> Self {
        let mut e = Self::new(message);
        e.extensions
            .insert("code".to_owned(), Value::String(code.to_owned()));
        e
    }

    pub fn with_extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_path(mut self, path: Vec<Value>) -> Self {
        self.path = Some(path);
        self
    }

    pub fn with_location(mut self, line: usize, column: usize) -> Self {
        self.locations.push(Location { line, column });
        self
    }

    pub fn code(&self) -> Option<&str> {
        self.extensions.get("code").and_then(Value::as_str)
    }

    /// Builds an error from an entry of a subgraph's `errors` list; locations are
    /// dropped because they point into the subgraph's operation, not the client's.
    pub fn from_subgraph(value: &Value) -> Self {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("Subgraph error")
            .to_owned();
        let path = value.get("path").and_then(Value::as_array).cloned();
        let extensions = value
            .get("extensions")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Self {
            message,
            locations: Vec::new(),
            path,
            extensions,
        }
    }
}
