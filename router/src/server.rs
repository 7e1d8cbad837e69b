//! The HTTP front door: GraphQL over HTTP (POST and GET), GraphiQL, health,
//! readiness and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::HeaderName;
use serde_json::Value;

use crate::auth::{AuthError, Authenticator};
use crate::config::Config;
use crate::error::{GraphQLError, codes};
use crate::metrics::Metrics;
use crate::pipeline::{GraphQLRequest, Pipeline, RequestContext, RequestError, response_body};

pub struct AppState {
    pub pipeline: Pipeline,
    pub config: Config,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub extras: Extras,
}

type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Rate limiting and persisted queries.
pub struct Extras {
    limiter: Option<Limiter>,
    apq: parking_lot::Mutex<lru::LruCache<String, Arc<str>>>,
    /// sha256 hex -> query text, from the safelist manifest.
    safelist: HashMap<String, String>,
    /// Last subgraph probe, shown by `/health`.
    pub last_probe: parking_lot::RwLock<Option<Vec<(String, bool)>>>,
}

impl Extras {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let limiter = if config.rate_limit.enabled {
            let per_second =
                std::num::NonZeroU32::new(config.rate_limit.per_second.max(1)).expect("max(1)");
            let burst = std::num::NonZeroU32::new(config.rate_limit.burst.max(1)).expect("max(1)");
            Some(governor::RateLimiter::keyed(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ))
        } else {
            None
        };
        let mut safelist = HashMap::new();
        if let Some(path) = &config.persisted_queries.safelist_path {
            let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            let ops = manifest.get("operations").unwrap_or(&manifest);
            if let Some(map) = ops.as_object() {
                for (hash, query) in map {
                    if let Some(q) = query
                        .as_str()
                        .or_else(|| query.get("body").and_then(Value::as_str))
                    {
                        safelist.insert(hash.clone(), q.to_owned());
                    }
                }
            } else if let Some(list) = ops.as_array() {
                for op in list {
                    if let (Some(h), Some(q)) = (
                        op.get("id").and_then(Value::as_str),
                        op.get("body").and_then(Value::as_str),
                    ) {
                        safelist.insert(h.to_owned(), q.to_owned());
                    }
                }
            }
        }
        let size = std::num::NonZeroUsize::new(config.persisted_queries.apq_cache_size.max(1))
            .expect("max(1)");
        Ok(Self {
            limiter,
            apq: parking_lot::Mutex::new(lru::LruCache::new(size)),
            safelist,
            last_probe: parking_lot::RwLock::new(None),
        })
    }
}

impl Extras {
    /// Drops rate-limit state of clients whose buckets are full again.
    pub fn prune(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

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
    mut request: GraphQLRequest,
    headers: &HeaderMap,
    method: Method,
    client_ip: std::net::IpAddr,
) -> Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let gql = wants_graphql_response(headers);
    let ctx = request_context(headers, method == Method::GET);
    let request_id = ctx
        .headers
        .iter()
        .find(|(n, _)| n == "x-request-id")
        .map(|(_, v)| v.clone());
    let span = tracing::info_span!(
        "graphql",
        request_id = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        operation = request.operation_name.as_deref().unwrap_or_default(),
    );
    let mut response = run_request_inner(state, &mut request, headers, ctx, client_ip, gql)
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "graphql request"
        )
    });
    if let Some(id) = request_id {
        response.headers_mut().insert("x-request-id", id);
    }
    let m = &state.metrics;
    m.requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    m.request_latency
        .with_label_values(&[request.operation_name.as_deref().unwrap_or("anonymous")])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Executes one GraphQL operation through the same path as `POST /graphql` (auth,
/// rate limiting, persisted queries, limits, metrics, errors) with the caller's
/// headers, answering as for `Accept: application/graphql-response+json` so the
/// HTTP status tells the failure class. Used by the REST shim.
pub async fn execute_operation(
    state: &AppState,
    request: GraphQLRequest,
    headers: &HeaderMap,
    client_ip: std::net::IpAddr,
) -> Response {
    let mut headers = headers.clone();
    headers.insert(header::ACCEPT, HeaderValue::from_static(GRAPHQL_RESPONSE));
    run_request(state, request, &headers, Method::POST, client_ip).await
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
            match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return bad_request(&format!("Invalid JSON body: {e}"), gql),
            }
        };
    run_request(
        &state,
        request,
        &headers,
        Method::POST,
        client_ip(&headers, peer),
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
    run_request(
        &state,
        request,
        &headers,
        Method::GET,
        client_ip(&headers, peer),
    )
    .await
}

/// The client address; a first `X-Forwarded-For` hop is trusted when present.
/// Public for the REST shim.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> std::net::IpAddr {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer.ip())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Liveness: always `ok` while the router serves; `services` is the last background
/// probe of the subgraphs (refreshed every 10 s, and by `/ready`).
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let services = state
        .extras
        .last_probe
        .read()
        .as_deref()
        .map(services_json)
        .unwrap_or_default();
    axum::Json(serde_json::json!({"status": "ok", "services": services})).into_response()
}

/// Probes every subgraph with `{ __typename }`; returns (name, up) sorted by name.
pub async fn probe_subgraphs(state: &AppState) -> Vec<(String, bool)> {
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
                    .is_ok_and(|r| r.status().is_success()),
                None => false,
            };
            (name, up)
        }
    });
    futures::future::join_all(checks).await
}

fn services_json(results: &[(String, bool)]) -> serde_json::Map<String, Value> {
    results
        .iter()
        .map(|(n, up)| (n.clone(), Value::from(if *up { "up" } else { "down" })))
        .collect()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let results = probe_subgraphs(&state).await;
    *state.extras.last_probe.write() = Some(results.clone());
    let all_up = results.iter().all(|(_, up)| *up);
    let body = serde_json::json!({
        "status": if all_up { "ready" } else { "degraded" },
        "supergraph": "loaded",
        "services": services_json(&results),
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

fn error_response(status: StatusCode, gql: bool, error: GraphQLError) -> Response {
    json_response(status, gql, response_body(None, &[error]))
}

/// Resolves APQ hashes and enforces the safelist, filling in `request.query`.
fn resolve_persisted(state: &AppState, request: &mut GraphQLRequest) -> Result<(), GraphQLError> {
    let pq = &state.config.persisted_queries;
    let hash = request
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"))
        .and_then(|p| p.get("sha256Hash"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(hash) = &hash {
        if let Some(q) = state.extras.safelist.get(hash) {
            request.query.get_or_insert_with(|| q.clone());
        }
        match &request.query {
            Some(q) => {
                if !pq.apq && !state.extras.safelist.contains_key(hash) {
                    return Err(GraphQLError::with_code(
                        "PersistedQueryNotSupported",
                        codes::PERSISTED_QUERY_NOT_SUPPORTED,
                    ));
                }
                if &sha256_hex(q) != hash {
                    return Err(GraphQLError::with_code(
                        "provided sha does not match query",
                        codes::BAD_REQUEST,
                    ));
                }
                if pq.apq {
                    state
                        .extras
                        .apq
                        .lock()
                        .put(hash.clone(), Arc::from(q.as_str()));
                }
            }
            None => {
                if !pq.apq {
                    return Err(GraphQLError::with_code(
                        "PersistedQueryNotSupported",
                        codes::PERSISTED_QUERY_NOT_SUPPORTED,
                    ));
                }
                let found = state.extras.apq.lock().get(hash).cloned();
                match found {
                    Some(q) => request.query = Some(q.to_string()),
                    None => {
                        return Err(GraphQLError::with_code(
                            "PersistedQueryNotFound",
                            codes::PERSISTED_QUERY_NOT_FOUND,
                        ));
                    }
                }
            }
        }
    }
    if pq.safelist_enforce {
        let allowed = request
            .query
            .as_deref()
            .is_some_and(|q| state.extras.safelist.contains_key(&sha256_hex(q)));
        if !allowed {
            return Err(GraphQLError::with_code(
                "This operation is not in the safelist.",
                codes::OPERATION_NOT_IN_SAFELIST,
            ));
        }
    }
    Ok(())
}

async fn run_request_inner(
    state: &AppState,
    request: &mut GraphQLRequest,
    headers: &HeaderMap,
    ctx: RequestContext,
    client_ip: std::net::IpAddr,
    gql: bool,
) -> Response {
    let m = &state.metrics;
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // An invalid token is rejected here, before any subgraph call.
    let claims = match state.auth.verify_header(auth_header) {
        Ok(c) => c,
        Err(e) => {
            m.errors.with_label_values(&[codes::UNAUTHENTICATED]).inc();
            let mut resp = error_response(
                StatusCode::UNAUTHORIZED,
                gql,
                GraphQLError::with_code(e.to_string(), codes::UNAUTHENTICATED),
            );
            let challenge = if e == AuthError::Missing {
                "Bearer"
            } else {
                "Bearer error=\"invalid_token\""
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            return resp;
        }
    };
    if let Some(limiter) = &state.extras.limiter {
        let key = match &claims {
            Some(c) => format!("user:{}", c.sub),
            None => format!("ip:{client_ip}"),
        };
        if let Err(not_until) = limiter.check_key(&key) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            m.errors.with_label_values(&[codes::RATE_LIMITED]).inc();
            let mut resp = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                gql,
                GraphQLError::with_code("Too many requests, retry later.", codes::RATE_LIMITED)
                    .with_extension("retryAfter", secs),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
    }
    if let Err(e) = resolve_persisted(state, request) {
        if let Some(code) = e.code() {
            m.errors.with_label_values(&[code]).inc();
        }
        let status = if gql {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return error_response(status, gql, e);
    }
    match state.pipeline.execute(request, &ctx).await {
        Ok(done) => {
            for e in &done.errors {
                m.errors
                    .with_label_values(&[e.code().unwrap_or("SUBGRAPH_ERROR")])
                    .inc();
            }
            json_response(StatusCode::OK, gql, done.body)
        }
        Err(err) => {
            for e in &err.errors {
                m.errors
                    .with_label_values(&[e.code().unwrap_or("UNKNOWN")])
                    .inc();
            }
            request_error_response(&err, gql)
        }
    }
}

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
        return ws.on_upgrade(move |socket| crate::ws::client_session(state, socket, protocol));
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
