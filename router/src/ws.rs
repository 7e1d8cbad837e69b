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
    tx: mpsc::UnboundedSender<String>,
    subs: Arc<parking_lot::Mutex<HashMap<String, mpsc::UnboundedSender<UpEvent>>>>,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl Upstream {
    async fn connect(url: &str, auth: Option<&str>) -> Result<Arc<Self>, String> {
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
                if let UpMessage::Text(t) = msg {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v.get("type").and_then(Value::as_str) {
                        Some("connection_ack") => return true,
                        Some("ping") => {
                            let _ = sink.send(UpMessage::text(r#"{"type":"pong"}"#)).await;
                        }
                        _ => {}
                    }
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !acked {
            return Err("subgraph did not acknowledge the connection".into());
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let subs: Arc<parking_lot::Mutex<HashMap<String, mpsc::UnboundedSender<UpEvent>>>> =
            Arc::default();
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
                                    if let Some(s) = task_subs.lock().get(&id) {
                                        let _ = s.send(UpEvent::Next(v.get("payload").cloned().unwrap_or(Value::Null)));
                                    }
                                }
                                Some("error") => {
                                    if let Some(s) = task_subs.lock().remove(&id) {
                                        let _ = s.send(UpEvent::Error(v.get("payload").cloned().unwrap_or(Value::Null)));
                                    }
                                }
                                Some("complete") => {
                                    if let Some(s) = task_subs.lock().remove(&id) {
                                        let _ = s.send(UpEvent::Complete);
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
                let _ = s.send(UpEvent::Dropped);
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
    ) -> (String, mpsc::UnboundedReceiver<UpEvent>) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst).to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        self.subs.lock().insert(id.clone(), tx);
        let msg = json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}});
        if self.tx.send(msg.to_string()).is_err()
            && let Some(s) = self.subs.lock().remove(&id)
        {
            let _ = s.send(UpEvent::Dropped);
        }
        (id, rx)
    }

    fn unsubscribe(&self, id: &str) {
        if self.subs.lock().remove(id).is_some() {
            let _ = self
                .tx
                .send(json!({"id": id, "type": "complete"}).to_string());
        }
    }
}

struct Session {
    state: Arc<AppState>,
    protocol: Protocol,
    auth: Option<String>,
    request_id: String,
    out: mpsc::UnboundedSender<Out>,
    upstreams: tokio::sync::Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Session {
    fn send(&self, v: Value) {
        let _ = self.out.send(Out::Text(v.to_string()));
    }

    /// A `next` (`data` in the legacy protocol) message carrying `body`, a complete
    /// GraphQL response the pipeline wrote.
    fn send_next(&self, id: &str, body: &[u8]) {
        let kind = if self.protocol == Protocol::TransportWs {
            "next"
        } else {
            "data"
        };
        let id = Value::from(id);
        let payload = String::from_utf8_lossy(body);
        let text = format!(r#"{{"id":{id},"type":"{kind}","payload":{payload}}}"#);
        let _ = self.out.send(Out::Text(text));
    }

    fn send_error(&self, id: &str, errors: Vec<GraphQLError>) {
        let payload = match self.protocol {
            Protocol::TransportWs => serde_json::to_value(&errors).unwrap_or(Value::Null),
            Protocol::Legacy => errors
                .first()
                .and_then(|e| serde_json::to_value(e).ok())
                .unwrap_or(Value::Null),
        };
        self.send(json!({"id": id, "type": "error", "payload": payload}));
    }

    fn send_complete(&self, id: &str) {
        self.send(json!({"id": id, "type": "complete"}));
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

    async fn upstream(&self, subgraph: &str) -> Result<Arc<Upstream>, String> {
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
            .ok_or_else(|| format!("unknown subgraph '{subgraph}'"))?;
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

async fn next_text(stream: &mut futures::stream::SplitStream<WebSocket>) -> Option<Value> {
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok().or(Some(Value::Null)),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

pub async fn client_session(state: Arc<AppState>, socket: WebSocket, protocol: Protocol) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
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
    let init = match tokio::time::timeout(INIT_TIMEOUT, next_text(&mut stream)).await {
        Ok(Some(v)) if v.get("type").and_then(Value::as_str) == Some("connection_init") => v,
        Ok(_) => {
            let _ = out_tx.send(Out::Close(4400, "Expected connection_init"));
            drop(out_tx);
            let _ = writer.await;
            return;
        }
        Err(_) => {
            let _ = out_tx.send(Out::Close(4408, "Connection initialisation timeout"));
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };
    let payload = init.get("payload").cloned().unwrap_or(Value::Null);
    let auth = token_from_init(&payload);
    if state.auth.verify_header(auth.as_deref()).is_err() {
        state
            .metrics
            .errors
            .with_label_values(&[codes::UNAUTHENTICATED])
            .inc();
        let _ = out_tx.send(Out::Close(4403, "Forbidden"));
        drop(out_tx);
        let _ = writer.await;
        return;
    }
    let session = Arc::new(Session {
        state,
        protocol,
        auth,
        request_id: uuid::Uuid::now_v7().to_string(),
        out: out_tx,
        upstreams: tokio::sync::Mutex::new(HashMap::new()),
    });
    session.send(json!({"type": "connection_ack"}));
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    loop {
        tokio::select! {
            msg = next_text(&mut stream) => {
                let Some(msg) = msg else { break };
                let id = msg.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                match msg.get("type").and_then(Value::as_str) {
                    Some("subscribe") | Some("start") => {
                        if running.get(&id).is_some_and(|h| !h.is_finished()) {
                            if protocol == Protocol::TransportWs {
                                let _ = session.out.send(Out::Close(4409, "Subscriber for id already exists"));
                                break;
                            }
                            continue;
                        }
                        let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                        let s = session.clone();
                        running.insert(id.clone(), tokio::spawn(run_operation(s, id, payload)));
                    }
                    Some("complete") | Some("stop") => {
                        if let Some(h) = running.remove(&id) {
                            h.abort();
                        }
                    }
                    Some("ping") => session.send(json!({"type": "pong"})),
                    Some("connection_terminate") => break,
                    _ => {}
                }
            }
            _ = keepalive.tick() => {
                let ka = if protocol == Protocol::TransportWs { json!({"type": "ping"}) } else { json!({"type": "ka"}) };
                session.send(ka);
            }
        }
    }
    for (_, h) in running {
        h.abort();
    }
    session.upstreams.lock().await.clear();
    drop(session);
    let _ = writer.await;
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
    let request: GraphQLRequest = match serde_json::from_value(payload) {
        Ok(r) => r,
        Err(e) => {
            session.send_error(
                &id,
                vec![GraphQLError::with_code(
                    format!("Invalid payload: {e}"),
                    codes::BAD_REQUEST,
                )],
            );
            return;
        }
    };
    let pipeline = &session.state.pipeline;
    let query = request.query.clone().unwrap_or_default();
    let prepared: Arc<Prepared> = match pipeline
        .prepare_off_thread(&query, request.operation_name.as_deref())
        .await
    {
        Ok(p) => p,
        Err(e) => {
            session.send_error(&id, e.errors);
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
            session.send_error(&id, errors);
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
        session.send_next(&id, &done.body);
        session.send_complete(&id);
        return;
    }
    let Some(primary) = prepared
        .plan
        .as_ref()
        .and_then(|p| p.node.as_ref())
        .and_then(primary_fetch)
    else {
        session.send_error(
            &id,
            vec![GraphQLError::with_code(
                "Subscription has no owning subgraph",
                codes::QUERY_PLANNING_FAILED,
            )],
        );
        return;
    };
    let upstream = match session.upstream(&primary.service_name).await {
        Ok(u) => u,
        Err(reason) => {
            session.send_error(
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
            );
            return;
        }
    };
    let up_vars = crate::execute::variables_used(primary.variable_usages.as_ref(), &variables);
    let (up_id, mut events) = upstream.subscribe(&primary.operation.document_str, up_vars.clone());
    let mut _guard = UpstreamGuard {
        upstream,
        id: up_id,
    };
    while let Some(event) = events.recv().await {
        match event {
            UpEvent::Next(payload) => {
                let data = payload.get("data").cloned().unwrap_or(Value::Null);
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
                session.send_next(&id, &done.body);
            }
            UpEvent::Error(payload) => {
                let errors = match payload {
                    Value::Array(list) => list.iter().map(GraphQLError::from_subgraph).collect(),
                    other => vec![GraphQLError::from_subgraph(&other)],
                };
                session.send_error(&id, errors);
                return;
            }
            UpEvent::Complete => {
                session.send_complete(&id);
                return;
            }
            UpEvent::Dropped => {
                if let Some((guard, rx)) = resubscribe(&session, primary, &up_vars).await {
                    tracing::info!(subgraph = %primary.service_name, "upstream subscription resumed");
                    _guard = guard;
                    events = rx;
                    continue;
                }
                session.send_error(
                    &id,
                    vec![
                        GraphQLError::with_code(
                            format!(
                                "the connection to subgraph '{}' was lost",
                                primary.service_name
                            ),
                            codes::SUBGRAPH_UNAVAILABLE,
                        )
                        .with_extension("serviceName", primary.service_name.as_str()),
                    ],
                );
                return;
            }
        }
    }
}

/// After an upstream socket dropped: reconnects (with backoff) and subscribes again.
async fn resubscribe(
    session: &Session,
    primary: &FetchNode,
    variables: &Map<String, Value>,
) -> Option<(UpstreamGuard, mpsc::UnboundedReceiver<UpEvent>)> {
    for delay in [100u64, 400, 1_200] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if let Ok(upstream) = session.upstream(&primary.service_name).await {
            let (id, rx) = upstream.subscribe(&primary.operation.document_str, variables.clone());
            return Some((UpstreamGuard { upstream, id }, rx));
        }
    }
    None
}
