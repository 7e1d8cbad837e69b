//! Runs a GraphQL operation for a REST route through the router's own pipeline
//! ([`crate::edge::execute_operation`]) and turns the outcome into data or an
//! [`ApiError`].

use contract::ErrorCode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use crate::pipeline::GraphQLRequest;
use crate::state::AppState;

/// Who calls: the request headers (forwarded as for GraphQL) and address.
pub struct Caller {
    pub headers: HeaderMap,
    pub ip: IpAddr,
}

fn peer_ip(parts: &Parts, state: &AppState) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    crate::edge::client_ip(&state.config.trusted_proxies, &parts.headers, peer)
}

/// A caller without authentication requirements (register, login).
pub struct Anonymous(pub Caller);

impl FromRequestParts<Arc<AppState>> for Anonymous {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let mut headers = parts.headers.clone();
        // A stale token must not turn register/login into a 401.
        headers.remove(header::AUTHORIZATION);
        Ok(Self(Caller {
            headers,
            ip: peer_ip(parts, state),
        }))
    }
}

/// An authenticated caller: a bearer token is required (401 without), and a legacy
/// `user-id` header must name the token's user (403 otherwise).
pub struct Authed(pub Caller);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        let Some(auth) = auth else {
            return Err(ApiError::unauthenticated(
                contract::auth::TokenError::Missing.to_string(),
            ));
        };
        let token = contract::auth::bearer_token(auth).ok_or_else(|| {
            ApiError::unauthenticated(contract::auth::TokenError::Malformed.to_string())
        })?;
        if let Some(claimed) = parts.headers.get("user-id") {
            let claimed = claimed.to_str().unwrap_or_default().trim().to_owned();
            let subject = match state.auth.verify_header(Some(auth)) {
                Ok(Some(claims)) => Some(claims.sub),
                Ok(None) => unverified_subject(token),
                Err(e) => return Err(ApiError::unauthenticated(e.to_string())),
            };
            if subject.as_deref() != Some(claimed.as_str()) {
                return Err(ApiError::forbidden(
                    "The user-id header does not match the access token's user",
                ));
            }
        }
        Ok(Self(Caller {
            headers: parts.headers.clone(),
            ip: peer_ip(parts, state),
        }))
    }
}

/// The `{id}` segment of a route. Any text is an id (one that names nothing is a 404
/// from the service); a segment that is not UTF-8 is a 400 in the REST error shape
/// rather than axum's plain-text rejection.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(rejection) => Err(ApiError::invalid("id", rejection.body_text())),
        }
    }
}

/// The `sub` of a JWT read without verification, for when the router verifies no
/// tokens itself (the subgraphs still do).
fn unverified_subject(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sub").and_then(Value::as_str).map(str::to_owned)
}

/// Executes `query` with `variables`; returns `data` or the first error.
pub async fn run(
    state: &std::sync::Arc<AppState>,
    caller: &Caller,
    query: &str,
    variables: Value,
) -> Result<Value, ApiError> {
    let request = GraphQLRequest {
        query: Some(query.to_owned()),
        operation_name: None,
        variables: Some(variables),
        extensions: None,
    };
    let response = crate::edge::execute_operation(state, request, &caller.headers, caller.ip).await;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|_| ApiError::coded(ErrorCode::SubgraphBadResponse, "Unreadable response"))?;
    let mut body: Value = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::coded(
            ErrorCode::SubgraphBadResponse,
            "The router's response was not JSON",
        )
    })?;
    if let Some(first) = body
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        let mut e = ApiError::from_graphql(first, status);
        if e.retry_after.is_none() {
            e.retry_after = retry_after;
        }
        return Err(e);
    }
    match body.get_mut("data").map(Value::take) {
        Some(data) if data.is_object() => Ok(data),
        _ => Err(ApiError::coded(
            ErrorCode::SubgraphBadResponse,
            "No data in the response",
        )),
    }
}

/// Reads `data[field]` into `T`.
pub fn field<T: DeserializeOwned>(data: &mut Value, field: &str) -> Result<T, ApiError> {
    let v = data.get_mut(field).map(Value::take).unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| {
        ApiError::coded(
            ErrorCode::SubgraphBadResponse,
            format!("Unexpected `{field}` in the response: {e}"),
        )
    })
}

/// Runs `mutation($id: ID!) { <field>(id: $id) }` (a delete answering a Boolean) and
/// answers `{message: "<What> deleted successfully"}`, or 404 when nothing was deleted.
pub async fn delete_by_id(
    state: &std::sync::Arc<AppState>,
    caller: &Caller,
    mutation_field: &str,
    id: String,
    what: &str,
) -> Result<axum::Json<super::shapes::MessageResponse>, ApiError> {
    let q = super::ops::delete(mutation_field);
    let mut data = run(state, caller, &q, serde_json::json!({ "id": id })).await?;
    if field::<bool>(&mut data, mutation_field)? {
        Ok(axum::Json(super::shapes::MessageResponse {
            message: format!("{what} deleted successfully"),
        }))
    } else {
        Err(ApiError::not_found(format!("{what} not found")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn the_subject_of_an_unverified_token_is_read_from_its_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"u1"}"#);
        assert_eq!(
            unverified_subject(&format!("x.{payload}.y")).as_deref(),
            Some("u1")
        );
        assert_eq!(unverified_subject("garbage"), None);
    }

    /// The whole app over the committed supergraph; no subgraph is running.
    async fn app() -> axum::Router {
        let config = crate::Config {
            supergraph: concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/supergraph.graphql").into(),
            ..crate::Config::default()
        };
        crate::app(crate::build_state(config).await.unwrap())
    }

    async fn send(method: &str, uri: &str) -> (StatusCode, HeaderMap, Value) {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer x.y.z")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app().await.oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn an_id_that_is_not_utf8_is_a_400_in_the_rest_shape() {
        for uri in ["/api/expenses/%FF", "/api/budgets/alerts/%C3%28/read"] {
            let (status, _, body) =
                send(if uri.ends_with("read") { "PUT" } else { "GET" }, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(body["code"], "VALIDATION_FAILED");
            assert_eq!(body["details"][0]["field"], "id");
        }
    }

    #[tokio::test]
    async fn another_method_on_a_known_route_is_a_405_in_the_rest_shape_with_allow() {
        let (status, headers, body) = send("PATCH", "/api/expenses").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
        let allow = headers[header::ALLOW].to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    }
}
