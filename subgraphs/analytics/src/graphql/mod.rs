//! The GraphQL schema of the analytics subgraph.

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ID, Object, Result, Schema, SimpleObject,
};
use chrono::Datelike;
use kit::AppError;
use kit::money::{Currency, Money};
use kit::scalars::{Date, Decimal};
use kit::users::{AccessToken, UserDirectory, UserProfile};

use crate::domain::{self, Figure, Period, Severity, Totals, Window};
use crate::service::Analytics;

pub type AnalyticsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn build_schema(analytics: Analytics, users: UserDirectory) -> AnalyticsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .data(analytics)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

/// The schema without data, for exporting its SDL.
pub fn bare_schema() -> AnalyticsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

async fn caller_profile(ctx: &Context<'_>) -> Result<(String, UserProfile), AppError> {
    let (id, profile) = kit::users::caller_profile(ctx).await?;
    service(ctx)?
        .store
        .remember_profile(&id, profile.timezone.name(), profile.currency.code())
        .await?;
    Ok((id, profile))
}

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Analytics, AppError> {
    kit::server::context_data(ctx)
}

fn money(minor: i64, currency: Currency) -> Result<Decimal, AppError> {
    Money::from_minor(minor, currency)
        .map(Decimal::from)
        .map_err(AppError::internal)
}

fn money_text(currency: Currency) -> impl Fn(i64) -> String {
    move |minor| {
        Money::from_minor(minor, currency)
            .map(|m| format!("{} {}", m.amount_text(), currency.code()))
            .unwrap_or_else(|_| format!("{minor} (minor units) {}", currency.code()))
    }
}

/// Spending of one category.
#[derive(SimpleObject)]
pub struct CategoryTotal {
    category: String,
    total: Decimal,
    count: i64,
}

/// One calendar month, whole, in the user's timezone. Amounts are in the user's
/// currency; transactions in other currencies are not counted.
#[derive(SimpleObject)]
pub struct MonthlySummary {
    /// `YYYY-MM`.
    period: String,
    currency: String,
    /// EXPENSE transactions only (income is never counted as spending).
    total_spent: Decimal,
    total_income: Decimal,
    /// Number of EXPENSE transactions.
    transaction_count: i64,
    /// Number of INCOME transactions.
    income_count: i64,
    /// `totalSpent / transactionCount`, rounded to the minor unit (0 without expenses).
    average_per_transaction: Decimal,
    /// Largest first.
    category_breakdown: Vec<CategoryTotal>,
}

/// One month of a trend.
#[derive(SimpleObject)]
pub struct MonthTrend {
    /// `YYYY-MM`.
    month: String,
    total_spent: Decimal,
    total_income: Decimal,
    /// Number of EXPENSE transactions.
    transaction_count: i64,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AnalysisPeriod {
    /// The current week, Monday to Sunday.
    Week,
    /// The current calendar month.
    Month,
    /// The current calendar year.
    Year,
}

impl From<AnalysisPeriod> for Period {
    fn from(p: AnalysisPeriod) -> Self {
        match p {
            AnalysisPeriod::Week => Period::Week,
            AnalysisPeriod::Month => Period::Month,
            AnalysisPeriod::Year => Period::Year,
        }
    }
}

#[derive(SimpleObject)]
pub struct CategoryStat {
    category: String,
    total_spent: Decimal,
    count: i64,
    /// Per transaction, rounded to the minor unit.
    average: Decimal,
    /// Share of the period's spending, in percent (two decimals).
    percentage: f64,
}

#[derive(SimpleObject)]
pub struct CategoryAnalysis {
    period: AnalysisPeriod,
    /// First day of the period.
    from: Date,
    /// Last day of the period, inclusive.
    to: Date,
    currency: String,
    /// Largest first.
    categories: Vec<CategoryStat>,
    total_spent: Decimal,
    /// null when nothing was spent.
    top_category: Option<String>,
}

#[derive(SimpleObject)]
pub struct DailyAmount {
    date: Date,
    amount: Decimal,
}

#[derive(SimpleObject)]
pub struct DailyPattern {
    /// First day (inclusive).
    from: Date,
    /// Today in the user's timezone (inclusive).
    to: Date,
    /// Every calendar day of the window, oldest first; days without spending are 0.
    daily: Vec<DailyAmount>,
    /// Total spending divided by the number of calendar days in the window (not by
    /// the days with spending), rounded to the minor unit.
    average_daily_spending: Decimal,
    /// What the average is taken over: always `CALENDAR_DAY`.
    average_over: &'static str,
    currency: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InsightSeverity {
    Info,
    Warning,
    Critical,
}

impl From<Severity> for InsightSeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => InsightSeverity::Info,
            Severity::Warning => InsightSeverity::Warning,
            Severity::Critical => InsightSeverity::Critical,
        }
    }
}

/// A figure behind an insight; `value` is exact text (money in the user's currency).
#[derive(SimpleObject)]
pub struct InsightFigure {
    name: String,
    value: String,
}

#[derive(SimpleObject)]
pub struct Insight {
    /// `TOP_CATEGORY`, `MONTH_OVER_MONTH`, `LARGE_EXPENSE`, `WEEKEND_VS_WEEKDAY`,
    /// `BUDGET_PACE`.
    kind: String,
    title: String,
    message: String,
    severity: InsightSeverity,
    figures: Vec<InsightFigure>,
    /// The expense the insight is about (`LARGE_EXPENSE`).
    expense: Option<Expense>,
}

/// An expense, owned and resolved by the expenses subgraph.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Expense {
    id: ID,
}

pub struct Query;

fn month_label(w: &Window) -> String {
    w.start.format("%Y-%m").to_string()
}

#[Object]
impl Query {
    /// The whole month `year`-`month` in the user's timezone; an absent `year` or
    /// `month` is the current one there.
    async fn monthly_summary(
        &self,
        ctx: &Context<'_>,
        year: Option<i32>,
        month: Option<i32>,
    ) -> Result<MonthlySummary> {
        let (user, profile) = caller_profile(ctx).await?;
        let today = service(ctx)?.clock.today_in(profile.timezone);
        let year = year.unwrap_or_else(|| today.year());
        let month = month.unwrap_or_else(|| today.month() as i32);
        domain::validate_year_month(year, month)?;
        let window = domain::month_window(year, month as u32)?;
        let cur = profile.currency;
        let rows = service(ctx)?
            .store
            .day_totals(&user, cur.code(), window.start, window.next)
            .await?;
        let t = Totals::of(&rows);
        Ok(MonthlySummary {
            period: month_label(&window),
            currency: cur.code().to_string(),
            total_spent: money(t.spent_minor, cur)?,
            total_income: money(t.income_minor, cur)?,
            transaction_count: t.expense_count,
            income_count: t.income_count,
            average_per_transaction: money(
                domain::average_minor(t.spent_minor, t.expense_count),
                cur,
            )?,
            category_breakdown: t
                .categories_desc()
                .into_iter()
                .map(|(category, total, count)| {
                    Ok(CategoryTotal {
                        category,
                        total: money(total, cur)?,
                        count,
                    })
                })
                .collect::<Result<_, AppError>>()?,
        })
    }

    /// Exactly `months` consecutive months ending with the current one (user's
    /// timezone), oldest first; months without transactions are present with zeros.
    async fn spending_trends(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 6)] months: i32,
    ) -> Result<Vec<MonthTrend>> {
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let windows = domain::trend_months(svc.clock.today_in(profile.timezone), months)?;
        let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
            return Ok(Vec::new());
        };
        let cur = profile.currency;
        let rows = svc
            .store
            .day_totals(&user, cur.code(), first.start, last.next)
            .await?;
        windows
            .iter()
            .map(|w| {
                let t = Totals::of(rows.iter().filter(|r| w.contains(r.date)));
                Ok(MonthTrend {
                    month: month_label(w),
                    total_spent: money(t.spent_minor, cur)?,
                    total_income: money(t.income_minor, cur)?,
                    transaction_count: t.expense_count,
                })
            })
            .collect::<Result<_, AppError>>()
            .map_err(Into::into)
    }

    /// Spending per category in the current week, month or year (user's timezone).
    async fn category_analysis(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalysisPeriod::Month")] period: AnalysisPeriod,
    ) -> Result<CategoryAnalysis> {
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let window = domain::period_window(period.into(), svc.clock.today_in(profile.timezone));
        let cur = profile.currency;
        let rows = svc
            .store
            .day_totals(&user, cur.code(), window.start, window.next)
            .await?;
        let t = Totals::of(&rows);
        let cats = t.categories_desc();
        Ok(CategoryAnalysis {
            period,
            from: Date(window.start),
            to: Date(window.last()),
            currency: cur.code().to_string(),
            top_category: cats.first().map(|c| c.0.clone()),
            categories: cats
                .into_iter()
                .map(|(category, total, count)| {
                    Ok(CategoryStat {
                        category,
                        total_spent: money(total, cur)?,
                        count,
                        average: money(domain::average_minor(total, count), cur)?,
                        percentage: domain::percentage(total, t.spent_minor),
                    })
                })
                .collect::<Result<_, AppError>>()?,
            total_spent: money(t.spent_minor, cur)?,
        })
    }

    /// Spending per calendar day over the last `days` days, today included.
    async fn daily_pattern(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 30)] days: i32,
    ) -> Result<DailyPattern> {
        let days = domain::validate_days(days)?;
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let window = domain::last_days(svc.clock.today_in(profile.timezone), days);
        let cur = profile.currency;
        let rows = svc
            .store
            .day_totals(&user, cur.code(), window.start, window.next)
            .await?;
        let daily = domain::daily_spending(&rows, window);
        let total: i64 = daily.iter().map(|(_, a)| *a).sum();
        Ok(DailyPattern {
            from: Date(window.start),
            to: Date(window.last()),
            daily: daily
                .into_iter()
                .map(|(date, a)| {
                    Ok(DailyAmount {
                        date: Date(date),
                        amount: money(a, cur)?,
                    })
                })
                .collect::<Result<_, AppError>>()?,
            average_daily_spending: money(domain::average_minor(total, days), cur)?,
            average_over: "CALENDAR_DAY",
            currency: cur.code().to_string(),
        })
    }

    /// The largest expenses (never incomes) of the period, largest first; resolved to
    /// full `Expense` objects by the expenses subgraph through the router.
    async fn top_expenses(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: i32,
        #[graphql(default_with = "AnalysisPeriod::Month")] period: AnalysisPeriod,
    ) -> Result<Vec<Expense>> {
        let limit = domain::validate_limit(limit)?;
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let window = domain::period_window(period.into(), svc.clock.today_in(profile.timezone));
        let mut facts = svc
            .store
            .expense_facts(&user, profile.currency.code(), window)
            .await?;
        facts.sort_by(|a, b| {
            b.amount_minor
                .cmp(&a.amount_minor)
                .then_with(|| b.date.cmp(&a.date))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(facts
            .into_iter()
            .take(limit as usize)
            .map(|f| Expense { id: ID(f.id) })
            .collect())
    }

    /// Insights, each only when its minimum data is there (see the `kind`s):
    /// TOP_CATEGORY needs 5 expenses this month; MONTH_OVER_MONTH needs spending in the
    /// category in both months and a change of at least 20%; LARGE_EXPENSE needs 5
    /// expenses of the category in the last 90 days and an amount above 3x their
    /// median; WEEKEND_VS_WEEKDAY needs 10 expenses in the last 28 days; BUDGET_PACE
    /// (from the budgets subgraph, with the caller's token) needs a budget in the
    /// user's currency at least 7 days into its period, with spending, whose pace per
    /// calendar day would use it up before the period ends.
    async fn insights(&self, ctx: &Context<'_>) -> Result<Vec<Insight>> {
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let today = svc.clock.today_in(profile.timezone);
        let cur = profile.currency;
        let this_month = domain::month_of(today);
        let prev_start = domain::month_of(this_month.start - chrono::Duration::days(1)).start;
        let recent_window = domain::last_days(today, domain::LARGE_EXPENSE_WINDOW_DAYS);
        let from = prev_start.min(recent_window.start);
        let rows = svc
            .store
            .day_totals(&user, cur.code(), from, this_month.next)
            .await?;
        let recent = svc
            .store
            .expense_facts(&user, cur.code(), recent_window)
            .await?;
        let text = money_text(cur);
        let mut found = domain::insights(&domain::InsightInput {
            today,
            rows: &rows,
            recent: &recent,
            money: &text,
        });
        if let Some(token) = ctx.data_opt::<AccessToken>() {
            match svc.budgets.budgets(&token.0, cur).await {
                Ok(budgets) => found.extend(domain::budget_pace(today, &budgets, &text)),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "budgets unavailable; no pace insight")
                }
            }
        }
        found
            .into_iter()
            .map(|i| {
                let figures = i
                    .figures
                    .into_iter()
                    .map(|(name, f)| {
                        let value = match f {
                            Figure::Money(m) => money(m, cur)?.0.to_string(),
                            Figure::Percent(p) => format!("{p}"),
                            Figure::Count(n) => n.to_string(),
                            Figure::Text(t) => t,
                        };
                        Ok(InsightFigure {
                            name: name.to_string(),
                            value,
                        })
                    })
                    .collect::<Result<_, AppError>>()?;
                Ok(Insight {
                    kind: i.kind.to_string(),
                    title: i.title,
                    message: i.message,
                    severity: i.severity.into(),
                    figures,
                    expense: i.expense_id.map(|id| Expense { id: ID(id) }),
                })
            })
            .collect::<Result<_, AppError>>()
            .map_err(Into::into)
    }
}
