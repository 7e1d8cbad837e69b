//! The one table of error codes: each code's text (GraphQL `extensions.code`, REST
//! `code`) and the HTTP status it stands for. The subgraphs, the router and the REST
//! shim all read it from here.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, $status:literal; )*) => {
        /// A stable error code of the public contract (API.md).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients see it.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text,)* }
            }

            /// The HTTP status that stands for the code.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The code named by `text`, if it is one of ours.
            pub fn parse(text: &str) -> Option<ErrorCode> {
                match text { $($text => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// No credentials, or credentials that do not verify.
    Unauthenticated => "UNAUTHENTICATED", 401;
    /// The password was right; the account's two-step sign-in wants a code
    /// (`extensions.challenge` goes with it to `loginWithCode`).
    TwoFactorRequired => "TWO_FACTOR_REQUIRED", 401;
    /// Verified, but not allowed.
    Forbidden => "FORBIDDEN", 403;
    /// Absent, or someone else's.
    NotFound => "NOT_FOUND", 404;
    /// An input value a service refuses; `extensions.field` names it.
    ValidationFailed => "VALIDATION_FAILED", 400;
    /// The write collides with existing data (a taken name, a stale version).
    Conflict => "CONFLICT", 409;
    /// Too many requests; `extensions.retryAfter` says when to come back.
    RateLimited => "RATE_LIMITED", 429;
    /// A failure of ours; the cause is logged, never shown.
    Internal => "INTERNAL", 500;
    /// The operation text does not parse.
    GraphqlParseFailed => "GRAPHQL_PARSE_FAILED", 400;
    /// The operation does not validate against the schema.
    GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED", 400;
    /// A variable or argument value of the wrong type.
    BadUserInput => "BAD_USER_INPUT", 400;
    /// A request the transport cannot read (no query, bad JSON, wrong method).
    BadRequest => "BAD_REQUEST", 400;
    /// `operationName` names no operation of the document.
    OperationResolutionFailure => "OPERATION_RESOLUTION_FAILURE", 400;
    /// The router could not plan the operation.
    QueryPlanningFailed => "QUERY_PLANNING_FAILED", 500;
    /// More operations at once on one websocket connection than the router allows.
    TooManyOperations => "TOO_MANY_OPERATIONS", 429;
    /// Past a depth, alias, root-field or cost limit.
    QueryTooComplex => "QUERY_TOO_COMPLEX", 400;
    /// A persisted-query hash the router does not know.
    PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND", 404;
    /// Persisted queries are switched off.
    PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED", 400;
    /// The safelist is on and the operation is not in it.
    OperationNotInSafelist => "OPERATION_NOT_IN_SAFELIST", 403;
    /// Introspection is switched off.
    IntrospectionDisabled => "INTROSPECTION_DISABLED", 400;
    /// A body over the size limit.
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", 413;
    /// A body of a media type the route does not take.
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE", 415;
    /// A method the route does not take.
    MethodNotAllowed => "METHOD_NOT_ALLOWED", 405;
    /// A sum of amounts that cannot be represented exactly (each amount is bounded, so
    /// only a total can be out of range); nothing was changed.
    AmountOutOfRange => "AMOUNT_OUT_OF_RANGE", 422;
    /// SMS was asked for while the user's phone number is not verified; nothing was
    /// changed.
    PhoneNotVerified => "PHONE_NOT_VERIFIED", 409;
    /// A per-user limit (e.g. registered push devices) is reached; nothing was added.
    LimitReached => "LIMIT_REACHED", 409;
    /// An outside provider (e.g. the SMS provider) did not take a message; nothing was
    /// kept, and trying again later may work.
    DeliveryFailed => "DELIVERY_FAILED", 502;
    /// A subgraph could not be reached.
    SubgraphUnavailable => "SUBGRAPH_UNAVAILABLE", 503;
    /// A subgraph did not answer in time.
    SubgraphTimeout => "SUBGRAPH_TIMEOUT", 504;
    /// A subgraph answered something that is not a GraphQL response.
    SubgraphBadResponse => "SUBGRAPH_BAD_RESPONSE", 502;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The HTTP status a REST client gets for an error carrying `code`. A code that is
    /// not ours keeps `fallback` when that is a client error (4xx) and is otherwise a bad
    /// answer from upstream (502); a server error of a subgraph (`INTERNAL`,
    /// `QUERY_PLANNING_FAILED`) reaches REST clients as 502, never as a 500.
    pub fn rest_status(code: &str, fallback: u16) -> u16 {
        match ErrorCode::parse(code) {
            Some(c) if c.http_status() >= 500 && c.http_status() < 503 => 502,
            Some(c) => c.http_status(),
            None if (400..500).contains(&fallback) => fallback,
            None => 502,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_from_its_text() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(ErrorCode::parse("unauthenticated"), None);
    }

    #[test]
    fn rest_statuses_never_leak_a_500() {
        assert_eq!(ErrorCode::rest_status("UNAUTHENTICATED", 200), 401);
        assert_eq!(ErrorCode::rest_status("INTERNAL", 200), 502);
        assert_eq!(ErrorCode::rest_status("SUBGRAPH_TIMEOUT", 200), 504);
        assert_eq!(ErrorCode::rest_status("SUBGRAPH_UNAVAILABLE", 200), 503);
        assert_eq!(ErrorCode::rest_status("AMOUNT_OUT_OF_RANGE", 200), 422);
        assert_eq!(ErrorCode::rest_status("WHATEVER", 500), 502);
        assert_eq!(ErrorCode::rest_status("WHATEVER", 422), 422);
        assert_eq!(ErrorCode::rest_status("WHATEVER", 200), 502);
    }
}
