//! The policy every GraphQL operation passes, whichever door it came in by: the token
//! check, rate limiting, persisted queries and the safelist, then the pipeline, with
//! metrics and the HTTP status that fits. `POST`/`GET /graphql` and the REST shim call
//! [`run_request`] / [`execute_operation`].

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http::HeaderName;
use serde_json::Value;
use std::sync::Arc;

use crate::auth::Claims;
use crate::error::{GraphQLError, codes};
use crate::pipeline::{GraphQLRequest, RequestContext, RequestError, response_body};
use crate::state::AppState;

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

pub(crate) fn wants_graphql_response(headers: &HeaderMap) -> bool {
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

pub(crate) fn request_error_response(err: &RequestError, gql: bool) -> Response {
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

pub(crate) fn bad_request(message: &str, gql: bool) -> Response {
    let e = GraphQLError::with_code(message, codes::BAD_REQUEST);
    json_response(StatusCode::BAD_REQUEST, gql, response_body(None, &[e]))
}

fn request_context(headers: &HeaderMap, is_get: bool) -> RequestContext {
    let mut forward: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        forward.push((header::AUTHORIZATION, v.clone()));
    }
    let request_id = headers.get("x-request-id").cloned().unwrap_or_else(|| {
        // Written into a stack buffer: no formatter, no string allocated.
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(id).expect("a UUID is a valid header value")
    });
    forward.push((HeaderName::from_static("x-request-id"), request_id));
    RequestContext {
        headers: Arc::new(forward),
        is_get,
    }
}

pub(crate) async fn run_request(
    state: &Arc<AppState>,
    mut request: GraphQLRequest,
    headers: &HeaderMap,
    method: Method,
    client_ip: std::net::IpAddr,
) -> Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let gql = wants_graphql_response(headers);
    let mut ctx = request_context(headers, method == Method::GET);
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
        service = "router",
        otel.kind = "server",
    );
    // A caller's trace goes on here, and on into every subgraph this request calls.
    contract::telemetry::follow_headers(&span, headers);
    if let Some(value) =
        contract::telemetry::traceparent_of(&span).and_then(|v| HeaderValue::from_str(&v).ok())
    {
        Arc::make_mut(&mut ctx.headers).push((
            HeaderName::from_static(contract::telemetry::TRACEPARENT),
            value,
        ));
    }
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
        .with_label_values(&[&m.operation_label(request.operation_name.as_deref())])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Executes one GraphQL operation through the same path as `POST /graphql` (auth,
/// rate limiting, persisted queries, limits, metrics, errors) with the caller's
/// headers, answering as for `Accept: application/graphql-response+json` so the
/// HTTP status tells the failure class. Used by the REST shim.
pub async fn execute_operation(
    state: &Arc<AppState>,
    request: GraphQLRequest,
    headers: &HeaderMap,
    client_ip: std::net::IpAddr,
) -> Response {
    let mut headers = headers.clone();
    headers.insert(header::ACCEPT, HeaderValue::from_static(GRAPHQL_RESPONSE));
    run_request(state, request, &headers, Method::POST, client_ip).await
}

/// The client address. `X-Forwarded-For` counts only when the peer is a configured
/// trusted proxy: its hops are read from the right, past the trusted proxies, and the
/// first other address is the client.
pub fn client_ip(
    trusted: &[std::net::IpAddr],
    headers: &HeaderMap,
    peer: SocketAddr,
) -> std::net::IpAddr {
    let peer = peer.ip();
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

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

/// Who sends an operation, whatever the door it came in by.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified claims; `None` for an anonymous caller (or a token the router
    /// leaves to the subgraphs when it has no keys).
    pub claims: Option<Claims>,
    pub ip: std::net::IpAddr,
}

impl Caller {
    /// The rate-limit key: the user when known, else the address.
    fn key(&self) -> String {
        match &self.claims {
            Some(c) => format!("user:{}", c.sub),
            None => format!("ip:{}", self.ip),
        }
    }
}

/// Why the edge refused an operation: the error and the HTTP status it stands for.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: GraphQLError,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

/// Verifies an `Authorization` header value; a refusal is 401 `UNAUTHENTICATED`.
pub fn authenticate(state: &AppState, header: Option<&str>) -> Result<Option<Claims>, Refusal> {
    state.auth.verify_header(header).map_err(|e| {
        state
            .metrics
            .errors
            .with_label_values(&[codes::UNAUTHENTICATED])
            .inc();
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: GraphQLError::with_code(e.to_string(), codes::UNAUTHENTICATED),
            retry_after: None,
        }
    })
}

/// The policy every operation passes before it is prepared, over HTTP, a websocket or
/// the REST shim alike: the caller's rate limit, then persisted queries and the
/// safelist (which may fill in `request.query`).
pub fn admit(
    state: &AppState,
    caller: &Caller,
    request: &mut GraphQLRequest,
) -> Result<(), Refusal> {
    let m = &state.metrics;
    if let Some(limiter) = &state.extras.limiter
        && let Err(not_until) = limiter.check_key(&caller.key())
    {
        use governor::clock::Clock;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        m.errors.with_label_values(&[codes::RATE_LIMITED]).inc();
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: GraphQLError::with_code("Too many requests, retry later.", codes::RATE_LIMITED)
                .with_extension("retryAfter", secs),
            retry_after: Some(secs),
        });
    }
    resolve_persisted(state, request).map_err(|e| {
        if let Some(code) = e.code() {
            m.errors.with_label_values(&[code]).inc();
        }
        Refusal {
            status: StatusCode::BAD_REQUEST,
            error: e,
            retry_after: None,
        }
    })
}

fn refusal_response(refusal: Refusal, gql: bool) -> Response {
    // Over plain `application/json`, GraphQL errors other than auth and rate limits
    // are a 200 with `errors`.
    let status = if gql
        || refusal.status == StatusCode::UNAUTHORIZED
        || refusal.status == StatusCode::TOO_MANY_REQUESTS
    {
        refusal.status
    } else {
        StatusCode::OK
    };
    let unauthenticated = refusal.status == StatusCode::UNAUTHORIZED;
    let mut resp = error_response(status, gql, refusal.error);
    if let Some(secs) = refusal.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if unauthenticated {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    resp
}

async fn run_request_inner(
    state: &Arc<AppState>,
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
    let caller = match authenticate(state, auth_header) {
        Ok(claims) => Caller {
            claims,
            ip: client_ip,
        },
        Err(refusal) => {
            let missing = auth_header.is_none_or(|h| h.trim().is_empty());
            let mut resp = refusal_response(refusal, gql);
            if missing {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return resp;
        }
    };
    if let Err(refusal) = admit(state, &caller, request) {
        return refusal_response(refusal, gql);
    }
    let (mode, json_ok) = crate::stream::negotiate(headers);
    if mode != crate::stream::Mode::Json {
        let auth = auth_header.map(str::to_owned);
        return crate::stream::respond(
            state,
            request,
            ctx,
            caller,
            auth.as_deref(),
            mode,
            json_ok,
            gql,
        )
        .await;
    }
    match state.pipeline.execute(request, &ctx).await {
        Ok(done) => executed_response(state, done, gql),
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

/// The JSON response of an executed operation (its errors counted).
pub(crate) fn executed_response(
    state: &AppState,
    done: crate::pipeline::Executed,
    gql: bool,
) -> Response {
    for e in &done.errors {
        state
            .metrics
            .errors
            .with_label_values(&[e.code().unwrap_or("SUBGRAPH_ERROR")])
            .inc();
    }
    json_response(StatusCode::OK, gql, done.body)
}
