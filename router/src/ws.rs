//! Subscriptions (and queries, mutations) over websockets: clients speak
//! graphql-transport-ws or the legacy graphql-ws on `/graphql`; auth comes from the
//! `connection_init` payload. The upstream side is [`crate::subscription`]; this module
//! is the client protocol only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::coerce::coerce_variables;
use crate::error::{GraphQLError, codes};
use crate::pipeline::{GraphQLRequest, Prepared};
use crate::state::AppState;
use crate::subscription::{EventSink, KEEPALIVE, Subscriber};

const INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`
    TransportWs,
    /// legacy `graphql-ws` (subscriptions-transport-ws)
    Legacy,
}

enum Out {
    /// A message written as JSON text.
    Text(String),
    Close(u16, &'static str),
}

struct Session {
    sub: Subscriber,
    protocol: Protocol,
    out: mpsc::Sender<Out>,
    /// Signalled when the outgoing queue is full: the client does not read.
    overflow: Arc<tokio::sync::Notify>,
}

impl Session {
    /// Queues a message for the client, waiting while the queue is full; a queue that
    /// stays full for the write timeout (the client does not read) ends the connection.
    async fn push(&self, out: Out) {
        let timeout = Duration::from_millis(self.sub.state.config.websocket.write_timeout_ms);
        if let Err(mpsc::error::SendTimeoutError::Timeout(_)) =
            self.out.send_timeout(out, timeout).await
        {
            self.overflow.notify_one();
        }
    }

    async fn send(&self, v: Value) {
        self.push(Out::Text(v.to_string())).await;
    }

    /// A `next` (`data` in the legacy protocol) message carrying `body`, a complete
    /// GraphQL response the pipeline wrote.
    async fn send_next(&self, id: &str, body: &[u8]) {
        let kind = if self.protocol == Protocol::TransportWs {
            "next"
        } else {
            "data"
        };
        let id = Value::from(id);
        let payload = String::from_utf8_lossy(body);
        let text = format!(r#"{{"id":{id},"type":"{kind}","payload":{payload}}}"#);
        self.push(Out::Text(text)).await;
    }

    async fn send_error(&self, id: &str, errors: Vec<GraphQLError>) {
        let payload = match self.protocol {
            Protocol::TransportWs => serde_json::to_value(&errors).unwrap_or(Value::Null),
            Protocol::Legacy => errors
                .first()
                .and_then(|e| serde_json::to_value(e).ok())
                .unwrap_or(Value::Null),
        };
        self.send(json!({"id": id, "type": "error", "payload": payload}))
            .await;
    }

    async fn send_complete(&self, id: &str) {
        self.send(json!({"id": id, "type": "complete"})).await;
    }
}

/// The events of one operation of a websocket session, under its id.
struct WsSink {
    session: Arc<Session>,
    id: String,
}

impl EventSink for WsSink {
    fn next<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, ()> {
        self.session.send_next(&self.id, body).boxed()
    }
    fn error(&self, errors: Vec<GraphQLError>) -> BoxFuture<'_, ()> {
        self.session.send_error(&self.id, errors).boxed()
    }
    fn complete(&self) -> BoxFuture<'_, ()> {
        self.session.send_complete(&self.id).boxed()
    }
}

/// The token from a `connection_init` payload, as an Authorization header value.
fn token_from_init(payload: &Value) -> Option<String> {
    let raw = ["Authorization", "authorization", "token", "authToken"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))?;
    Some(
        if raw.starts_with("Bearer ") || raw.starts_with("bearer ") {
            raw.to_owned()
        } else {
            format!("Bearer {raw}")
        },
    )
}

/// One message from the client.
enum Incoming {
    Message(Value),
    /// Not JSON, or not a JSON object with a string `type`.
    Invalid,
    Closed,
}

async fn next_message(stream: &mut futures::stream::SplitStream<WebSocket>) -> Incoming {
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(t) => {
                // A subscription's variables keep their digits, as over HTTP.
                let text = contract::json::keep_exact_numbers(t.as_bytes());
                return match serde_json::from_slice::<Value>(&text) {
                    Ok(v) if v.get("type").is_some_and(Value::is_string) => Incoming::Message(v),
                    _ => Incoming::Invalid,
                };
            }
            Message::Binary(_) => return Incoming::Invalid,
            Message::Close(_) => return Incoming::Closed,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    Incoming::Closed
}

/// Close codes (graphql-transport-ws, and the same for the legacy protocol).
mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

/// How a connection ends.
enum End {
    /// The client left, or asked to.
    Left,
    Close(u16, &'static str),
    /// The client does not read: the socket is dropped without waiting for it.
    Overflow,
}

pub async fn client_session(
    state: Arc<AppState>,
    socket: WebSocket,
    protocol: Protocol,
    ip: std::net::IpAddr,
) {
    let (mut sink, mut stream) = socket.split();
    let queue = state.config.websocket.outgoing_queue.max(1);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(queue);
    let writer = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Out::Text(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            }
        }
    });
    let finish = async |out_tx: mpsc::Sender<Out>, end: End| {
        match end {
            End::Overflow => writer.abort(),
            End::Close(code, reason) => {
                if out_tx.try_send(Out::Close(code, reason)).is_err() {
                    writer.abort();
                }
            }
            End::Left => {}
        }
        drop(out_tx);
        let _ = writer.await;
    };
    let init = match tokio::time::timeout(INIT_TIMEOUT, next_message(&mut stream)).await {
        Ok(Incoming::Message(v)) => v,
        Ok(Incoming::Closed) => return finish(out_tx, End::Left).await,
        Ok(Incoming::Invalid) => {
            return finish(
                out_tx,
                End::Close(close::BAD_REQUEST, "Invalid message received"),
            )
            .await;
        }
        Err(_) => {
            return finish(
                out_tx,
                End::Close(close::INIT_TIMEOUT, "Connection initialisation timeout"),
            )
            .await;
        }
    };
    match init.get("type").and_then(Value::as_str) {
        Some("connection_init") => {}
        Some("subscribe" | "start") => {
            return finish(out_tx, End::Close(close::UNAUTHORIZED, "Unauthorized")).await;
        }
        _ => {
            return finish(
                out_tx,
                End::Close(close::BAD_REQUEST, "Expected connection_init"),
            )
            .await;
        }
    }
    let payload = init.get("payload").cloned().unwrap_or(Value::Null);
    let auth = token_from_init(&payload);
    let claims = match crate::edge::authenticate(&state, auth.as_deref()) {
        Ok(c) => c,
        Err(_) => return finish(out_tx, End::Close(close::FORBIDDEN, "Forbidden")).await,
    };
    // The connection lives as long as its token: at `exp` it is closed with 4403 so
    // that the client comes back with a fresh one.
    let expires = claims.as_ref().map(|c| {
        let left = c.exp.saturating_sub(contract::auth::now_secs());
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let overflow = Arc::new(tokio::sync::Notify::new());
    let session = Arc::new(Session {
        sub: Subscriber::new(
            state,
            auth,
            crate::edge::Caller { claims, ip },
            uuid::Uuid::now_v7().to_string(),
        ),
        protocol,
        out: out_tx.clone(),
        overflow: overflow.clone(),
    });
    session.send(json!({"type": "connection_ack"})).await;
    let max_operations = session.sub.state.config.websocket.max_operations;
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let expiry = async {
        match expires {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let end = loop {
        tokio::select! {
            incoming = next_message(&mut stream) => {
                let msg = match incoming {
                    Incoming::Message(m) => m,
                    Incoming::Closed => break End::Left,
                    Incoming::Invalid => break End::Close(close::BAD_REQUEST, "Invalid message received"),
                };
                let id = msg.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                match msg.get("type").and_then(Value::as_str).unwrap_or_default() {
                    "subscribe" | "start" => {
                        if id.is_empty() {
                            break End::Close(close::BAD_REQUEST, "Invalid message received: subscribe needs an id");
                        }
                        running.retain(|_, h| !h.is_finished());
                        if running.contains_key(&id) {
                            if protocol == Protocol::TransportWs {
                                break End::Close(close::DUPLICATE_ID, "Subscriber for id already exists");
                            }
                            continue;
                        }
                        if running.len() >= max_operations {
                            session.send_error(&id, vec![GraphQLError::with_code(
                                format!("At most {max_operations} operations may run at once on one connection."),
                                codes::TOO_MANY_OPERATIONS,
                            ).with_extension("max", max_operations)]).await;
                            continue;
                        }
                        let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                        let s = session.clone();
                        running.insert(id.clone(), tokio::spawn(run_operation(s, id, payload)));
                    }
                    "complete" | "stop" => {
                        if let Some(h) = running.remove(&id) {
                            h.abort();
                        }
                    }
                    "ping" => session.send(json!({"type": "pong"})).await,
                    "pong" => {}
                    "connection_init" => break End::Close(close::TOO_MANY_INITS, "Too many initialisation requests"),
                    "connection_terminate" => break End::Left,
                    _ => break End::Close(close::BAD_REQUEST, "Invalid message received: unknown type"),
                }
            }
            _ = keepalive.tick() => {
                let ka = if protocol == Protocol::TransportWs { json!({"type": "ping"}) } else { json!({"type": "ka"}) };
                session.send(ka).await;
            }
            _ = overflow.notified() => break End::Overflow,
            _ = &mut expiry => {
                if protocol == Protocol::Legacy {
                    session.send(json!({"type": "connection_error", "payload": {"message": "token expired"}})).await;
                }
                break End::Close(close::FORBIDDEN, "Forbidden: token expired");
            }
        }
    };
    for (_, h) in running {
        h.abort();
    }
    session.sub.close_upstreams().await;
    drop(session);
    if matches!(end, End::Overflow) {
        tracing::info!("websocket client does not read; disconnected");
    }
    finish(out_tx, end).await;
}

async fn run_operation(session: Arc<Session>, id: String, payload: Value) {
    let mut request: GraphQLRequest = match serde_json::from_value(payload) {
        Ok(r) => r,
        Err(e) => {
            session
                .send_error(
                    &id,
                    vec![GraphQLError::with_code(
                        format!("Invalid payload: {e}"),
                        codes::BAD_REQUEST,
                    )],
                )
                .await;
            return;
        }
    };
    // The same policy as every other door: rate limit, persisted queries, safelist.
    if let Err(refusal) = crate::edge::admit(&session.sub.state, &session.sub.caller, &mut request)
    {
        session.send_error(&id, vec![refusal.error]).await;
        return;
    }
    let pipeline = &session.sub.state.pipeline;
    let query = request.query.clone().unwrap_or_default();
    let prepared: Arc<Prepared> = match pipeline
        .prepare_off_thread(&query, request.operation_name.as_deref())
        .await
    {
        Ok(p) => p,
        Err(e) => {
            session.send_error(&id, e.errors).await;
            return;
        }
    };
    let vars = match &request.variables {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };
    let (defs, _) = prepared.operation();
    let variables = match coerce_variables(defs, vars, &pipeline.supergraph.schema) {
        Ok(v) => v,
        Err(errors) => {
            session.send_error(&id, errors).await;
            return;
        }
    };
    let sink = WsSink { session, id };
    crate::subscription::run_prepared(&sink.session.sub, &sink, &prepared, &variables).await;
}
