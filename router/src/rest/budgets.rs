//! `/api/budgets*`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::call::{Authed, delete_by_id, field, run};
use super::error::{ApiError, ErrorBody};
use super::input::Body;
use super::shapes::{ALERT_FIELDS, AlertList, BUDGET_FIELDS, Budget, BudgetAlert, MessageResponse};
use super::{body_bytes, bool_param, query_params, schemas};
use crate::server::AppState;

const PERIODS: &[&str] = &["WEEKLY", "MONTHLY", "YEARLY"];

fn thresholds(body: &Body) -> Result<Option<Vec<i64>>, ApiError> {
    if let Some(list) = body.get::<Vec<i64>>("alertThresholds", "a list of integers")? {
        return Ok(Some(list));
    }
    // The original's single `alertThreshold` (percent): warn there, and at 100.
    Ok(body
        .get::<i64>("alertThreshold", "an integer percentage")?
        .map(|t| if t < 100 { vec![t, 100] } else { vec![t] }))
}

fn budget_input(body: &Body, creating: bool) -> Result<Map<String, Value>, ApiError> {
    let mut input = Map::new();
    match body.amount("amount")? {
        Some(a) => {
            input.insert("amount".into(), json!(a));
        }
        None if creating => return Err(ApiError::invalid("amount", "is required")),
        None => {}
    }
    if let Some(c) = body.string("category")? {
        input.insert("category".into(), json!(c));
    } else if !creating && body.is_null("category") {
        input.insert("category".into(), Value::Null);
    }
    if creating && let Some(c) = body.string("currency")? {
        input.insert("currency".into(), json!(c));
    }
    if let Some(p) = body.enum_value("period", PERIODS)? {
        input.insert("period".into(), json!(p));
    }
    if let Some(t) = thresholds(body)? {
        input.insert("alertThresholds".into(), json!(t));
    }
    Ok(input)
}

/// The caller's budgets with this period's spending.
#[utoipa::path(get, path = "/api/budgets", tag = "budgets", security(("bearer" = [])),
    responses((status = 200, body = Vec<Budget>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<Vec<Budget>>, ApiError> {
    let q = format!("query {{ budgets {{ {BUDGET_FIELDS} }} }}");
    let mut data = run(&state, &caller, &q, json!({})).await?;
    let budgets: Vec<Budget> = field(&mut data, "budgets")?;
    Ok(Json(
        budgets.into_iter().map(Budget::with_legacy_id).collect(),
    ))
}

/// Creates a budget (`category` absent: all spending).
#[utoipa::path(post, path = "/api/budgets", tag = "budgets", security(("bearer" = [])),
    request_body = schemas::BudgetBody,
    responses((status = 201, body = Budget), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Budget>), ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = budget_input(&body, true)?;
    let q = format!(
        "mutation($input: CreateBudgetInput!) {{ createBudget(input: $input) {{ {BUDGET_FIELDS} }} }}"
    );
    let mut data = run(&state, &caller, &q, json!({"input": input})).await?;
    let b: Budget = field(&mut data, "createBudget")?;
    Ok((StatusCode::CREATED, Json(b.with_legacy_id())))
}

/// Changes a budget.
#[utoipa::path(put, path = "/api/budgets/{id}", tag = "budgets", security(("bearer" = [])),
    params(("id" = String, Path,)), request_body = schemas::BudgetBody,
    responses((status = 200, body = Budget), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Budget>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = budget_input(&body, false)?;
    let q = format!(
        "mutation($id: ID!, $input: UpdateBudgetInput!) {{ updateBudget(id: $id, input: $input) {{ {BUDGET_FIELDS} }} }}"
    );
    let mut data = run(&state, &caller, &q, json!({"id": id, "input": input})).await?;
    let b: Budget = field(&mut data, "updateBudget")?;
    Ok(Json(b.with_legacy_id()))
}

/// Deletes a budget.
#[utoipa::path(delete, path = "/api/budgets/{id}", tag = "budgets", security(("bearer" = [])),
    params(("id" = String, Path,)),
    responses((status = 200, body = MessageResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    delete_by_id(&state, &caller, "deleteBudget", id, "Budget").await
}

/// Budget alerts, newest first.
#[utoipa::path(get, path = "/api/budgets/alerts", tag = "budgets", security(("bearer" = [])),
    params(("unreadOnly" = Option<bool>, Query,)),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn alerts(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let params = query_params(params)?;
    let unread = bool_param(&params, "unreadOnly")?;
    let q = format!(
        "query($unread: Boolean) {{ budgetAlerts(unreadOnly: $unread) {{ {ALERT_FIELDS} }} }}"
    );
    let mut data = run(&state, &caller, &q, json!({"unread": unread})).await?;
    let alerts: Vec<BudgetAlert> = field(&mut data, "budgetAlerts")?;
    Ok(Json(AlertList {
        alerts: alerts.into_iter().map(BudgetAlert::normalised).collect(),
    }))
}

/// Marks a budget alert read.
#[utoipa::path(put, path = "/api/budgets/alerts/{id}/read", tag = "budgets", security(("bearer" = [])),
    params(("id" = String, Path,)),
    responses((status = 200, body = BudgetAlert), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn alert_read(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<BudgetAlert>, ApiError> {
    let q = format!("mutation($id: ID!) {{ markBudgetAlertRead(id: $id) {{ {ALERT_FIELDS} }} }}");
    let mut data = run(&state, &caller, &q, json!({"id": id})).await?;
    let a: BudgetAlert = field(&mut data, "markBudgetAlertRead")?;
    Ok(Json(a.normalised()))
}
