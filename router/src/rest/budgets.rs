//! `/api/budgets*`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::call::{Authed, PathId, delete_by_id, field, run};
use super::error::{ApiError, ErrorBody};
use super::input::Body;
use super::ops;
use super::shapes::{AlertList, Budget, BudgetAlert, MessageResponse};
use super::{body_bytes, bool_param, query_params, schemas};
use crate::state::AppState;

const PERIODS: &[&str] = &["WEEKLY", "MONTHLY", "YEARLY"];

/// Thresholds are whole percentages; the budgets service checks their range. Anything
/// that is not even a 32-bit integer (GraphQL `Int`) is refused here, naming the field.
fn thresholds(body: &Body) -> Result<Option<Vec<i32>>, ApiError> {
    if let Some(list) = body.get::<Vec<i32>>("alertThresholds", "a list of integer percentages")? {
        return Ok(Some(list));
    }
    // The original's single `alertThreshold` (percent): warn there, and at 100.
    Ok(body
        .get::<i32>("alertThreshold", "an integer percentage")?
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
    let q: &str = &ops::BUDGETS;
    let mut data = run(&state, &caller, q, json!({})).await?;
    let budgets: Vec<Budget> = field(&mut data, "budgets")?;
    Ok(Json(
        budgets.into_iter().map(Budget::with_legacy_id).collect(),
    ))
}

/// Creates a budget (`category` absent: all spending).
#[utoipa::path(post, path = "/api/budgets", tag = "budgets", security(("bearer" = [])),
    request_body = schemas::BudgetBody,
    responses((status = 201, body = Budget, links(
            ("update" = (operation_ref = "#/paths/~1api~1budgets~1{id}/put", parameters(("id" = "$response.body#/id")))),
            ("delete" = (operation_ref = "#/paths/~1api~1budgets~1{id}/delete", parameters(("id" = "$response.body#/id")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Budget>), ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = budget_input(&body, true)?;
    let q: &str = &ops::CREATE_BUDGET;
    let mut data = run(&state, &caller, q, json!({"input": input})).await?;
    let b: Budget = field(&mut data, "createBudget")?;
    Ok((StatusCode::CREATED, Json(b.with_legacy_id())))
}

/// Changes a budget.
#[utoipa::path(put, path = "/api/budgets/{id}", tag = "budgets", security(("bearer" = [])),
    params(("id" = String, Path,)), request_body = schemas::BudgetUpdateBody,
    responses((status = 200, body = Budget), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Another budget has this category and period", body = ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Budget>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = budget_input(&body, false)?;
    let q: &str = &ops::UPDATE_BUDGET;
    let mut data = run(&state, &caller, q, json!({"id": id, "input": input})).await?;
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
    PathId(id): PathId,
) -> Result<Json<MessageResponse>, ApiError> {
    delete_by_id(&state, &caller, "deleteBudget", id, "Budget").await
}

/// Budget alerts, newest first.
#[utoipa::path(get, path = "/api/budgets/alerts", tag = "budgets", security(("bearer" = [])),
    params(("unreadOnly" = Option<bool>, Query,)),
    responses((status = 200, body = AlertList, links(
            ("markRead" = (operation_ref = "#/paths/~1api~1budgets~1alerts~1{id}~1read/put", parameters(("id" = "$response.body#/alerts/0/id")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn alerts(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let params = query_params(params)?;
    let unread = bool_param(&params, "unreadOnly")?;
    let q: &str = &ops::BUDGET_ALERTS;
    let mut data = run(&state, &caller, q, json!({"unread": unread})).await?;
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
    PathId(id): PathId,
) -> Result<Json<BudgetAlert>, ApiError> {
    let q: &str = &ops::MARK_ALERT_READ;
    let mut data = run(&state, &caller, q, json!({"id": id})).await?;
    let a: BudgetAlert = field(&mut data, "markBudgetAlertRead")?;
    Ok(Json(a.normalised()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn body(json: &str) -> Body {
        Body::parse(&HeaderMap::new(), json.as_bytes()).unwrap()
    }

    #[test]
    fn thresholds_beyond_a_graphql_int_are_a_400_naming_the_field() {
        for (json, field) in [
            (
                r#"{"alertThresholds": [9223372036854775806]}"#,
                "alertThresholds",
            ),
            (r#"{"alertThreshold": 4294967296}"#, "alertThreshold"),
        ] {
            let e = thresholds(&body(json)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.body.details[0]["field"], field);
        }
        assert_eq!(
            thresholds(&body(r#"{"alertThreshold": 80}"#)).unwrap(),
            Some(vec![80, 100])
        );
    }
}
