//! The Smart Expense Tracker federation router: loads a Federation v2 supergraph,
//! plans operations with `hive-router-query-planner`, executes the plans against
//! the subgraphs over HTTP and serves GraphQL on `/graphql`.

// GraphQL errors travel by value on cold paths (rejections); boxing them would only
// add noise.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod coerce;
pub mod compose;
pub mod config;
pub mod defer;
pub mod edge;
pub mod error;
pub mod execute;
pub mod health;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod project;
pub mod rest;
pub mod schema;
pub mod server;
pub mod state;
pub mod stream;
pub mod subgraph;
pub mod subscription;
pub mod supergraph;
pub mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;
use pipeline::{Pipeline, PipelineOptions};
pub use server::app;
use state::AppState;
use subgraph::{Endpoint, SubgraphClient};
use supergraph::Supergraph;

/// Builds the shared state from a configuration (loads and checks the supergraph).
pub async fn build_state(config: Config) -> anyhow::Result<Arc<AppState>> {
    let supergraph = Arc::new(Supergraph::from_file(&config.supergraph)?);
    build_state_with(config, supergraph).await
}

pub async fn build_state_with(
    config: Config,
    supergraph: Arc<Supergraph>,
) -> anyhow::Result<Arc<AppState>> {
    let mut endpoints = HashMap::new();
    for (name, url) in &supergraph.subgraphs {
        let over = config.subgraphs.get(name);
        let url = over
            .and_then(|o| o.url.clone())
            .unwrap_or_else(|| url.clone());
        let timeout = over
            .and_then(|o| o.timeout_ms)
            .unwrap_or(config.subgraph_timeout_ms);
        endpoints.insert(
            name.clone(),
            Endpoint {
                url,
                timeout: Duration::from_millis(timeout),
            },
        );
    }
    let client = Arc::new(
        SubgraphClient::new(endpoints, config.dedupe_requests)
            .with_max_response_bytes(config.max_subgraph_response_bytes),
    );
    let mut pipeline = Pipeline::new(
        supergraph,
        client,
        PipelineOptions {
            limits: config.limits.clone(),
            introspection: config.introspection,
            plan_cache_size: config.plan_cache_size,
            parser_token_limit: config.limits.max_tokens,
            planning_timeout: Duration::from_secs(10),
        },
    );
    let metrics = Arc::new(metrics::Metrics::new());
    pipeline.observer = Some(metrics.clone());
    let auth = auth::Authenticator::from_config(&config.auth).await?;
    let extras = state::Extras::from_config(&config)?;
    metrics.allow_operation_names(
        extras
            .safelisted_operation_names()
            .iter()
            .map(String::as_str),
    );
    let state = Arc::new(AppState {
        pipeline: Arc::new(pipeline),
        config,
        auth,
        metrics,
        extras,
    });
    // Plan the REST shim's operations now, on a blocking thread: no REST call waits
    // for planning, and no async worker plans.
    let pipeline = state.pipeline.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let ops = rest::ops::all();
        let planned = ops
            .iter()
            .filter(|op| pipeline.prepare(op, None).is_ok())
            .count();
        tracing::info!(
            planned,
            operations = ops.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "REST operations planned"
        );
    });
    // Forget idle rate-limit buckets so memory does not grow with distinct clients.
    let weak = Arc::downgrade(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { break };
            state.extras.prune();
        }
    });
    // Keep the subgraph status shown by `/health` fresh.
    let weak = Arc::downgrade(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { break };
            let results = health::probe_subgraphs(&state).await;
            *state.extras.last_probe.write() = Some(results);
        }
    });
    Ok(state)
}

/// Serves the router on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(config).await?;
    serve(state, listener, shutdown).await
}

pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = server::app(state);
    tracing::info!(addr = %listener.local_addr()?, "router listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
