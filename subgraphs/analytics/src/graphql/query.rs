//! The analytics subgraph's queries: reports over the read model in the caller's
//! timezone and currency, and insights.

use async_graphql::{Context, ID, Object, Result};
use chrono::Datelike;
use contract::households::{Need, Ownership};
use kit::AppError;
use kit::money::Currency;
use kit::scalars::Date;
use kit::users::AccessToken;

use super::{
    AnalysisPeriod, CategoryAnalysis, CategoryStat, CategoryTotal, DailyAmount, DailyPattern,
    Expense, Insight, MonthTrend, MonthlySummary, caller_profile, money, money_text, service,
};
use crate::domain::{self, Totals, Window};

/// The queries of the analytics subgraph.
// Every field here is a root field: it shares the response's one `data` object with
// the other subgraphs' root fields, so it is nullable (`Option`), and a failure here
// costs only this field (see schema/README.md, "Nullability across subgraphs").
pub struct Query;

/// `YYYY-MM`.
fn month_label(w: &Window) -> String {
    w.start.format("%Y-%m").to_string()
}

/// Whose figures a report reads, and in which currency: the caller's own (in their
/// currency), or, with `household_id`, what the household's members shared with it (in
/// the household's currency; for its members and viewers only). Dates are the caller's.
struct Scope {
    owner: Ownership,
    currency: Currency,
    timezone: chrono_tz::Tz,
}

async fn scope(ctx: &Context<'_>, household_id: Option<&ID>) -> Result<Scope, AppError> {
    let (user, profile) = caller_profile(ctx).await?;
    let Some(h) = household_id else {
        return Ok(Scope {
            owner: Ownership::User(user),
            currency: profile.currency,
            timezone: profile.timezone,
        });
    };
    let h = kit::households::household_id("householdId", h)?;
    let (_, membership) = kit::households::authorize(ctx, &h, Need::Read).await?;
    Ok(Scope {
        owner: Ownership::Household(h),
        currency: membership.currency,
        timezone: profile.timezone,
    })
}

impl Scope {
    /// The day rows of `[from, to)` in the scope's currency.
    async fn rows(
        &self,
        ctx: &Context<'_>,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<crate::domain::DayTotal>, AppError> {
        let store = &service(ctx)?.store;
        match &self.owner {
            Ownership::User(u) => store.day_totals(u, self.currency, from, to).await,
            Ownership::Household(h) => store.household_day_totals(h, self.currency, from, to).await,
        }
    }
}

#[Object]
impl Query {
    /// The whole month `year`-`month` in the user's timezone; an absent `year` or
    /// `month` is the current one there. With `householdId`: the expenses shared with
    /// that household, in its currency (for its members).
    async fn monthly_summary(
        &self,
        ctx: &Context<'_>,
        year: Option<i32>,
        month: Option<i32>,
        household_id: Option<ID>,
    ) -> Result<Option<MonthlySummary>> {
        let scope = scope(ctx, household_id.as_ref()).await?;
        let today = service(ctx)?.clock.today_in(scope.timezone);
        let year = year.unwrap_or_else(|| today.year());
        let month = month.unwrap_or_else(|| today.month() as i32);
        domain::validate_year_month(year, month)?;
        let window = domain::month_window(year, month as u32)?;
        let cur = scope.currency;
        let rows = scope.rows(ctx, window.start, window.next).await?;
        let t = Totals::of(&rows);
        Ok(Some(MonthlySummary {
            period: month_label(&window),
            currency: cur.code().to_string(),
            total_spent: money(t.spent_minor, cur),
            total_income: money(t.income_minor, cur),
            transaction_count: t.expense_count,
            income_count: t.income_count,
            average_per_transaction: money(
                domain::average_minor(t.spent_minor, i128::from(t.expense_count)),
                cur,
            ),
            category_breakdown: t
                .categories_desc()
                .into_iter()
                .map(|(category, total, count)| {
                    Ok(CategoryTotal {
                        category,
                        total: money(total, cur),
                        count,
                    })
                })
                .collect::<Result<_, AppError>>()?,
        }))
    }

    /// Exactly `months` consecutive months ending with the current one (user's
    /// timezone), oldest first; months without transactions are present with zeros.
    /// With `householdId`: the expenses shared with that household, in its currency.
    async fn spending_trends(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 6)] months: i32,
        household_id: Option<ID>,
    ) -> Result<Option<Vec<MonthTrend>>> {
        let scope = scope(ctx, household_id.as_ref()).await?;
        let svc = service(ctx)?;
        let windows = domain::trend_months(svc.clock.today_in(scope.timezone), months)?;
        let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
            return Ok(Some(Vec::new()));
        };
        let cur = scope.currency;
        let rows = scope.rows(ctx, first.start, last.next).await?;
        windows
            .iter()
            .map(|w| {
                let t = Totals::of(rows.iter().filter(|r| w.contains(r.date)));
                Ok(MonthTrend {
                    month: month_label(w),
                    total_spent: money(t.spent_minor, cur),
                    total_income: money(t.income_minor, cur),
                    transaction_count: t.expense_count,
                })
            })
            .collect::<Result<_, AppError>>()
            .map(Some)
            .map_err(Into::into)
    }

    /// Spending per category in the current week, month or year (user's timezone).
    /// With `householdId`: the expenses shared with that household, in its currency.
    async fn category_analysis(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalysisPeriod::Month")] period: AnalysisPeriod,
        household_id: Option<ID>,
    ) -> Result<Option<CategoryAnalysis>> {
        let scope = scope(ctx, household_id.as_ref()).await?;
        let svc = service(ctx)?;
        let window = domain::period_window(period.into(), svc.clock.today_in(scope.timezone));
        let cur = scope.currency;
        let rows = scope.rows(ctx, window.start, window.next).await?;
        let t = Totals::of(&rows);
        let cats = t.categories_desc();
        Ok(Some(CategoryAnalysis {
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
                        total_spent: money(total, cur),
                        count,
                        average: money(domain::average_minor(total, i128::from(count)), cur),
                        percentage: domain::percentage(total, t.spent_minor),
                    })
                })
                .collect::<Result<_, AppError>>()?,
            total_spent: money(t.spent_minor, cur),
        }))
    }

    /// Spending per calendar day over the last `days` days, today included.
    async fn daily_pattern(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 30)] days: i32,
    ) -> Result<Option<DailyPattern>> {
        let days = domain::validate_days(days)?;
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let window = domain::last_days(svc.clock.today_in(profile.timezone), days);
        let cur = profile.currency;
        let rows = svc
            .store
            .day_totals(&user, cur, window.start, window.next)
            .await?;
        let daily = domain::daily_spending(&rows, window);
        let total: i128 = daily.iter().map(|(_, a)| *a).sum();
        Ok(Some(DailyPattern {
            from: Date(window.start),
            to: Date(window.last()),
            daily: daily
                .into_iter()
                .map(|(date, a)| {
                    Ok(DailyAmount {
                        date: Date(date),
                        amount: money(a, cur),
                    })
                })
                .collect::<Result<_, AppError>>()?,
            average_daily_spending: money(domain::average_minor(total, i128::from(days)), cur),
            average_over: "CALENDAR_DAY",
            currency: cur.code().to_string(),
        }))
    }

    /// The largest expenses (never incomes) of the period, largest first; resolved to
    /// full `Expense` objects by the expenses subgraph through the router.
    async fn top_expenses(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: i32,
        #[graphql(default_with = "AnalysisPeriod::Month")] period: AnalysisPeriod,
    ) -> Result<Option<Vec<Option<Expense>>>> {
        let limit = domain::validate_limit(limit)?;
        let (user, profile) = caller_profile(ctx).await?;
        let svc = service(ctx)?;
        let window = domain::period_window(period.into(), svc.clock.today_in(profile.timezone));
        let mut facts = svc
            .store
            .expense_facts(&user, profile.currency, window)
            .await?;
        facts.sort_by(|a, b| {
            b.amount_minor
                .cmp(&a.amount_minor)
                .then_with(|| b.date.cmp(&a.date))
                .then_with(|| a.id.cmp(&b.id))
        });
        // Each item is nullable too: the expenses subgraph resolves it in another fetch.
        Ok(Some(
            facts
                .into_iter()
                .take(limit as usize)
                .map(|f| Some(Expense::from(f.id)))
                .collect(),
        ))
    }

    /// Insights, each only when its minimum data is there (see the `kind`s):
    /// TOP_CATEGORY needs 5 expenses this month; MONTH_OVER_MONTH needs spending in the
    /// category in both months and a change of at least 20%; LARGE_EXPENSE needs 5
    /// expenses of the category in the last 90 days and an amount above 3x their
    /// median; WEEKEND_VS_WEEKDAY needs 10 expenses in the last 28 days; BUDGET_PACE
    /// (from the budgets subgraph, with the caller's token) needs a budget in the
    /// user's currency at least 7 days into its period, with spending, whose pace per
    /// calendar day would use it up before the period ends.
    async fn insights(&self, ctx: &Context<'_>) -> Result<Option<Vec<Insight>>> {
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
            .day_totals(&user, cur, from, this_month.next)
            .await?;
        let recent = svc.store.expense_facts(&user, cur, recent_window).await?;
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
            .map(|i| Insight::new(i, cur))
            .collect::<Result<_, AppError>>()
            .map(Some)
            .map_err(Into::into)
    }
}
