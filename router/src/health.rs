//! `/health`, `/ready` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::state::AppState;

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Liveness: always `ok` while the router serves; `services` is the last background
/// probe of the subgraphs (refreshed every 10 s, and by `/ready`).
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
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
            let up = client.probe(&name, std::time::Duration::from_secs(2)).await;
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

pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
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
