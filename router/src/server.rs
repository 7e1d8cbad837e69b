//! The HTTP front door: GraphQL over HTTP (POST and GET), GraphiQL, health,
//! readiness and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::HeaderName;
use serde_json::Value;

use crate::config::Config;
use crate::error::{GraphQLError, codes};
use crate::pipeline::{GraphQLRequest, Pipeline, RequestContext, RequestError, response_body};

pub struct AppState {
    pub pipeline: Pipeline,
    pub config: Config,
}

pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(GRAPHQL_RESPONSE))
}

fn json_response(status: StatusCode, gql: bool, body: Vec<u8>) -> Response {
    let ct = if gql {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn request_error_response(err: &RequestError, gql: bool) -> Response {
    let status = if err.method_not_allowed {
        StatusCode::METHOD_NOT_ALLOWED
    } else if !err.client_error {
        if gql {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    } else if gql {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut resp = json_response(status, gql, response_body(None, &err.errors));
    if err.method_not_allowed {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    resp
}

fn bad_request(message: &str, gql: bool) -> Response {
    let e = GraphQLError::with_code(message, codes::BAD_REQUEST);
    json_response(StatusCode::BAD_REQUEST, gql, response_body(None, &[e]))
}

fn request_context(headers: &HeaderMap, is_get: bool) -> RequestContext {
    let mut forward: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        forward.push((header::AUTHORIZATION, v.clone()));
    }
    let request_id = headers.get("x-request-id").cloned().unwrap_or_else(|| {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .expect("a UUID is a valid header value")
    });
    forward.push((HeaderName::from_static("x-request-id"), request_id));
    RequestContext {
        headers: Arc::new(forward),
        is_get,
    }
}

async fn run_request(
    state: &AppState,
    request: GraphQLRequest,
    headers: &HeaderMap,
    method: Method,
) -> Response {
    let gql = wants_graphql_response(headers);
    let ctx = request_context(headers, method == Method::GET);
    match state.pipeline.execute(&request, &ctx).await {
        Ok(done) => json_response(StatusCode::OK, gql, done.body),
        Err(err) => request_error_response(&err, gql),
    }
}

async fn graphql_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gql = wants_graphql_response(&headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let request: GraphQLRequest =
        if content_type.starts_with("application/graphql") && !content_type.contains("json") {
            GraphQLRequest {
                query: Some(String::from_utf8_lossy(&body).into_owned()),
                ..Default::default()
            }
        } else {
            match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return bad_request(&format!("Invalid JSON body: {e}"), gql),
            }
        };
    run_request(&state, request, &headers, Method::POST).await
}

async fn graphql_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let gql = wants_graphql_response(&headers);
    let accepts_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if accepts_html && !params.contains_key("query") && state.config.graphiql {
        return Html(GRAPHIQL_HTML).into_response();
    }
    let parse_json = |key: &str| -> Result<Option<Value>, Response> {
        match params.get(key) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| bad_request(&format!("`{key}` is not valid JSON"), gql)),
        }
    };
    let variables = match parse_json("variables") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let extensions = match parse_json("extensions") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let request = GraphQLRequest {
        query: params.get("query").cloned(),
        operation_name: params
            .get("operationName")
            .filter(|s| !s.is_empty())
            .cloned(),
        variables,
        extensions,
    };
    run_request(&state, request, &headers, Method::GET).await
}

async fn health() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let client = state.pipeline.client.clone();
    let checks = state.pipeline.supergraph.subgraphs.iter().map(|(name, _)| {
        let client = client.clone();
        let name = name.clone();
        async move {
            let up = match client.endpoint(&name) {
                Some(ep) => client
                    .http()
                    .post(&ep.url)
                    .timeout(std::time::Duration::from_secs(2))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(r#"{"query":"{__typename}"}"#)
                    .send()
                    .await
                    .is_ok(),
                None => false,
            };
            (name, up)
        }
    });
    let results = futures::future::join_all(checks).await;
    let all_up = results.iter().all(|(_, up)| *up);
    let services: serde_json::Map<String, Value> = results
        .into_iter()
        .map(|(n, up)| (n, Value::from(if up { "up" } else { "down" })))
        .collect();
    let body = serde_json::json!({
        "status": if all_up { "ready" } else { "degraded" },
        "supergraph": "loaded",
        "services": services,
    });
    let status = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

const GRAPHIQL_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Smart Expense Tracker — GraphiQL</title>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css" />
  <style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
    ReactDOM.createRoot(document.getElementById('graphiql'))
      .render(React.createElement(GraphiQL, { fetcher }));
  </script>
</body>
</html>
"#;
