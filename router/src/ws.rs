//! Subscriptions through the router. Clients speak graphql-transport-ws or the
//! legacy graphql-ws on `/graphql`; the router opens the subscription on the owning
//! subgraph over graphql-transport-ws (one shared upstream socket per subgraph per
//! client connection) and, for every event, resolves the rest of the selection from
//! the other subgraphs. Auth comes from the `connection_init` payload.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use hive_router_query_planner::planner::plan_nodes::{FetchNode, PlanNode};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::coerce::coerce_variables;
use crate::error::{GraphQLError, codes};
use crate::pipeline::{GraphQLRequest, OpKind, Prepared};
use crate::state::AppState;

const KEEPALIVE: Duration = Duration::from_secs(12);
/// Events of one upstream subscription waiting for the router to forward them; an
/// operation that falls this far behind is resubscribed (from its cursor when it has
/// one) instead of queueing without end.
const EVENTS_PER_SUBSCRIPTION: usize = 64;
/// Messages waiting to be written to one upstream socket.
const UPSTREAM_QUEUE: usize = 1024;
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

/// Events from an upstream subscription.
enum UpEvent {
    Next(Value),
    Error(Value),
    Complete,
    Dropped,
}

struct Upstream {
    tx: mpsc::Sender<String>,
    subs: Arc<parking_lot::Mutex<HashMap<String, mpsc::Sender<UpEvent>>>>,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

/// Why an upstream socket could not be opened.
enum UpError {
    /// The subgraph refused the credentials (close code 4401 or 4403 at init).
    Unauthenticated,
    Unavailable(String),
}

impl From<String> for UpError {
    fn from(reason: String) -> Self {
        UpError::Unavailable(reason)
    }
}

impl Upstream {
    async fn connect(url: &str, auth: Option<&str>) -> Result<Arc<Self>, UpError> {
        let ws_url = if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            url.to_owned()
        };
        let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        if let Some(a) = auth.and_then(|a| HeaderValue::from_str(a).ok()) {
            request.headers_mut().insert(http::header::AUTHORIZATION, a);
        }
        let (socket, _) =
            tokio::time::timeout(INIT_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| "connection timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = socket.split();
        let mut payload = Map::new();
        if let Some(a) = auth {
            payload.insert("Authorization".into(), Value::String(a.to_owned()));
        }
        let init = json!({"type": "connection_init", "payload": payload}).to_string();
        sink.send(UpMessage::text(init))
            .await
            .map_err(|e| e.to_string())?;
        let acked = tokio::time::timeout(INIT_TIMEOUT, async {
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    UpMessage::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        match v.get("type").and_then(Value::as_str) {
                            Some("connection_ack") => return Ok(()),
                            Some("ping") => {
                                let _ = sink.send(UpMessage::text(r#"{"type":"pong"}"#)).await;
                            }
                            _ => {}
                        }
                    }
                    UpMessage::Close(Some(frame))
                        if matches!(u16::from(frame.code), 4401 | 4403) =>
                    {
                        return Err(UpError::Unauthenticated);
                    }
                    _ => {}
                }
            }
            Err(UpError::Unavailable(
                "subgraph did not acknowledge the connection".into(),
            ))
        })
        .await
        .unwrap_or_else(|_| {
            Err(UpError::Unavailable(
                "subgraph did not acknowledge the connection".into(),
            ))
        });
        acked?;
        let (tx, mut rx) = mpsc::channel::<String>(UPSTREAM_QUEUE);
        let subs: Arc<parking_lot::Mutex<HashMap<String, mpsc::Sender<UpEvent>>>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let task_subs = subs.clone();
        let task_alive = alive.clone();
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(KEEPALIVE);
            ping.tick().await;
            loop {
                tokio::select! {
                    out = rx.recv() => match out {
                        Some(text) => {
                            if sink.send(UpMessage::text(text)).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = sink.close().await;
                            break;
                        }
                    },
                    msg = stream.next() => match msg {
                        Some(Ok(UpMessage::Text(t))) => {
                            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                            let id = v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                            match v.get("type").and_then(Value::as_str) {
                                Some("next") => {
                                    let mut subs = task_subs.lock();
                                    let payload = v.get("payload").cloned().unwrap_or(Value::Null);
                                    if let Some(s) = subs.get(&id)
                                        && s.try_send(UpEvent::Next(payload)).is_err()
                                    {
                                        // Fell behind: its channel closes, and the
                                        // operation resubscribes.
                                        subs.remove(&id);
                                    }
                                }
                                Some("error") => {
                                    if let Some(s) = task_subs.lock().remove(&id) {
                                        let _ = s.try_send(UpEvent::Error(v.get("payload").cloned().unwrap_or(Value::Null)));
                                    }
                                }
                                Some("complete") => {
                                    if let Some(s) = task_subs.lock().remove(&id) {
                                        let _ = s.try_send(UpEvent::Complete);
                                    }
                                }
                                _ => {}
                            }
                            let is_ping = v.get("type").and_then(Value::as_str) == Some("ping");
                            if is_ping && sink.send(UpMessage::text(r#"{"type":"pong"}"#)).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(UpMessage::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                    _ = ping.tick() => {
                        if sink.send(UpMessage::text(r#"{"type":"ping"}"#)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            task_alive.store(false, Ordering::SeqCst);
            for (_, s) in task_subs.lock().drain() {
                // A full channel closes instead, which the operation reads as a drop too.
                let _ = s.try_send(UpEvent::Dropped);
            }
        });
        Ok(Arc::new(Self {
            tx,
            subs,
            next_id: AtomicU64::new(1),
            alive,
        }))
    }

    fn subscribe(
        &self,
        query: &str,
        variables: Map<String, Value>,
    ) -> (String, mpsc::Receiver<UpEvent>) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst).to_string();
        let (tx, rx) = mpsc::channel(EVENTS_PER_SUBSCRIPTION);
        self.subs.lock().insert(id.clone(), tx);
        let msg = json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}});
        if self.tx.try_send(msg.to_string()).is_err() {
            // The socket is gone or not writing: the receiver closes, read as a drop.
            self.subs.lock().remove(&id);
        }
        (id, rx)
    }

    /// Ends an upstream subscription; also one the router dropped for falling behind,
    /// which the subgraph still serves.
    fn unsubscribe(&self, id: &str) {
        self.subs.lock().remove(id);
        if self.alive.load(Ordering::SeqCst) {
            let _ = self
                .tx
                .try_send(json!({"id": id, "type": "complete"}).to_string());
        }
    }
}

struct Session {
    state: Arc<AppState>,
    protocol: Protocol,
    auth: Option<String>,
    caller: crate::edge::Caller,
    request_id: String,
    out: mpsc::Sender<Out>,
    /// Signalled when the outgoing queue is full: the client does not read.
    overflow: Arc<tokio::sync::Notify>,
    upstreams: tokio::sync::Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Session {
    /// Queues a message for the client, waiting while the queue is full; a queue that
    /// stays full for the write timeout (the client does not read) ends the connection.
    async fn push(&self, out: Out) {
        let timeout = Duration::from_millis(self.state.config.websocket.write_timeout_ms);
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

    fn headers(&self) -> crate::subgraph::ForwardHeaders {
        let mut h = Vec::new();
        if let Some(a) = self
            .auth
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            h.push((http::header::AUTHORIZATION, a));
        }
        if let Ok(r) = HeaderValue::from_str(&self.request_id) {
            h.push((HeaderName::from_static("x-request-id"), r));
        }
        Arc::new(h)
    }

    async fn upstream(&self, subgraph: &str) -> Result<Arc<Upstream>, UpError> {
        let mut map = self.upstreams.lock().await;
        if let Some(u) = map.get(subgraph)
            && u.alive.load(Ordering::SeqCst)
        {
            return Ok(u.clone());
        }
        let url = self
            .state
            .pipeline
            .client
            .endpoint(subgraph)
            .map(|e| e.url.clone())
            .ok_or_else(|| UpError::Unavailable(format!("unknown subgraph '{subgraph}'")))?;
        let upstream = Upstream::connect(&url, self.auth.as_deref()).await?;
        map.insert(subgraph.to_owned(), upstream.clone());
        Ok(upstream)
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
        protocol,
        auth,
        caller: crate::edge::Caller { claims, ip },
        request_id: uuid::Uuid::now_v7().to_string(),
        out: out_tx.clone(),
        overflow: overflow.clone(),
        upstreams: tokio::sync::Mutex::new(HashMap::new()),
        state,
    });
    session.send(json!({"type": "connection_ack"})).await;
    let max_operations = session.state.config.websocket.max_operations;
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
    session.upstreams.lock().await.clear();
    drop(session);
    if matches!(end, End::Overflow) {
        tracing::info!("websocket client does not read; disconnected");
    }
    finish(out_tx, end).await;
}

/// Unsubscribes upstream when a client subscription ends for any reason.
struct UpstreamGuard {
    upstream: Arc<Upstream>,
    id: String,
}

impl Drop for UpstreamGuard {
    fn drop(&mut self) {
        self.upstream.unsubscribe(&self.id);
    }
}

fn primary_fetch(plan: &PlanNode) -> Option<&FetchNode> {
    match plan {
        PlanNode::Subscription(s) => Some(&s.primary),
        PlanNode::Sequence(s) => s.nodes.iter().find_map(primary_fetch),
        PlanNode::Parallel(p) => p.nodes.iter().find_map(primary_fetch),
        _ => None,
    }
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
    if let Err(refusal) = crate::edge::admit(&session.state, &session.caller, &mut request) {
        session.send_error(&id, vec![refusal.error]).await;
        return;
    }
    let pipeline = &session.state.pipeline;
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
    if prepared.kind != OpKind::Subscription {
        let done = pipeline
            .run_prepared(
                &prepared,
                &variables,
                session.headers(),
                Value::Object(Map::new()),
            )
            .await;
        session.send_next(&id, &done.body).await;
        session.send_complete(&id).await;
        return;
    }
    let Some(primary) = prepared
        .plan
        .as_ref()
        .and_then(|p| p.node.as_ref())
        .and_then(primary_fetch)
    else {
        session
            .send_error(
                &id,
                vec![GraphQLError::with_code(
                    "Subscription has no owning subgraph",
                    codes::QUERY_PLANNING_FAILED,
                )],
            )
            .await;
        return;
    };
    let upstream = match session.upstream(&primary.service_name).await {
        Ok(u) => u,
        Err(UpError::Unauthenticated) => {
            session
                .send_error(
                    &id,
                    vec![GraphQLError::with_code(
                        "Authentication required: sign in and connect again with the token.",
                        codes::UNAUTHENTICATED,
                    )],
                )
                .await;
            return;
        }
        Err(UpError::Unavailable(reason)) => {
            session
                .send_error(
                    &id,
                    vec![
                        GraphQLError::with_code(
                            format!(
                                "subgraph '{}' is unavailable: {reason}",
                                primary.service_name
                            ),
                            codes::SUBGRAPH_UNAVAILABLE,
                        )
                        .with_extension("serviceName", primary.service_name.as_str()),
                    ],
                )
                .await;
            return;
        }
    };
    let mut up_vars = crate::execute::variables_used(primary.variable_usages.as_ref(), &variables);
    let resume = resumable(
        &pipeline.supergraph,
        &primary.operation.document_str,
        &mut up_vars,
    );
    let document = resume
        .as_ref()
        .map_or(primary.operation.document_str.as_str(), |r| {
            r.document.as_str()
        });
    let (up_id, mut events) = upstream.subscribe(document, up_vars.clone());
    let mut _guard = UpstreamGuard {
        upstream,
        id: up_id,
    };
    loop {
        // A channel closed without a last event: the upstream went away, or this
        // operation fell behind; either way it resubscribes.
        match events.recv().await.unwrap_or(UpEvent::Dropped) {
            UpEvent::Next(payload) => {
                let mut data = payload.get("data").cloned().unwrap_or(Value::Null);
                if let Some(r) = &resume
                    && let Some(event) = data.get_mut(&r.key).and_then(Value::as_object_mut)
                    && let Some(Value::String(cursor)) = event.remove(RESUME_ID)
                {
                    // The next resubscription starts after this event.
                    up_vars.insert(r.variable.clone(), Value::String(cursor));
                }
                let up_errors: Vec<GraphQLError> = payload
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(GraphQLError::from_subgraph).collect())
                    .unwrap_or_default();
                let done = pipeline
                    .run_subscription_event(
                        &prepared,
                        &variables,
                        session.headers(),
                        data,
                        up_errors,
                    )
                    .await;
                session.send_next(&id, &done.body).await;
            }
            UpEvent::Error(payload) => {
                let errors = match payload {
                    Value::Array(list) => list.iter().map(GraphQLError::from_subgraph).collect(),
                    other => vec![GraphQLError::from_subgraph(&other)],
                };
                session.send_error(&id, errors).await;
                return;
            }
            UpEvent::Complete => {
                session.send_complete(&id).await;
                return;
            }
            UpEvent::Dropped => match resubscribe(&session, &id, primary, document, &up_vars).await
            {
                Some((guard, rx)) => {
                    tracing::info!(subgraph = %primary.service_name, "upstream subscription resumed");
                    _guard = guard;
                    events = rx;
                }
                None => return,
            },
        }
    }
}

/// Longest wait between two attempts to reach a subgraph that dropped.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// After an upstream socket dropped: reconnects and subscribes again, with backoff, for
/// as long as the client stays (this task ends with the client's operation). After the
/// first failed attempt the client gets one non-fatal `next` whose `errors` say the
/// subscription is degraded; the subscription itself goes on. `None`: the subgraph
/// refused the credentials (the client was told `UNAUTHENTICATED`, and the operation
/// ends).
async fn resubscribe(
    session: &Session,
    client_id: &str,
    primary: &FetchNode,
    document: &str,
    variables: &Map<String, Value>,
) -> Option<(UpstreamGuard, mpsc::Receiver<UpEvent>)> {
    let mut delay = Duration::from_millis(100);
    let mut told = false;
    loop {
        tokio::time::sleep(delay).await;
        match session.upstream(&primary.service_name).await {
            Ok(upstream) => {
                let (id, rx) = upstream.subscribe(document, variables.clone());
                return Some((UpstreamGuard { upstream, id }, rx));
            }
            Err(UpError::Unauthenticated) => {
                session
                    .send_error(
                        client_id,
                        vec![GraphQLError::with_code(
                            "Authentication required: sign in and connect again with the token.",
                            codes::UNAUTHENTICATED,
                        )],
                    )
                    .await;
                return None;
            }
            Err(UpError::Unavailable(reason)) => {
                if !told {
                    told = true;
                    let error = GraphQLError::with_code(
                        format!(
                            "the connection to subgraph '{}' was lost ({reason}); retrying, events will resume",
                            primary.service_name
                        ),
                        codes::SUBGRAPH_UNAVAILABLE,
                    )
                    .with_extension("serviceName", primary.service_name.as_str())
                    .with_extension("degraded", true);
                    let body = crate::pipeline::response_body(None, &[error]);
                    session.send_next(client_id, &body).await;
                }
                delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
            }
        }
    }
}

/// The response key under which a resumable subscription's events carry their id.
const RESUME_ID: &str = "__routerResumeId";
/// The variable the router passes `after` in when the client gave none, or a literal.
const RESUME_AFTER: &str = "__routerResumeAfter";

/// A subscription the router resumes after an upstream drop from the last event it
/// forwarded: its root field takes `after: ID` and its events have an `id` (as
/// `budgetAlerts` and `notificationAdded` do). The upstream document asks for that id
/// under the router's own key and passes `after` in `variable`.
struct Resumable {
    document: String,
    /// The root field's response key.
    key: String,
    variable: String,
}

/// The resumable form of an upstream subscription `document`, or `None` when its root
/// field cannot resume; sets the `after` variable's first value in `variables`.
fn resumable(
    supergraph: &crate::supergraph::Supergraph,
    document: &str,
    variables: &mut Map<String, Value>,
) -> Option<Resumable> {
    use graphql_tools::parser::query as q;
    let schema = &supergraph.schema;
    let root_type = schema.subscription_type.as_deref()?;
    let mut doc = graphql_tools::parser::parse_query::<String>(document).ok()?;
    let sub = doc.definitions.iter_mut().find_map(|d| match d {
        q::Definition::Operation(q::OperationDefinition::Subscription(s)) => Some(s),
        _ => None,
    })?;
    let [q::Selection::Field(root)] = sub.selection_set.items.as_mut_slice() else {
        return None;
    };
    let event_type = crate::schema::named_type(schema.field_type(root_type, &root.name)?);
    schema.field_type(event_type, "id")?;
    if !takes_after(&supergraph.api_schema, root_type, &root.name) {
        return None;
    }
    let variable = match root.arguments.iter().find(|(n, _)| n == "after") {
        Some((_, q::Value::Variable(v))) => v.clone(),
        other => {
            if let Some((_, q::Value::String(text))) = other {
                variables.insert(RESUME_AFTER.to_owned(), Value::String(text.clone()));
            }
            root.arguments.retain(|(n, _)| n != "after");
            root.arguments.push((
                "after".to_owned(),
                q::Value::Variable(RESUME_AFTER.to_owned()),
            ));
            sub.variable_definitions.push(q::VariableDefinition {
                position: sub.position,
                name: RESUME_AFTER.to_owned(),
                var_type: q::Type::NamedType("ID".to_owned()),
                default_value: None,
            });
            RESUME_AFTER.to_owned()
        }
    };
    root.selection_set.items.push(q::Selection::Field(q::Field {
        position: root.position,
        alias: Some(RESUME_ID.to_owned()),
        name: "id".to_owned(),
        arguments: Vec::new(),
        directives: Vec::new(),
        selection_set: q::SelectionSet {
            span: (root.position, root.position),
            items: Vec::new(),
        },
    }));
    let key = root.alias.clone().unwrap_or_else(|| root.name.clone());
    // The printer writes variable definitions only for a named operation.
    sub.name.get_or_insert_with(|| "RouterResumable".to_owned());
    Some(Resumable {
        document: doc.to_string(),
        key,
        variable,
    })
}

/// True when `field` of `type_name` in the API schema takes an `after: ID` argument.
fn takes_after(
    api: &graphql_tools::static_graphql::schema::Document,
    type_name: &str,
    field: &str,
) -> bool {
    use graphql_tools::static_graphql::schema::{Definition, Type, TypeDefinition};
    api.definitions.iter().any(|d| match d {
        Definition::TypeDefinition(TypeDefinition::Object(o)) if o.name == type_name => {
            o.fields.iter().any(|f| {
                f.name == field
                    && f.arguments.iter().any(|a| {
                        a.name == "after"
                            && matches!(&a.value_type, Type::NamedType(t) if t == "ID")
                    })
            })
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Reproducer of a graphql-tools 0.5.12 printer gap the resumption works around:
    /// an anonymous operation is printed without its variable definitions, so a
    /// subgraph answers `Variable "$a" is not defined`. `resumable` names the operation.
    #[test]
    fn the_printer_drops_the_variables_of_an_anonymous_operation() {
        let anonymous =
            graphql_tools::parser::parse_query::<String>("subscription($a: ID) { f(a: $a) }")
                .unwrap()
                .to_string();
        assert!(!anonymous.contains("$a: ID"), "fixed upstream: {anonymous}");
        let named =
            graphql_tools::parser::parse_query::<String>("subscription S($a: ID) { f(a: $a) }")
                .unwrap()
                .to_string();
        assert!(named.contains("$a: ID"), "{named}");
    }
}
