//! `/api/analytics/*`: monthly summary, trends, category analysis, daily pattern,
//! top expenses and insights — each one analytics query through the router.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::call::{Authed, field, run};
use super::error::{ApiError, ErrorBody};
use super::input::enum_value;
use super::ops;
use super::shapes::{Amount, Expense};
use super::{int_param, query_params, schemas};
use crate::state::AppState;

const PERIODS: &[&str] = &["WEEK", "MONTH", "YEAR"];
/// The analytics subgraph's bounds, checked here too so the error names the parameter.
const MAX_TREND_MONTHS: i64 = 36;
const MAX_PATTERN_DAYS: i64 = 366;
const MAX_TOP_EXPENSES: i64 = 100;

/// One calendar month, whole, in the user's timezone and currency.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthlySummary {
    /// `YYYY-MM`.
    pub period: String,
    pub currency: String,
    /// Expenses only.
    pub total_spent: Amount,
    pub total_income: Amount,
    /// Number of expenses.
    pub transaction_count: i64,
    /// Number of incomes.
    pub income_count: i64,
    /// Category → amount spent.
    pub category_breakdown: BTreeMap<String, Amount>,
    /// `totalSpent / transactionCount`, rounded to the minor unit.
    pub average_per_transaction: Amount,
}

/// One month of a trend.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthTrend {
    /// `YYYY-MM`.
    pub month: String,
    pub total_spent: Amount,
    pub total_income: Amount,
    /// Number of expenses.
    pub transaction_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryStat {
    pub category: String,
    pub total_spent: Amount,
    pub count: i64,
    /// Per transaction, rounded to the minor unit.
    pub avg_amount: Amount,
    /// Share of the period's spending in percent.
    pub percentage: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryAnalysis {
    /// `week`, `month` or `year`.
    pub period: String,
    /// First day of the period.
    pub from: String,
    /// Last day of the period (inclusive).
    pub to: String,
    pub currency: String,
    /// Largest first.
    pub categories: Vec<CategoryStat>,
    pub total_spent: Amount,
    /// Null when nothing was spent.
    pub top_category: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DailyAmount {
    pub date: String,
    pub amount: Amount,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyPattern {
    /// Every calendar day of the window, oldest first (0 without spending).
    pub daily_data: Vec<DailyAmount>,
    /// Total spending divided by the number of calendar days of the window.
    pub avg_daily_spending: Amount,
    /// `"<days> days"`.
    pub period: String,
    pub from: String,
    /// Today in the user's timezone.
    pub to: String,
    pub currency: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InsightFigure {
    pub name: String,
    /// Exact text (money in the user's currency).
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Insight {
    /// `TOP_CATEGORY`, `MONTH_OVER_MONTH`, `LARGE_EXPENSE`, `WEEKEND_VS_WEEKDAY`, `BUDGET_PACE`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    /// `INFO`, `WARNING` or `CRITICAL`.
    pub severity: String,
    pub figures: Vec<InsightFigure>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Insights {
    pub insights: Vec<Insight>,
    /// Number of expenses this month.
    pub total_expenses: i64,
    /// Spent this month.
    pub total_spent: Amount,
    /// This month, `YYYY-MM`.
    pub period: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlCategoryTotal {
    category: String,
    total: Amount,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlMonthlySummary {
    period: String,
    currency: String,
    total_spent: Amount,
    total_income: Amount,
    transaction_count: i64,
    income_count: i64,
    average_per_transaction: Amount,
    category_breakdown: Vec<GqlCategoryTotal>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlCategoryStat {
    category: String,
    total_spent: Amount,
    count: i64,
    average: Amount,
    percentage: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlCategoryAnalysis {
    period: String,
    from: String,
    to: String,
    currency: String,
    categories: Vec<GqlCategoryStat>,
    total_spent: Amount,
    top_category: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlDailyPattern {
    from: String,
    to: String,
    daily: Vec<DailyAmount>,
    average_daily_spending: Amount,
    currency: String,
}

#[derive(Deserialize)]
struct GqlInsight {
    kind: String,
    title: String,
    message: String,
    severity: String,
    figures: Vec<InsightFigure>,
}

/// A whole month: totals, per-category breakdown and average per expense.
#[utoipa::path(get, path = "/api/analytics/monthly-summary", tag = "analytics", security(("bearer" = [])),
    params(
        ("year" = Option<i64>, Query, minimum = 1970, maximum = 9999, description = "Default: this year (user's timezone)"),
        ("month" = Option<i64>, Query, minimum = 1, maximum = 12, description = "Default: this month (user's timezone)")),
    responses((status = 200, body = MonthlySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn monthly_summary(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<MonthlySummary>, ApiError> {
    let params = query_params(params)?;
    let year = int_param(&params, "year", 1970, 9999)?;
    let month = int_param(&params, "month", 1, 12)?;
    let q: &str = &ops::MONTHLY_SUMMARY;
    let mut data = run(&state, &caller, q, json!({"year": year, "month": month})).await?;
    let s: GqlMonthlySummary = field(&mut data, "monthlySummary")?;
    Ok(Json(MonthlySummary {
        period: s.period,
        currency: s.currency,
        total_spent: s.total_spent,
        total_income: s.total_income,
        transaction_count: s.transaction_count,
        income_count: s.income_count,
        category_breakdown: s
            .category_breakdown
            .into_iter()
            .map(|c| (c.category, c.total))
            .collect(),
        average_per_transaction: s.average_per_transaction,
    }))
}

/// Spending per month, oldest first, ending with this month; empty months are zeros.
#[utoipa::path(get, path = "/api/analytics/trends", tag = "analytics", security(("bearer" = [])),
    params(("months" = Option<i64>, Query, minimum = 1, maximum = 36, description = "Default 6")),
    responses((status = 200, body = Vec<MonthTrend>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn trends(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<MonthTrend>>, ApiError> {
    let params = query_params(params)?;
    let months = int_param(&params, "months", 1, MAX_TREND_MONTHS)?.unwrap_or(6);
    let q: &str = &ops::SPENDING_TRENDS;
    let mut data = run(&state, &caller, q, json!({"months": months})).await?;
    Ok(Json(field(&mut data, "spendingTrends")?))
}

fn period_param(params: &HashMap<String, String>) -> Result<String, ApiError> {
    match params
        .get("period")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        Some(p) => enum_value("period", p, PERIODS),
        None => Ok("MONTH".to_owned()),
    }
}

/// Spending per category this week, month or year.
#[utoipa::path(get, path = "/api/analytics/category-analysis", tag = "analytics", security(("bearer" = [])),
    params(("period" = inline(Option<schemas::AnalysisPeriod>), Query, description = "Default month")),
    responses((status = 200, body = CategoryAnalysis), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn category_analysis(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<CategoryAnalysis>, ApiError> {
    let params = query_params(params)?;
    let period = period_param(&params)?;
    let q: &str = &ops::CATEGORY_ANALYSIS;
    let mut data = run(&state, &caller, q, json!({"period": period})).await?;
    let a: GqlCategoryAnalysis = field(&mut data, "categoryAnalysis")?;
    Ok(Json(CategoryAnalysis {
        period: a.period.to_ascii_lowercase(),
        from: a.from,
        to: a.to,
        currency: a.currency,
        categories: a
            .categories
            .into_iter()
            .map(|c| CategoryStat {
                category: c.category,
                total_spent: c.total_spent,
                count: c.count,
                avg_amount: c.average,
                percentage: c.percentage,
            })
            .collect(),
        total_spent: a.total_spent,
        top_category: a.top_category,
    }))
}

/// Spending per calendar day over the last `days` days, today included.
#[utoipa::path(get, path = "/api/analytics/daily-pattern", tag = "analytics", security(("bearer" = [])),
    params(("days" = Option<i64>, Query, minimum = 1, maximum = 366, description = "Default 30")),
    responses((status = 200, body = DailyPattern), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn daily_pattern(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<DailyPattern>, ApiError> {
    let params = query_params(params)?;
    let days = int_param(&params, "days", 1, MAX_PATTERN_DAYS)?.unwrap_or(30);
    let q: &str = &ops::DAILY_PATTERN;
    let mut data = run(&state, &caller, q, json!({"days": days})).await?;
    let p: GqlDailyPattern = field(&mut data, "dailyPattern")?;
    Ok(Json(DailyPattern {
        daily_data: p.daily,
        avg_daily_spending: p.average_daily_spending,
        period: format!("{days} days"),
        from: p.from,
        to: p.to,
        currency: p.currency,
    }))
}

/// The largest expenses of the period (never incomes), largest first.
#[utoipa::path(get, path = "/api/analytics/top-expenses", tag = "analytics", security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 10"),
        ("period" = inline(Option<schemas::AnalysisPeriod>), Query, description = "Default month")),
    responses((status = 200, body = Vec<Expense>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn top_expenses(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<Expense>>, ApiError> {
    let params = query_params(params)?;
    let limit = int_param(&params, "limit", 1, MAX_TOP_EXPENSES)?.unwrap_or(10);
    let period = period_param(&params)?;
    let q: &str = &ops::TOP_EXPENSES;
    let mut data = run(
        &state,
        &caller,
        q,
        json!({"limit": limit, "period": period}),
    )
    .await?;
    let list: Vec<Expense> = field(&mut data, "topExpenses")?;
    Ok(Json(
        list.into_iter().map(Expense::with_legacy_id).collect(),
    ))
}

#[derive(Deserialize)]
struct CountOnly {
    count: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlMonth {
    from: String,
    total_spent: Amount,
    categories: Vec<CountOnly>,
}

/// Insights about the caller's spending, with this month's totals.
#[utoipa::path(get, path = "/api/analytics/insights", tag = "analytics", security(("bearer" = [])),
    responses((status = 200, body = Insights), (status = 401, body = ErrorBody)))]
pub async fn insights(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<Insights>, ApiError> {
    let q: &str = &ops::INSIGHTS;
    let mut data = run(&state, &caller, q, json!({})).await?;
    let list: Vec<GqlInsight> = field(&mut data, "insights")?;
    let month: GqlMonth = field(&mut data, "month")?;
    Ok(Json(Insights {
        insights: list
            .into_iter()
            .map(|i| Insight {
                kind: i.kind,
                title: i.title,
                message: i.message,
                severity: i.severity,
                figures: i.figures,
            })
            .collect(),
        total_expenses: month.categories.iter().map(|c| c.count).sum(),
        total_spent: month.total_spent,
        period: month.from.get(0..7).unwrap_or_default().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_defaults_to_month_and_accepts_lower_case() {
        let mut p = HashMap::new();
        assert_eq!(period_param(&p).ok(), Some("MONTH".to_owned()));
        p.insert("period".to_owned(), "week".to_owned());
        assert_eq!(period_param(&p).ok(), Some("WEEK".to_owned()));
        p.insert("period".to_owned(), "decade".to_owned());
        assert!(period_param(&p).is_err());
    }
}
