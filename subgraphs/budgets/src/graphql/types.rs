//! The budgets subgraph's GraphQL output and input types: output types wrap the
//! domain model.

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result};
use chrono::{DateTime, Days, Utc};
use kit::AppError;
use kit::money::{Currency, MoneyError, Total};
use kit::scalars::{Date, Decimal};

use super::{any_budget_view, loaders};
use crate::domain::{self, BudgetView, Period, Severity};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum BudgetPeriod {
    Weekly,
    Monthly,
    Yearly,
}

impl From<BudgetPeriod> for Period {
    fn from(p: BudgetPeriod) -> Self {
        match p {
            BudgetPeriod::Weekly => Period::Weekly,
            BudgetPeriod::Monthly => Period::Monthly,
            BudgetPeriod::Yearly => Period::Yearly,
        }
    }
}

impl From<Period> for BudgetPeriod {
    fn from(p: Period) -> Self {
        match p {
            Period::Weekly => BudgetPeriod::Weekly,
            Period::Monthly => BudgetPeriod::Monthly,
            Period::Yearly => BudgetPeriod::Yearly,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AlertSeverity {
    Warning,
    Critical,
}

impl From<Severity> for AlertSeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Warning => AlertSeverity::Warning,
            Severity::Critical => AlertSeverity::Critical,
        }
    }
}

/// A spending limit per category (or overall) and period.
pub struct Budget(pub BudgetView);

/// Minor units of `currency`, exact at any size (a sum may exceed one amount's limit).
fn money(minor: i128, currency: Currency) -> Decimal {
    Total::from_minor(minor, currency).into()
}

#[Object]
impl Budget {
    async fn id(&self) -> ID {
        ID(self.0.budget.id.to_string())
    }
    /// null: all EXPENSE spending.
    async fn category(&self) -> Option<&str> {
        self.0.budget.category.as_ref().map(|c| c.name.as_str())
    }
    async fn amount(&self) -> Decimal {
        self.0.budget.amount.into()
    }
    async fn currency(&self) -> String {
        self.0.budget.amount.currency().code().to_string()
    }
    async fn period(&self) -> BudgetPeriod {
        self.0.budget.period.into()
    }
    /// Percentages at which an alert is raised (default [80, 100]).
    async fn alert_thresholds(&self) -> &[i32] {
        &self.0.budget.thresholds
    }
    /// First day of the current period (in the user's timezone).
    async fn period_start(&self) -> Date {
        Date(self.0.start)
    }
    /// Last day of the current period, inclusive (the period is the half-open range
    /// from `periodStart` to the day after `periodEnd`).
    async fn period_end(&self) -> Date {
        Date(
            self.0
                .next
                .checked_sub_days(Days::new(1))
                .unwrap_or(self.0.next),
        )
    }
    /// EXPENSE spending of the current period in the budget's currency.
    async fn spent(&self) -> Decimal {
        money(self.0.spending.spent_minor, self.0.budget.amount.currency())
    }
    /// `amount - spent`; negative when over budget.
    async fn remaining(&self) -> Result<Decimal> {
        let amount = self.0.budget.amount;
        let remaining = i128::from(amount.amount_minor())
            .checked_sub(self.0.spending.spent_minor)
            .ok_or_else(|| AppError::total(MoneyError::TotalOutOfRange))?;
        Ok(money(remaining, amount.currency()))
    }
    async fn percent_used(&self) -> f64 {
        domain::percent_used(
            self.0.spending.spent_minor,
            self.0.budget.amount.amount_minor(),
        )
    }
    /// Expenses of this period in a currency the rates table has no rate for: not
    /// counted in `spent` (never guessed). Other currencies are converted.
    async fn uncounted_expenses(&self) -> i64 {
        self.0.spending.uncounted
    }
    /// The household whose shared budget this is (null: the caller's own); its other
    /// fields are resolved by the users subgraph, for its members.
    async fn household(&self) -> Option<Household> {
        self.0.budget.household.as_ref().map(|h| Household {
            id: ID(h.to_string()),
        })
    }
    /// This budget's alerts, newest first.
    async fn alerts(&self, ctx: &Context<'_>) -> Result<Vec<BudgetAlert>> {
        let b = &self.0.budget;
        let alerts = loaders(ctx)?
            .alerts_of
            .load(&b.user_id, b.id.clone())
            .await?
            .unwrap_or_default();
        Ok(alerts.into_iter().map(BudgetAlert).collect())
    }
}

/// A household, resolved by the users subgraph (for its members only).
#[derive(async_graphql::SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Household {
    pub id: ID,
}

/// Raised once when spending reaches a threshold within a period.
pub struct BudgetAlert(pub domain::Alert);

#[Object]
impl BudgetAlert {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn budget(&self, ctx: &Context<'_>) -> Result<Budget> {
        Ok(any_budget_view(ctx, &self.0.budget_id)
            .await?
            .ok_or_else(|| AppError::not_found("budget"))?)
    }
    async fn threshold(&self) -> i32 {
        self.0.threshold
    }
    /// Percentage used when the threshold was crossed.
    async fn percent_used(&self) -> f64 {
        self.0.percent_used
    }
    /// WARNING for thresholds below 100, CRITICAL from 100 on.
    async fn severity(&self) -> AlertSeverity {
        self.0.severity.into()
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn period_start(&self) -> Date {
        Date(self.0.period_start)
    }
    async fn read(&self) -> bool {
        self.0.read_at.is_some()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct CreateBudgetInput {
    /// null or absent: all EXPENSE spending.
    pub category: Option<String>,
    pub amount: Decimal,
    /// Default: the user's currency.
    pub currency: Option<String>,
    #[graphql(default_with = "BudgetPeriod::Monthly")]
    pub period: BudgetPeriod,
    /// Default [80, 100]; each 1..=1000, at most 5.
    pub alert_thresholds: Option<Vec<i32>>,
    /// Makes it a shared budget of this household (you must be one of its OWNERs): it
    /// counts the expenses shared with the household, in the household's currency by
    /// default, and alerts every member.
    pub household_id: Option<ID>,
}

#[derive(InputObject)]
pub struct UpdateBudgetInput {
    /// null: all spending.
    pub category: MaybeUndefined<String>,
    pub amount: Option<Decimal>,
    pub period: Option<BudgetPeriod>,
    pub alert_thresholds: Option<Vec<i32>>,
}
