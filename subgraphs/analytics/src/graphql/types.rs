//! The analytics subgraph's GraphQL output types: reports built from the domain's
//! totals and insights, amounts in the user's currency.

use async_graphql::{Enum, SimpleObject};
use kit::AppError;
use kit::money::Currency;
use kit::scalars::{Date, Decimal};

use super::{Expense, money};
use crate::domain::{self, Figure, Period, Severity};

/// Spending of one category.
#[derive(SimpleObject)]
pub struct CategoryTotal {
    pub category: String,
    pub total: Decimal,
    pub count: i64,
}

/// One calendar month, whole, in the user's timezone. Amounts are in the user's
/// currency; transactions in other currencies are not counted.
#[derive(SimpleObject)]
pub struct MonthlySummary {
    /// `YYYY-MM`.
    pub period: String,
    pub currency: String,
    /// EXPENSE transactions only (income is never counted as spending).
    pub total_spent: Decimal,
    pub total_income: Decimal,
    /// Number of EXPENSE transactions.
    pub transaction_count: i64,
    /// Number of INCOME transactions.
    pub income_count: i64,
    /// `totalSpent / transactionCount`, rounded to the minor unit (0 without expenses).
    pub average_per_transaction: Decimal,
    /// Largest first.
    pub category_breakdown: Vec<CategoryTotal>,
}

/// One month of a trend.
#[derive(SimpleObject)]
pub struct MonthTrend {
    /// `YYYY-MM`.
    pub month: String,
    pub total_spent: Decimal,
    pub total_income: Decimal,
    /// Number of EXPENSE transactions.
    pub transaction_count: i64,
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
    pub category: String,
    pub total_spent: Decimal,
    pub count: i64,
    /// Per transaction, rounded to the minor unit.
    pub average: Decimal,
    /// Share of the period's spending, in percent (two decimals).
    pub percentage: f64,
}

#[derive(SimpleObject)]
pub struct CategoryAnalysis {
    pub period: AnalysisPeriod,
    /// First day of the period.
    pub from: Date,
    /// Last day of the period, inclusive.
    pub to: Date,
    pub currency: String,
    /// Largest first.
    pub categories: Vec<CategoryStat>,
    pub total_spent: Decimal,
    /// null when nothing was spent.
    pub top_category: Option<String>,
}

#[derive(SimpleObject)]
pub struct DailyAmount {
    pub date: Date,
    pub amount: Decimal,
}

#[derive(SimpleObject)]
pub struct DailyPattern {
    /// First day (inclusive).
    pub from: Date,
    /// Today in the user's timezone (inclusive).
    pub to: Date,
    /// Every calendar day of the window, oldest first; days without spending are 0.
    pub daily: Vec<DailyAmount>,
    /// Total spending divided by the number of calendar days in the window (not by
    /// the days with spending), rounded to the minor unit.
    pub average_daily_spending: Decimal,
    /// What the average is taken over: always `CALENDAR_DAY`.
    pub average_over: &'static str,
    pub currency: String,
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
    pub name: String,
    pub value: String,
}

#[derive(SimpleObject)]
pub struct Insight {
    /// `TOP_CATEGORY`, `MONTH_OVER_MONTH`, `LARGE_EXPENSE`, `WEEKEND_VS_WEEKDAY`,
    /// `BUDGET_PACE`.
    pub kind: String,
    pub title: String,
    pub message: String,
    pub severity: InsightSeverity,
    pub figures: Vec<InsightFigure>,
    /// The expense the insight is about (`LARGE_EXPENSE`).
    pub expense: Option<Expense>,
}

impl Insight {
    /// An insight of the domain, its money figures in `currency`.
    pub fn new(i: domain::Insight, currency: Currency) -> Result<Insight, AppError> {
        let figures = i
            .figures
            .into_iter()
            .map(|(name, f)| {
                let value = match f {
                    Figure::Money(m) => money(m, currency).0.to_string(),
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
            kind: i.kind.as_str().to_string(),
            title: i.title,
            message: i.message,
            severity: i.severity.into(),
            figures,
            expense: i.expense_id.map(Expense::from),
        })
    }
}
