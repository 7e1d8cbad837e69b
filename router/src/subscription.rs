//! Subscriptions through the router, whatever the client transport: the router opens
//! the subscription on the owning subgraph over graphql-transport-ws (one shared
//! upstream socket per subgraph per [`Subscriber`]) and, for every event, resolves the
//! rest of the selection from the other subgraphs. The client transports
//! (websockets in [`crate::ws`], SSE and multipart HTTP in [`crate::stream`]) are thin
//! adapters: each gives an [`EventSink`] that frames what it is handed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use hive_router_query_planner::planner::plan_nodes::{FetchNode, PlanNode};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::edge::Caller;
use crate::error::{GraphQLError, codes};
use crate::pipeline::{OpKind, Prepared};
use crate::state::AppState;

pub(crate) const KEEPALIVE: Duration = Duration::from_secs(12);

/// Events of one upstream subscription waiting for the router to forward them; an
/// operation that falls this far behind is resubscribed (from its cursor when it has
/// one) instead of queueing without end.
const EVENTS_PER_SUBSCRIPTION: usize = 64;
/// Messages waiting to be written to one upstream socket.
const UPSTREAM_QUEUE: usize = 1024;
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Where the events of one client operation go: each transport frames them its own way.
pub trait EventSink: Send + Sync {
    /// One complete GraphQL response (`{"data":...,"errors":[...]}`) the pipeline wrote.
    fn next<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, ()>;
    /// The operation failed before or instead of producing a result; nothing follows.
    fn error(&self, errors: Vec<GraphQLError>) -> BoxFuture<'_, ()>;
    /// The operation ended normally; nothing follows.
    fn complete(&self) -> BoxFuture<'_, ()>;
}

/// A client as subscriptions see it: its credentials, its request id and its upstream
/// sockets (one per subgraph, shared by all its operations).
pub struct Subscriber {
    pub state: Arc<AppState>,
    /// The `Authorization` header value forwarded to the subgraphs.
    pub auth: Option<String>,
    pub caller: Caller,
    pub request_id: String,
    upstreams: tokio::sync::Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Subscriber {
    pub fn new(
        state: Arc<AppState>,
        auth: Option<String>,
        caller: Caller,
        request_id: String,
    ) -> Self {
        Self {
            state,
            auth,
            caller,
            request_id,
            upstreams: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Closes the upstream sockets (their operations read it as a drop).
    pub async fn close_upstreams(&self) {
        self.upstreams.lock().await.clear();
    }

    pub fn headers(&self) -> crate::subgraph::ForwardHeaders {
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
/// Runs an admitted, prepared operation for one client and hands its results to
/// `sink`: a query or mutation once, a subscription for every event until it ends or
/// this future is dropped (which unsubscribes upstream).
pub async fn run_prepared(
    sub: &Subscriber,
    sink: &dyn EventSink,
    prepared: &Prepared,
    variables: &Map<String, Value>,
) {
    let pipeline = &sub.state.pipeline;
    if prepared.kind != OpKind::Subscription {
        let done = pipeline
            .run_prepared(
                prepared,
                variables,
                sub.headers(),
                Value::Object(Map::new()),
            )
            .await;
        sink.next(&done.body).await;
        sink.complete().await;
        return;
    }
    let Some(primary) = prepared
        .plan
        .as_ref()
        .and_then(|p| p.node.as_ref())
        .and_then(primary_fetch)
    else {
        sink.error(vec![GraphQLError::with_code(
            "Subscription has no owning subgraph",
            codes::QUERY_PLANNING_FAILED,
        )])
        .await;
        return;
    };
    let upstream = match sub.upstream(&primary.service_name).await {
        Ok(u) => u,
        Err(UpError::Unauthenticated) => {
            sink.error(vec![GraphQLError::with_code(
                "Authentication required: sign in and connect again with the token.",
                codes::UNAUTHENTICATED,
            )])
            .await;
            return;
        }
        Err(UpError::Unavailable(reason)) => {
            sink.error(vec![
                GraphQLError::with_code(
                    format!(
                        "subgraph '{}' is unavailable: {reason}",
                        primary.service_name
                    ),
                    codes::SUBGRAPH_UNAVAILABLE,
                )
                .with_extension("serviceName", primary.service_name.as_str()),
            ])
            .await;
            return;
        }
    };
    let mut up_vars = crate::execute::variables_used(primary.variable_usages.as_ref(), variables);
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
                    .run_subscription_event(prepared, variables, sub.headers(), data, up_errors)
                    .await;
                sink.next(&done.body).await;
            }
            UpEvent::Error(payload) => {
                let errors = match payload {
                    Value::Array(list) => list.iter().map(GraphQLError::from_subgraph).collect(),
                    other => vec![GraphQLError::from_subgraph(&other)],
                };
                sink.error(errors).await;
                return;
            }
            UpEvent::Complete => {
                sink.complete().await;
                return;
            }
            UpEvent::Dropped => match resubscribe(sub, sink, primary, document, &up_vars).await {
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
    sub: &Subscriber,
    sink: &dyn EventSink,
    primary: &FetchNode,
    document: &str,
    variables: &Map<String, Value>,
) -> Option<(UpstreamGuard, mpsc::Receiver<UpEvent>)> {
    let mut delay = Duration::from_millis(100);
    let mut told = false;
    loop {
        tokio::time::sleep(delay).await;
        match sub.upstream(&primary.service_name).await {
            Ok(upstream) => {
                let (id, rx) = upstream.subscribe(document, variables.clone());
                return Some((UpstreamGuard { upstream, id }, rx));
            }
            Err(UpError::Unauthenticated) => {
                sink.error(vec![GraphQLError::with_code(
                    "Authentication required: sign in and connect again with the token.",
                    codes::UNAUTHENTICATED,
                )])
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
                    sink.next(&body).await;
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
