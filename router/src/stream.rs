//! Streamed HTTP responses on `/graphql`, chosen by the client's `Accept`:
//!
//! - `text/event-stream`: GraphQL over SSE, "distinct connections" mode — one `next`
//!   event per result, then `complete`; errors found before execution arrive as a
//!   `next` event too;
//! - `multipart/mixed; subscriptionSpec="1.0"`: multipart subscriptions — each part
//!   `{"payload": <result>}`, `{}` heartbeats, a transport failure as
//!   `{"payload": null, "errors": [...]}`;
//! - `multipart/mixed`: GraphQL incremental delivery — `@defer` (initial payload,
//!   then `incremental`, with `hasNext`) and subscriptions (one part per event).
//!
//! The request has passed the same edge as every other one (token, rate limit,
//! persisted queries) before it gets here; the operation runs through
//! [`crate::subscription`], as over websockets.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::edge::Caller;
use crate::error::{GraphQLError, codes};
use crate::pipeline::{GraphQLRequest, OpKind, Prepared, RequestContext, response_body};
use crate::state::AppState;
use crate::subscription::{EventSink, Subscriber};

/// How the client asked to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON response.
    Json,
    /// `text/event-stream`.
    Sse,
    /// `multipart/mixed; subscriptionSpec="1.0"`.
    MultipartSubscription,
    /// `multipart/mixed` (incremental delivery).
    Incremental,
}

/// What the `Accept` header allows: the first streaming type it names, unless a JSON
/// type comes first; and whether JSON is acceptable at all.
pub fn negotiate(headers: &axum::http::HeaderMap) -> (Mode, bool) {
    let mut mode = None;
    let mut json = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut params = parts.filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                ))
            });
            let found = match essence.as_str() {
                "text/event-stream" => Some(Mode::Sse),
                "multipart/mixed" => Some(
                    if params.any(|(k, v)| k == "subscriptionspec" && v.starts_with('1')) {
                        Mode::MultipartSubscription
                    } else {
                        Mode::Incremental
                    },
                ),
                "application/json"
                | "application/graphql-response+json"
                | "*/*"
                | "application/*" => {
                    json = true;
                    Some(Mode::Json)
                }
                _ => None,
            };
            if mode.is_none() {
                mode = found;
            }
        }
    }
    let mode = mode.unwrap_or(Mode::Json);
    (mode, json || mode == Mode::Json)
}

/// How the parts of a streamed response are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Sse,
    Apollo,
    Incremental,
}

// Each part is followed by the next delimiter at once, so a client can read it
// without waiting for the next part; the closing delimiter adds `--`.
const INCREMENTAL_DELIMITER: &[u8] = b"\r\n---";
const INCREMENTAL_PART: &[u8] = b"\r\nContent-Type: application/json; charset=utf-8\r\n\r\n";
const APOLLO_DELIMITER: &[u8] = b"\r\n--graphql";
const APOLLO_PART: &[u8] = b"\r\ncontent-type: application/json\r\n\r\n";
const MULTIPART_END: &[u8] = b"--\r\n";
/// Between two heartbeats of an idle multipart subscription.
const APOLLO_HEARTBEAT: Duration = Duration::from_secs(5);
/// Parts waiting to be written to one streamed response.
const STREAM_QUEUE: usize = 64;

impl Framing {
    fn content_type(self) -> &'static str {
        match self {
            Framing::Sse => "text/event-stream",
            Framing::Apollo => "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"",
            Framing::Incremental => "multipart/mixed; boundary=\"-\"",
        }
    }

    /// One result (a JSON object) as written on the wire.
    fn part(self, json: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(json.len() + 64);
        match self {
            Framing::Sse => {
                out.extend_from_slice(b"event: next\ndata: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
            Framing::Apollo => {
                out.extend_from_slice(APOLLO_PART);
                out.extend_from_slice(b"{\"payload\":");
                out.extend_from_slice(json);
                out.push(b'}');
                out.extend_from_slice(APOLLO_DELIMITER);
            }
            Framing::Incremental => {
                out.extend_from_slice(INCREMENTAL_PART);
                out.extend_from_slice(json);
                out.extend_from_slice(INCREMENTAL_DELIMITER);
            }
        }
        Bytes::from(out)
    }

    /// A part written as it is (no `payload` wrapping).
    fn raw_part(self, json: &[u8]) -> Bytes {
        let (part, delimiter) = match self {
            Framing::Apollo => (APOLLO_PART, APOLLO_DELIMITER),
            _ => (INCREMENTAL_PART, INCREMENTAL_DELIMITER),
        };
        let mut out = part.to_vec();
        out.extend_from_slice(json);
        out.extend_from_slice(delimiter);
        Bytes::from(out)
    }

    /// What opens the body: the first delimiter of a multipart one.
    fn preamble(self) -> Option<Bytes> {
        match self {
            Framing::Sse => None,
            Framing::Apollo => Some(Bytes::from_static(APOLLO_DELIMITER)),
            Framing::Incremental => Some(Bytes::from_static(INCREMENTAL_DELIMITER)),
        }
    }

    fn end(self) -> Bytes {
        Bytes::from_static(match self {
            Framing::Sse => b"event: complete\ndata: \n\n",
            Framing::Apollo | Framing::Incremental => MULTIPART_END,
        })
    }

    fn heartbeat(self) -> Option<(Duration, Bytes)> {
        match self {
            Framing::Sse => Some((crate::subscription::KEEPALIVE, Bytes::from_static(b":\n\n"))),
            Framing::Apollo => Some((APOLLO_HEARTBEAT, self.raw_part(b"{}"))),
            Framing::Incremental => None,
        }
    }
}

/// The writing end of one streamed response.
struct HttpSink {
    tx: mpsc::Sender<Bytes>,
    framing: Framing,
    /// Each result of a subscription says that more may follow (incremental delivery).
    subscription: bool,
    write_timeout: Duration,
    /// Signalled when the client stopped reading (or left).
    gone: tokio::sync::Notify,
}

impl HttpSink {
    async fn write(&self, bytes: Bytes) {
        if self
            .tx
            .send_timeout(bytes, self.write_timeout)
            .await
            .is_err()
        {
            self.gone.notify_one();
        }
    }

    async fn result(&self, json: &[u8]) {
        self.write(self.framing.part(json)).await;
    }

    async fn finish(&self) {
        self.write(self.framing.end()).await;
    }
}

impl EventSink for HttpSink {
    fn next<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            if self.subscription && self.framing == Framing::Incremental {
                self.result(&crate::defer::with_has_next(body, true)).await;
            } else {
                self.result(body).await;
            }
        }
        .boxed()
    }

    fn error(&self, errors: Vec<GraphQLError>) -> BoxFuture<'_, ()> {
        async move {
            match self.framing {
                Framing::Apollo => {
                    let mut part = b"{\"payload\":null,\"errors\":".to_vec();
                    serde_json::to_writer(&mut part, &errors).expect("errors always serialize");
                    part.push(b'}');
                    self.write(self.framing.raw_part(&part)).await;
                }
                Framing::Incremental => {
                    let body = response_body(None, &errors);
                    self.result(&crate::defer::with_has_next(&body, false))
                        .await;
                }
                Framing::Sse => self.result(&response_body(None, &errors)).await,
            }
            self.finish().await;
        }
        .boxed()
    }

    fn complete(&self) -> BoxFuture<'_, ()> {
        async move {
            if self.subscription && self.framing == Framing::Incremental {
                self.result(b"{\"hasNext\":false}").await;
            }
            self.finish().await;
        }
        .boxed()
    }
}

/// The response for a client that asked for a stream. `json_ok`: the client also
/// takes one JSON response, which a query without `@defer` gets.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn respond(
    state: &Arc<AppState>,
    request: &GraphQLRequest,
    ctx: RequestContext,
    caller: Caller,
    auth: Option<&str>,
    mode: Mode,
    json_ok: bool,
    gql: bool,
) -> Response {
    let framing = match mode {
        Mode::Json | Mode::Sse => Framing::Sse,
        Mode::MultipartSubscription => Framing::Apollo,
        Mode::Incremental => Framing::Incremental,
    };
    let pipeline = &state.pipeline;
    let (prepared, variables) = match pipeline.prepare_request(request, &ctx).await {
        Ok(p) => p,
        Err(err) => {
            // Over SSE, errors found before execution are a `next` event (so that an
            // `EventSource` reads them); a wrong method stays a 405.
            if framing == Framing::Sse && !err.method_not_allowed {
                let (response, sink) = open(state, framing, false);
                sink.error(err.errors).await;
                return response;
            }
            return crate::edge::request_error_response(&err, gql);
        }
    };
    let deferred = prepared.kind == OpKind::Query
        && prepared
            .defer
            .as_ref()
            .is_some_and(|d| crate::defer::active(&d.if_variables, &variables));
    if prepared.kind != OpKind::Subscription && !deferred && json_ok {
        let done = pipeline
            .run_prepared(
                &prepared,
                &variables,
                ctx.headers.clone(),
                Value::Object(Map::new()),
            )
            .await;
        return crate::edge::executed_response(state, done, gql);
    }
    let subscription = prepared.kind == OpKind::Subscription;
    let (response, sink) = open(state, framing, subscription);
    let expires = caller.claims.as_ref().map(|c| {
        let left = c.exp.saturating_sub(contract::auth::now_secs());
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let request_id = ctx
        .headers
        .iter()
        .find(|(n, _)| n == "x-request-id")
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sub = Subscriber::new(state.clone(), auth.map(str::to_owned), caller, request_id);
    tokio::spawn(async move {
        let run = async {
            if deferred {
                run_deferred(&sub, &sink, &prepared, &variables).await;
            } else {
                crate::subscription::run_prepared(&sub, &sink, &prepared, &variables).await;
            }
        };
        let expiry = async {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = run => {}
            () = sink.tx.closed() => {}
            () = sink.gone.notified() => {}
            () = expiry => {
                // As over websockets (close 4403): the client comes back with a fresh token.
                sink.error(vec![GraphQLError::with_code(
                    "The access token expired; subscribe again with a fresh one.",
                    codes::UNAUTHENTICATED,
                )]).await;
            }
        }
        sub.close_upstreams().await;
    });
    response
}

/// A streamed response and the sink that feeds it.
fn open(state: &AppState, framing: Framing, subscription: bool) -> (Response, HttpSink) {
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    if let Some(preamble) = framing.preamble() {
        tx.try_send(preamble)
            .expect("an empty queue takes the preamble");
    }
    let beat = framing.heartbeat().filter(|_| subscription);
    let body = futures::stream::unfold(
        (
            rx,
            beat.map(|(every, bytes)| (tokio::time::interval(every), bytes)),
        ),
        |(mut rx, mut beat)| async move {
            let next = match beat.as_mut() {
                Some((tick, bytes)) => tokio::select! {
                    m = rx.recv() => m,
                    _ = tick.tick() => Some(bytes.clone()),
                },
                None => rx.recv().await,
            };
            next.map(|b| (Ok::<_, Infallible>(b), (rx, beat)))
        },
    );
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(framing.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if framing == Framing::Sse {
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    let sink = HttpSink {
        tx,
        framing,
        subscription,
        write_timeout: Duration::from_millis(state.config.websocket.write_timeout_ms),
        gone: tokio::sync::Notify::new(),
    };
    (response, sink)
}

/// A query with deferred fragments: the initial payload as soon as the operation
/// without them is done, then the deferred fields from the whole operation, which
/// runs at the same time.
async fn run_deferred(
    sub: &Subscriber,
    sink: &HttpSink,
    prepared: &Arc<Prepared>,
    variables: &Map<String, Value>,
) {
    let Some(deferral) = prepared.defer.clone() else {
        return;
    };
    let pipeline = sub.state.pipeline.clone();
    let whole = {
        let (pipeline, prepared, variables, headers) = (
            pipeline.clone(),
            prepared.clone(),
            variables.clone(),
            sub.headers(),
        );
        tokio::spawn(async move {
            pipeline
                .run_prepared(&prepared, &variables, headers, Value::Object(Map::new()))
                .await
        })
    };
    let initial = pipeline
        .run_prepared(
            &deferral.initial,
            variables,
            sub.headers(),
            Value::Object(Map::new()),
        )
        .await;
    sink.result(&crate::defer::with_has_next(&initial.body, true))
        .await;
    let Ok(whole) = whole.await else {
        sink.error(vec![GraphQLError::with_code(
            "Internal server error",
            codes::INTERNAL,
        )])
        .await;
        return;
    };
    let body: Value = serde_json::from_slice(&whole.body).unwrap_or(Value::Null);
    let data = body.get("data").unwrap_or(&Value::Null);
    let payload =
        crate::defer::subsequent_payload(&deferral.fragments, data, &whole.errors, &initial.errors);
    sink.result(&payload).await;
    sink.finish().await;
}
