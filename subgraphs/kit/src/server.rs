//! The standard subgraph app: `POST`/`GET /graphql`, websocket subscriptions on
//! `/graphql` (graphql-transport-ws and graphql-ws), `/health` and `/ready`, plus
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::{Executor, ServerError, Value};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use mongodb::Database;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::auth::{Caller, JwtKeys};
use crate::config::ServiceConfig;
use crate::error::{AppError, ErrorCode};
use crate::limits::Guarded;

/// Media type of GraphQL-over-HTTP responses.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The request id, taken from `x-request-id` or made here; put into the GraphQL context.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

struct AppState<E> {
    /// The service's name, on its spans.
    service: String,
    executor: E,
    db: Database,
    keys: JwtKeys,
    max_body_bytes: usize,
}

/// A value the schema was built with (`Schema::build(..).data(..)`); its absence is an
/// internal error.
pub fn context_data<'a, T: std::any::Any + Send + Sync>(
    ctx: &async_graphql::Context<'a>,
) -> Result<&'a T, AppError> {
    ctx.data::<T>()
        .map_err(|e| AppError::internal(anyhow::anyhow!("{}", e.message)))
}

/// Builds the standard routes of `service` over an executor (an async-graphql schema).
pub fn subgraph_router<E: Executor>(
    service: &str,
    executor: E,
    db: Database,
    keys: JwtKeys,
    max_body_bytes: usize,
) -> Router {
    let executor = crate::limits::Guarded::new(executor, crate::limits::InputLimits::default());
    let state = Arc::new(AppState {
        service: service.to_string(),
        executor,
        db,
        keys,
        max_body_bytes,
    });
    Router::new()
        .route(
            "/graphql",
            get(graphql_get::<Guarded<E>>).post(graphql_post::<Guarded<E>>),
        )
        .route("/health", get(health))
        .route("/ready", get(ready::<Guarded<E>>))
        .with_state(state)
}

/// `subgraph_router` with the service's JWT key and body limit.
pub fn service_router<E: Executor>(executor: E, db: Database, config: &ServiceConfig) -> Router {
    subgraph_router(
        &config.service,
        executor,
        db,
        JwtKeys::hs256(&config.jwt_secret),
        config.max_body_bytes,
    )
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn ready<E: Executor>(State(state): State<Arc<AppState<E>>>) -> Response {
    match crate::db::ping(&state.db).await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "unavailable", "reason": "database unreachable" })),
            )
                .into_response()
        }
    }
}

/// A GraphQL-shaped error body with a code, outside of execution.
/// A GraphQL error response (`application/graphql-response+json`, so a router reads
/// its coded errors whatever the status).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({
            "errors": [{ "message": message, "extensions": { "code": code } }]
        })),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
    );
    r
}

fn app_error_response(e: &AppError) -> Response {
    let status =
        StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_response(status, e.code().as_str(), &e.public_message())
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(crate::ids::new_id)
}

fn wants_graphql_response_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(GRAPHQL_RESPONSE_JSON))
}

async fn graphql_post<E: Executor>(
    State(state): State<Arc<AppState<E>>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("request body exceeds {} bytes", state.max_body_bytes),
            );
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.is_empty() && !content_type.starts_with("application/json") {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the GraphQL request as application/json",
        );
    }
    // Numbers an f64 would round reach the scalars as their literal text.
    let body = contract::json::keep_exact_numbers(&body);
    let gql_request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("malformed GraphQL request body: {e}"),
            );
        }
    };
    execute(&state, &parts.headers, gql_request, false).await
}

#[derive(serde::Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

async fn graphql_get<E: Executor>(
    State(state): State<Arc<AppState<E>>>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        return websocket(&state, &mut parts).await;
    }
    let params: GetParams = match axum::extract::Query::try_from_uri(&parts.uri) {
        Ok(axum::extract::Query(p)) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", &e.to_string()),
    };
    let Some(query) = params.query else {
        let html = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        if html {
            return Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response();
        }
        return error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", "missing query");
    };
    let mut gql_request = async_graphql::Request::new(query);
    if let Some(name) = params.operation_name {
        gql_request = gql_request.operation_name(name);
    }
    for (text, what) in [
        (params.variables, "variables"),
        (params.extensions, "extensions"),
    ] {
        let Some(text) = text else { continue };
        match serde_json::from_slice::<serde_json::Value>(&contract::json::keep_exact_numbers(
            text.as_bytes(),
        )) {
            Ok(v @ serde_json::Value::Object(_)) if what == "variables" => {
                gql_request = gql_request.variables(async_graphql::Variables::from_json(v));
            }
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    &format!("{what} must be a JSON object"),
                );
            }
        }
    }
    execute(&state, &parts.headers, gql_request, true).await
}

/// Only queries may travel over GET; a mutation there is refused before execution.
fn is_mutation_or_subscription(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let is_query = |ty: OperationType| ty == OperationType::Query;
    match &doc.operations {
        DocumentOperations::Single(op) => !is_query(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops
                .get(name.as_str())
                .is_some_and(|op| !is_query(op.node.ty)),
            None => ops.values().any(|op| !is_query(op.node.ty)),
        },
    }
}

async fn execute<E: Executor>(
    state: &AppState<E>,
    headers: &HeaderMap,
    request: async_graphql::Request,
    is_get: bool,
) -> Response {
    let request_id = request_id(headers);
    let span = tracing::info_span!(
        "graphql",
        service = %state.service,
        request_id = %request_id,
        otel.kind = "server",
    );
    contract::telemetry::follow_headers(&span, headers);
    async move {
        if is_get && is_mutation_or_subscription(&request) {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_REQUEST",
                "only queries may be sent with GET; use POST",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = match state.keys.caller_from_header(auth) {
            Ok(c) => c,
            Err(e) => return app_error_response(&e),
        };
        let mut request = request.data(caller).data(RequestId(request_id.clone()));
        if let Some(token) = auth.and_then(crate::auth::bearer_token) {
            // Verified just above; lets resolvers call another subgraph as the caller.
            request = request.data(crate::users::AccessToken(token.to_string()));
        }
        let mut response = state.executor.execute(request).await;
        label_uncoded_errors(&mut response);
        let content_type = if wants_graphql_response_json(headers) {
            GRAPHQL_RESPONSE_JSON
        } else {
            "application/json"
        };
        let body = match serde_json::to_vec(&response) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise response");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal.as_str(),
                    "Internal server error",
                );
            }
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            r.headers_mut().insert("x-request-id", v);
        }
        r
    }
    .instrument(span)
    .await
}

/// Errors raised before execution (syntax, validation, wrong input types, unknown
/// fields) carry no code from async-graphql; give them the standard ones.
fn label_uncoded_errors(response: &mut async_graphql::Response) {
    let before_execution = matches!(response.data, Value::Null);
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if !before_execution {
            // An input coercion failure during execution is still the client's input.
            "VALIDATION_FAILED"
        } else if is_parse_error(error) {
            "GRAPHQL_PARSE_FAILED"
        } else {
            "GRAPHQL_VALIDATION_FAILED"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

fn is_parse_error(error: &ServerError) -> bool {
    // Parser errors are reported with a location and the parser's own wording.
    error.message.contains("expected") && error.path.is_empty() && error.message.contains("-->")
}

async fn websocket<E: Executor>(
    state: &AppState<E>,
    parts: &mut axum::http::request::Parts,
) -> Response {
    let protocol = match GraphQLProtocol::from_request_parts(parts, &()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if parts.method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let executor = state.executor.clone();
    let keys = state.keys.clone();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            use futures::{SinkExt, StreamExt};
            let (sink, stream) = socket.split();
            // async-graphql closes a refused `connection_init` with 1002; the contract
            // says 4401 (no credentials) or 4403 (bad credentials). The refusal message
            // carries the code, and this sink turns it into the close code.
            let sink = sink.with(|msg: axum::extract::ws::Message| {
                futures::future::ready(Ok::<_, axum::Error>(auth_close_code(msg)))
            });
            GraphQLWebSocket::new_with_pair(sink, stream, executor, protocol)
                .on_connection_init(move |payload| async move {
                    let caller = caller_from_init_payload(&keys, &payload)
                        .map_err(|e| async_graphql::Error::new(format!("4403 {}", e.message)))?;
                    if caller == Caller::Anonymous {
                        return Err(async_graphql::Error::new("4401 authentication required"));
                    }
                    let mut data = async_graphql::Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
                .await
        })
}

/// Rewrites the close frame of a refused `connection_init` (code 1002, reason
/// `"4401 ..."` or `"4403 ..."`) to that code and the rest of the reason.
fn auth_close_code(msg: axum::extract::ws::Message) -> axum::extract::ws::Message {
    use axum::extract::ws::{CloseFrame, Message};
    let Message::Close(Some(frame)) = &msg else {
        return msg;
    };
    if frame.code != 1002 {
        return msg;
    }
    for code in [4401_u16, 4403] {
        if let Some(reason) = frame.reason.as_str().strip_prefix(&format!("{code} ")) {
            return Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            }));
        }
    }
    msg
}

/// Reads the token of a websocket `connection_init` payload:
/// `{"Authorization": "Bearer <t>"}`, `{"authorization": ...}` or `{"token": "<t>"}`.
pub fn caller_from_init_payload(
    keys: &JwtKeys,
    payload: &serde_json::Value,
) -> async_graphql::Result<Caller> {
    let header = ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))
        .map(str::to_string)
        .or_else(|| {
            payload
                .get("token")
                .and_then(|v| v.as_str())
                .map(|t| format!("Bearer {t}"))
        });
    keys.caller_from_header(header.as_deref())
        .map_err(async_graphql::Error::from)
}

/// A future that completes when the server should stop.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Completes on Ctrl-C or SIGTERM (the shared contract's signal).
pub use contract::shutdown::signal as shutdown_signal;

/// Serves `app` on `listener` until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Background tasks of a service (event dispatcher, schedulers); aborted when dropped,
/// so stopping a service in a test also stops its background work.
#[derive(Default)]
pub struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Background {
    pub fn push(&mut self, handle: tokio::task::JoinHandle<()>) {
        self.0.push(handle);
    }

    /// Runs `job` now and then every `interval` after each run ends; a failed run is
    /// logged as "`what` failed" and the next one comes as usual.
    pub fn every<F, Fut, T>(
        &mut self,
        interval: std::time::Duration,
        what: &'static str,
        mut job: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, AppError>> + Send,
    {
        self.push(tokio::spawn(async move {
            loop {
                if let Err(e) = job().await {
                    let e: anyhow::Error = e.into();
                    tracing::warn!(error = %format!("{e:#}"), "{what} failed");
                }
                tokio::time::sleep(interval).await;
            }
        }));
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
