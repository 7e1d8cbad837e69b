//! `/api/expenses*`: list, create, read, update, delete, summary, CSV.

use contract::ErrorCode;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::call::{Authed, PathId, delete_by_id, field, run};
use super::error::{ApiError, ErrorBody};
use super::input::{Body, date, enum_value};
use super::ops;
use super::shapes::{
    Amount, CategorySummary, CategoryTotal, Connection, Expense, ExpenseList, MessageResponse,
    Totals,
};
use super::{body_bytes, int_param, query_params, schemas};
use crate::state::AppState;

const TYPES: &[&str] = &["EXPENSE", "INCOME"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlTotals {
    total_income: Amount,
    total_expenses: Amount,
    balance: Amount,
}

fn range(params: &HashMap<String, String>) -> Result<(Option<String>, Option<String>), ApiError> {
    let from = params
        .get("startDate")
        .filter(|s| !s.is_empty())
        .map(|s| date("startDate", s))
        .transpose()?;
    let to = params
        .get("endDate")
        .filter(|s| !s.is_empty())
        .map(|s| date("endDate", s))
        .transpose()?;
    Ok((from, to))
}

/// The caller's expenses, newest first, with totals of the date range.
#[utoipa::path(get, path = "/api/expenses", tag = "expenses", security(("bearer" = [])),
    params(
        ("category" = Option<String>, Query,),
        ("startDate" = Option<String>, Query, format = Date, description = "YYYY-MM-DD (an RFC 3339 date-time is cut to its date)"),
        ("endDate" = Option<String>, Query, format = Date, description = "YYYY-MM-DD, inclusive"),
        ("type" = inline(Option<schemas::TransactionType>), Query,),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 20"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses((status = 200, body = ExpenseList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ExpenseList>, ApiError> {
    let params = query_params(params)?;
    let (from, to) = range(&params)?;
    let mut filter = Map::new();
    if let Some(c) = params.get("category").filter(|s| !s.is_empty()) {
        filter.insert("category".into(), json!(c));
    }
    if let Some(t) = params.get("type").filter(|s| !s.is_empty()) {
        filter.insert("type".into(), json!(enum_value("type", t, TYPES)?));
    }
    if let Some(f) = &from {
        filter.insert("from".into(), json!(f));
    }
    if let Some(t) = &to {
        filter.insert("to".into(), json!(t));
    }
    let first = int_param(&params, "limit", 1, 100)?.unwrap_or(20);
    let after = params.get("cursor").filter(|s| !s.is_empty());
    let q: &str = &ops::EXPENSES;
    let vars = json!({"filter": filter, "first": first, "after": after, "from": from, "to": to});
    let mut data = run(&state, &caller, q, vars).await?;
    let conn: Connection<Expense> = field(&mut data, "expenses")?;
    let totals: GqlTotals = field(&mut data, "expenseSummary")?;
    let (expenses, next_cursor) = conn.into_page();
    Ok(Json(ExpenseList {
        expenses: expenses.into_iter().map(Expense::with_legacy_id).collect(),
        summary: Totals {
            total_income: totals.total_income,
            total_expenses: totals.total_expenses,
            balance: totals.balance,
        },
        next_cursor,
    }))
}

/// Reads the expense fields of a create or update body into a GraphQL input.
fn expense_input(body: &Body, creating: bool) -> Result<Map<String, Value>, ApiError> {
    let mut input = Map::new();
    match body.amount("amount")? {
        Some(a) => {
            input.insert("amount".into(), json!(a));
        }
        None if creating => return Err(ApiError::invalid("amount", "is required")),
        None => {}
    }
    if creating {
        input.insert(
            "description".into(),
            json!(body.required_string("description")?),
        );
    } else if let Some(d) = body.string("description")? {
        input.insert("description".into(), json!(d));
    }
    body.copy_strings(&["category", "currency"], &mut input)?;
    if let Some(t) = body.enum_value("type", TYPES)? {
        input.insert("type".into(), json!(t));
    }
    if let Some(d) = body.date("date")? {
        input.insert("date".into(), json!(d));
    }
    if let Some(p) = body.string("paymentMethod")? {
        input.insert("paymentMethod".into(), json!(p));
    } else if !creating && body.is_null("paymentMethod") {
        input.insert("paymentMethod".into(), Value::Null);
    }
    if let Some(tags) = body.get::<Vec<String>>("tags", "a list of strings")? {
        input.insert("tags".into(), json!(tags));
    }
    Ok(input)
}

/// Records an expense or an income; `Idempotency-Key` makes retries safe.
#[utoipa::path(post, path = "/api/expenses", tag = "expenses", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, description = "Same key, same expense")),
    request_body = schemas::ExpenseBody,
    responses((status = 201, body = Expense, links(
            ("read" = (operation_ref = "#/paths/~1api~1expenses~1{id}/get", parameters(("id" = "$response.body#/id")))),
            ("update" = (operation_ref = "#/paths/~1api~1expenses~1{id}/put", parameters(("id" = "$response.body#/id")))),
            ("delete" = (operation_ref = "#/paths/~1api~1expenses~1{id}/delete", parameters(("id" = "$response.body#/id")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Expense>), ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = expense_input(&body, true)?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let q: &str = &ops::CREATE_EXPENSE;
    let mut data = run(&state, &caller, q, json!({"input": input, "key": key})).await?;
    let e: Expense = field(&mut data, "createExpense")?;
    Ok((StatusCode::CREATED, Json(e.with_legacy_id())))
}

/// One expense.
#[utoipa::path(get, path = "/api/expenses/{id}", tag = "expenses", security(("bearer" = [])),
    params(("id" = String, Path,)),
    responses((status = 200, body = Expense), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    PathId(id): PathId,
) -> Result<Json<Expense>, ApiError> {
    let q: &str = &ops::EXPENSE;
    let mut data = run(&state, &caller, q, json!({"id": id})).await?;
    let e: Option<Expense> = field(&mut data, "expense")?;
    e.map(|e| Json(e.with_legacy_id()))
        .ok_or_else(|| ApiError::not_found("Expense not found"))
}

/// Changes an expense (only the fields given).
#[utoipa::path(put, path = "/api/expenses/{id}", tag = "expenses", security(("bearer" = [])),
    params(("id" = String, Path,)), request_body = schemas::ExpenseUpdateBody,
    responses((status = 200, body = Expense), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Expense>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = expense_input(&body, false)?;
    let q: &str = &ops::UPDATE_EXPENSE;
    let mut data = run(&state, &caller, q, json!({"id": id, "input": input})).await?;
    let e: Expense = field(&mut data, "updateExpense")?;
    Ok(Json(e.with_legacy_id()))
}

/// Deletes an expense.
#[utoipa::path(delete, path = "/api/expenses/{id}", tag = "expenses", security(("bearer" = [])),
    params(("id" = String, Path,)),
    responses((status = 200, body = MessageResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    PathId(id): PathId,
) -> Result<Json<MessageResponse>, ApiError> {
    delete_by_id(&state, &caller, "deleteExpense", id, "Expense").await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlSummary {
    total_income: Amount,
    total_expenses: Amount,
    balance: Amount,
    by_category: Vec<CategoryTotal>,
}

/// Totals per category and overall for a date range.
#[utoipa::path(get, path = "/api/expenses/summary", tag = "expenses", security(("bearer" = [])),
    params(("startDate" = Option<String>, Query, format = Date,), ("endDate" = Option<String>, Query, format = Date,)),
    responses((status = 200, body = CategorySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn summary(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<CategorySummary>, ApiError> {
    let params = query_params(params)?;
    let (from, to) = range(&params)?;
    let q: &str = &ops::EXPENSE_SUMMARY;
    let mut data = run(&state, &caller, q, json!({"from": from, "to": to})).await?;
    let s: GqlSummary = field(&mut data, "expenseSummary")?;
    Ok(Json(CategorySummary {
        summary: s.by_category,
        total_income: s.total_income,
        total_expenses: s.total_expenses,
        balance: s.balance,
    }))
}

/// Same as `/api/expenses/summary` (the original's alias).
#[utoipa::path(get, path = "/api/expenses/summary/by-category", tag = "expenses", security(("bearer" = [])),
    params(("startDate" = Option<String>, Query, format = Date,), ("endDate" = Option<String>, Query, format = Date,)),
    responses((status = 200, body = CategorySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn summary_by_category(
    state: State<Arc<AppState>>,
    caller: Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<CategorySummary>, ApiError> {
    summary(state, caller, params).await
}

/// CSV of the caller's expenses (RFC 4180, header row), the format `/import` reads.
#[utoipa::path(get, path = "/api/expenses/export.csv", tag = "expenses", security(("bearer" = [])),
    params(("startDate" = Option<String>, Query, format = Date,), ("endDate" = Option<String>, Query, format = Date,)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn export_csv(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query_params(params)?;
    let (from, to) = range(&params)?;
    let q: &str = &ops::EXPORT_CSV;
    let mut data = run(&state, &caller, q, json!({"from": from, "to": to})).await?;
    #[derive(Deserialize)]
    struct Csv {
        csv: String,
    }
    let csv: Csv = field(&mut data, "exportExpensesCsv")?;
    let mut resp = csv.csv.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"expenses.csv\""),
    );
    Ok(resp)
}

#[derive(Debug, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub rows: i64,
    pub created: i64,
    pub already_present: i64,
}

/// Imports a CSV in the export's format: all rows or none; idempotent by `id`.
#[utoipa::path(post, path = "/api/expenses/import", tag = "expenses", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn import_csv(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !(ct.starts_with("text/csv") || ct.starts_with("text/plain")) {
        return Err(ApiError::coded(
            ErrorCode::UnsupportedMediaType,
            "The body must be text/csv",
        ));
    }
    let bytes = body_bytes(body)?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::invalid("body", "must be UTF-8 text"))?;
    let q: &str = &ops::IMPORT_CSV;
    let mut data = run(&state, &caller, q, json!({"csv": text})).await?;
    Ok(Json(field(&mut data, "importExpensesCsv")?))
}
