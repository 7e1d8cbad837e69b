//! Internal admin endpoint: `PUT /internal/rates` sets the rate of one currency
//! (`{"currency": "EUR", "perUsd": "0.92"}`: units of the currency per 1 USD). Like
//! every internal endpoint it accepts only the service credential.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::put;
use kit::config::Secret;
use kit::events::internal_answer as answer;
use kit::money::{Currency, Decimal};
use serde::Deserialize;

use crate::store::Store;

pub const RATES_PATH: &str = "/internal/rates";

struct AdminState {
    store: Store,
    token: Secret,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RateInput {
    currency: String,
    per_usd: String,
}

pub fn router(store: Store, token: Secret) -> Router {
    Router::new()
        .route(RATES_PATH, put(set_rate))
        .with_state(Arc::new(AdminState { store, token }))
}

async fn set_rate(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !kit::events::has_service_token(&headers, &state.token) {
        return kit::events::service_credential_required();
    }
    let input: RateInput = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return answer(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", &e.to_string()),
    };
    let Ok(currency) = Currency::parse(&input.currency) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
            "unknown currency",
        );
    };
    let per_usd = match Decimal::parse(&input.per_usd) {
        Ok(d) if d.mantissa() > 0 => d,
        _ => {
            return answer(
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                "perUsd must be a positive decimal",
            );
        }
    };
    match state.store.set_rate(currency, per_usd).await {
        Ok(()) => answer(StatusCode::OK, "OK", "rate set"),
        Err(e) => {
            let e: anyhow::Error = e.into();
            tracing::error!(error = %format!("{e:#}"), "cannot set rate");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal server error",
            )
        }
    }
}
