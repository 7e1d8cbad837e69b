//! Test harness: real subgraphs and a real router on 127.0.0.1:0, talking HTTP.
#![allow(dead_code)]

pub mod subgraphs;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::{ObjectType, Schema, SubscriptionType};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use router::Config;
use router::compose::{SubgraphSdl, compose_supergraph};
use router::supergraph::Supergraph;
use serde_json::Value;
use tokio::net::TcpListener;

/// A running subgraph: its URL and how many requests it served.
#[derive(Clone)]
pub struct RunningSubgraph {
    pub name: String,
    pub url: String,
    pub sdl: String,
    pub hits: Arc<AtomicUsize>,
    pub last_request_id: Arc<std::sync::Mutex<Option<String>>>,
    /// The bodies of the requests counted in `hits`, in arrival order.
    pub requests: Arc<std::sync::Mutex<Vec<Value>>>,
}

impl RunningSubgraph {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// How many representations each entity fetch (`_entities`) sent, in order.
    pub fn representations_sent(&self) -> Vec<usize> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|r| r["variables"]["representations"].as_array())
            .map(Vec::len)
            .collect()
    }
}

struct SubgraphState<Q, M, S> {
    schema: Schema<Q, M, S>,
    hits: Arc<AtomicUsize>,
    last_request_id: Arc<std::sync::Mutex<Option<String>>>,
    requests: Arc<std::sync::Mutex<Vec<Value>>>,
    delay_ms: u64,
}

async fn graphql_handler<Q, M, S>(
    State(state): State<Arc<SubgraphState<Q, M, S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    use axum::response::IntoResponse;
    // The router's health probe (`{__typename}`) is not a planned subgraph call.
    if body.as_ref() != br#"{"query":"{__typename}"}"# {
        state.hits.fetch_add(1, Ordering::SeqCst);
        *state.last_request_id.lock().expect("lock") = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
        state.requests.lock().expect("lock").push(parsed);
    }
    if state.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(state.delay_ms)).await;
    }
    let batch: async_graphql::BatchRequest = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut request = match batch {
        async_graphql::BatchRequest::Single(r) => r,
        async_graphql::BatchRequest::Batch(_) => {
            return (axum::http::StatusCode::BAD_REQUEST, "no batches").into_response();
        }
    };
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        request = request.data(subgraphs::users::Authorization(auth.to_owned()));
    }
    let response = state.schema.execute(request).await;
    axum::Json(response).into_response()
}

/// Serves an async-graphql schema at `/graphql` on an ephemeral port.
pub async fn serve_schema<Q, M, S>(
    name: &str,
    schema: Schema<Q, M, S>,
    delay_ms: u64,
) -> RunningSubgraph
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let sdl = schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    let hits = Arc::new(AtomicUsize::new(0));
    let last_request_id = Arc::new(std::sync::Mutex::new(None));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let state = Arc::new(SubgraphState {
        schema,
        hits: hits.clone(),
        last_request_id: last_request_id.clone(),
        requests: requests.clone(),
        delay_ms,
    });
    let app = axum::Router::new()
        .route("/graphql", post(graphql_handler::<Q, M, S>))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind subgraph");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("subgraph server");
    });
    RunningSubgraph {
        name: name.to_owned(),
        url: format!("http://{addr}/graphql"),
        sdl,
        hits,
        last_request_id,
        requests,
    }
}

pub struct Stack {
    pub router_url: String,
    pub subgraphs: HashMap<String, RunningSubgraph>,
    pub state: Arc<router::state::AppState>,
    pub supergraph_sdl: String,
}

impl Stack {
    pub fn hits(&self, name: &str) -> usize {
        self.subgraphs[name].hits()
    }

    pub async fn post(&self, body: Value) -> (u16, Value) {
        post_json(&self.router_url, body, &[]).await
    }

    pub fn total_hits(&self) -> usize {
        self.subgraphs.values().map(RunningSubgraph::hits).sum()
    }

    pub async fn query(&self, query: &str) -> Value {
        self.post(serde_json::json!({ "query": query })).await.1
    }
}

pub async fn post_json(url: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.post(url).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("router answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[derive(Default)]
pub struct StackOptions {
    /// Subgraphs whose URL in the supergraph points at a closed port.
    pub down: Vec<&'static str>,
    /// Per-subgraph artificial delay.
    pub delay_ms: HashMap<&'static str, u64>,
    /// Subgraphs whose URL in the supergraph is another server's (a test's own).
    pub urls: HashMap<&'static str, String>,
    pub config: Option<Config>,
}

/// Starts the four test subgraphs, composes them and starts the router.
pub async fn start_stack(options: StackOptions) -> Stack {
    let delay = |n: &str| options.delay_ms.get(n).copied().unwrap_or(0);
    let running = vec![
        serve_schema("users", subgraphs::users::schema(), delay("users")).await,
        serve_schema("products", subgraphs::products::schema(), delay("products")).await,
        serve_schema(
            "inventory",
            subgraphs::inventory::schema(),
            delay("inventory"),
        )
        .await,
        serve_schema("reviews", subgraphs::reviews::schema(), delay("reviews")).await,
    ];
    // A port that nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("http://127.0.0.1:{port}/graphql")
    };
    let sdls: Vec<SubgraphSdl> = running
        .iter()
        .map(|r| SubgraphSdl {
            name: r.name.clone(),
            url: if options.down.contains(&r.name.as_str()) {
                closed.clone()
            } else if let Some(url) = options.urls.get(r.name.as_str()) {
                url.clone()
            } else {
                r.url.clone()
            },
            sdl: r.sdl.clone(),
        })
        .collect();
    let supergraph_sdl = compose_supergraph(&sdls).expect("test subgraphs compose");
    let supergraph = Arc::new(Supergraph::parse(&supergraph_sdl).expect("supergraph loads"));
    start_router(
        supergraph,
        options.config.unwrap_or_default(),
        running,
        supergraph_sdl,
    )
    .await
}

pub async fn start_router(
    supergraph: Arc<Supergraph>,
    config: Config,
    running: Vec<RunningSubgraph>,
    supergraph_sdl: String,
) -> Stack {
    let state = router::build_state_with(config, supergraph)
        .await
        .expect("router state");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
    let addr = listener.local_addr().expect("addr");
    let serve_state = state.clone();
    tokio::spawn(async move {
        router::serve(serve_state, listener, std::future::pending())
            .await
            .expect("router serves");
    });
    Stack {
        router_url: format!("http://{addr}/graphql"),
        subgraphs: running.into_iter().map(|r| (r.name.clone(), r)).collect(),
        state,
        supergraph_sdl,
    }
}

/// The query plan of an operation, pretty-printed.
pub fn plan_of(stack: &Stack, query: &str) -> String {
    let prepared = stack
        .state
        .pipeline
        .prepare(query, None)
        .expect("operation prepares");
    match &prepared.plan {
        Some(plan) => format!("{plan}"),
        None => "<no plan>".to_owned(),
    }
}
