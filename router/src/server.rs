//! The HTTP front door: the routes (GraphQL over HTTP and websockets, GraphiQL, the
//! REST shim, health, readiness and metrics) and the GraphQL transport adapters. The
//! policy they share is in [`crate::edge`], the state in [`crate::state`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::edge::{bad_request, client_ip, run_request, wants_graphql_response};
use crate::health::{health, metrics, ready};
use crate::pipeline::GraphQLRequest;
pub use crate::state::{AppState, Extras};

pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/graphql", get(graphql_get_or_ws).post(graphql_post))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::rest::router())
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
}

async fn graphql_post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
            // Numbers an f64 would round reach the subgraphs as their literal text.
            match serde_json::from_slice(&contract::json::keep_exact_numbers(&body)) {
                Ok(r) => r,
                Err(e) => return bad_request(&format!("Invalid JSON body: {e}"), gql),
            }
        };
    run_request(
        &state,
        request,
        &headers,
        Method::POST,
        client_ip(&state.config.trusted_proxies, &headers, peer),
    )
    .await
}

async fn graphql_get(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
            Some(s) => serde_json::from_slice(&contract::json::keep_exact_numbers(s.as_bytes()))
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
    run_request(
        &state,
        request,
        &headers,
        Method::GET,
        client_ip(&state.config.trusted_proxies, &headers, peer),
    )
    .await
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

/// GET /graphql: a websocket upgrade (subscriptions), GraphiQL, or a query.
async fn graphql_get_or_ws(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    use axum::extract::FromRequestParts;
    let (mut parts, _body) = request.into_parts();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        let ws = match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
        {
            Ok(ws) => ws.protocols(["graphql-transport-ws", "graphql-ws"]),
            Err(rejection) => return rejection.into_response(),
        };
        let protocol = match ws.selected_protocol().and_then(|v| v.to_str().ok()) {
            Some("graphql-ws") => crate::ws::Protocol::Legacy,
            _ => crate::ws::Protocol::TransportWs,
        };
        let ip = client_ip(&state.config.trusted_proxies, &parts.headers, peer);
        return ws.on_upgrade(move |socket| crate::ws::client_session(state, socket, protocol, ip));
    }
    let params: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(p)| p)
        .unwrap_or_default();
    graphql_get(
        State(state),
        ConnectInfo(peer),
        parts.headers,
        Query(params),
    )
    .await
}
