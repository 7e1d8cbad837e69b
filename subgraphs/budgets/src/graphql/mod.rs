//! The budgets subgraph's GraphQL types and resolvers.

use async_graphql::{
    Context, EmptySubscription, Enum, ID, InputObject, MaybeUndefined, Object, Result, Schema,
};
use chrono::{DateTime, Days, Utc};
use kit::AppError;
use kit::money::{Currency, Money};
use kit::scalars::{Date, Decimal};
use kit::users::{UserDirectory, caller_profile};

use crate::domain::{self, Period};
use crate::service::{BudgetChange, BudgetView, Budgets, NewBudget};
use crate::store::AlertDoc;

pub type BudgetsSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn build_schema(budgets: Budgets, users: UserDirectory) -> BudgetsSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(budgets)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

use kit::auth::caller_id;

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Budgets, AppError> {
    kit::server::context_data(ctx)
}

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

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AlertSeverity {
    Warning,
    Critical,
}

/// A spending limit per category (or overall) and period.
pub struct Budget(pub BudgetView);

fn money(minor: i64, currency: &str) -> Result<Decimal, AppError> {
    let c = Currency::parse(currency).map_err(AppError::internal)?;
    Ok(Money::from_minor(minor, c)
        .map_err(AppError::internal)?
        .into())
}

#[Object]
impl Budget {
    async fn id(&self) -> ID {
        ID(self.0.doc.id.clone())
    }
    /// null: all EXPENSE spending.
    async fn category(&self) -> Option<&str> {
        self.0.doc.category.as_deref()
    }
    async fn amount(&self) -> Result<Decimal> {
        Ok(money(self.0.doc.amount_minor, &self.0.doc.currency)?)
    }
    async fn currency(&self) -> &str {
        &self.0.doc.currency
    }
    async fn period(&self) -> BudgetPeriod {
        match Period::parse(&self.0.doc.period) {
            Some(Period::Weekly) => BudgetPeriod::Weekly,
            Some(Period::Yearly) => BudgetPeriod::Yearly,
            _ => BudgetPeriod::Monthly,
        }
    }
    /// Percentages at which an alert is raised (default [80, 100]).
    async fn alert_thresholds(&self) -> &[i32] {
        &self.0.doc.thresholds
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
    async fn spent(&self) -> Result<Decimal> {
        Ok(money(self.0.spending.spent_minor, &self.0.doc.currency)?)
    }
    /// `amount - spent`; negative when over budget.
    async fn remaining(&self) -> Result<Decimal> {
        let d = &self.0.doc;
        Ok(money(
            d.amount_minor.saturating_sub(self.0.spending.spent_minor),
            &d.currency,
        )?)
    }
    async fn percent_used(&self) -> f64 {
        domain::percent_used(self.0.spending.spent_minor, self.0.doc.amount_minor)
    }
    /// Expenses of this period in a currency the rates table has no rate for: not
    /// counted in `spent` (never guessed). Other currencies are converted.
    async fn uncounted_expenses(&self) -> i64 {
        self.0.spending.uncounted
    }
    /// This budget's alerts, newest first.
    async fn alerts(&self, ctx: &Context<'_>) -> Result<Vec<BudgetAlert>> {
        let d = &self.0.doc;
        let alerts = service(ctx)?
            .store
            .alerts(&d.user_id, std::slice::from_ref(&d.id), false)
            .await?;
        Ok(alerts.into_iter().map(BudgetAlert).collect())
    }
}

/// Raised once when spending reaches a threshold within a period.
pub struct BudgetAlert(pub AlertDoc);

#[Object]
impl BudgetAlert {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn budget(&self, ctx: &Context<'_>) -> Result<Budget> {
        let (user, profile) = caller_profile(ctx).await?;
        let s = service(ctx)?;
        let doc = s
            .store
            .budget_any(&user, &self.0.budget_id)
            .await?
            .ok_or_else(|| AppError::not_found("budget"))?;
        Ok(Budget(
            s.view(doc, s.clock.today_in(profile.timezone)).await?,
        ))
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
        if self.0.severity == "CRITICAL" {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        }
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn period_start(&self) -> Result<Date> {
        Ok(
            Date::parse(&self.0.period_start)
                .map_err(|e| AppError::internal(anyhow::anyhow!(e)))?,
        )
    }
    async fn read(&self) -> bool {
        self.0.read_at.is_some()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.to_chrono()
    }
}

async fn budget_view(ctx: &Context<'_>, id: &str) -> Result<Option<Budget>, AppError> {
    let (user, profile) = caller_profile(ctx).await?;
    let s = service(ctx)?;
    let Some(doc) = s.store.budget(&user, id).await? else {
        return Ok(None);
    };
    Ok(Some(Budget(
        s.view(doc, s.clock.today_in(profile.timezone)).await?,
    )))
}

pub struct Query;

#[Object]
impl Query {
    /// The caller's budgets with their current period's spending.
    async fn budgets(&self, ctx: &Context<'_>) -> Result<Vec<Budget>> {
        let (user, profile) = caller_profile(ctx).await?;
        let s = service(ctx)?;
        let today = s.clock.today_in(profile.timezone);
        let mut out = Vec::new();
        for doc in s.store.budgets(&user).await? {
            out.push(Budget(s.view(doc, today).await?));
        }
        Ok(out)
    }

    async fn budget(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Budget>> {
        Ok(budget_view(ctx, &id).await?)
    }

    /// Alerts of the caller's live budgets, newest first.
    async fn budget_alerts(
        &self,
        ctx: &Context<'_>,
        unread_only: Option<bool>,
    ) -> Result<Vec<BudgetAlert>> {
        let user = caller_id(ctx)?;
        let s = service(ctx)?;
        let ids: Vec<String> = s
            .store
            .budgets(&user)
            .await?
            .into_iter()
            .map(|b| b.id)
            .collect();
        let alerts = s
            .store
            .alerts(&user, &ids, unread_only.unwrap_or(false))
            .await?;
        Ok(alerts.into_iter().map(BudgetAlert).collect())
    }

    /// Entity resolution for `Budget`: only the caller's own; others resolve to null.
    #[graphql(entity)]
    async fn find_budget_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Budget>> {
        Ok(budget_view(ctx, &id).await?)
    }

    /// Entity resolution for `BudgetAlert`: only the caller's own.
    #[graphql(entity)]
    async fn find_budget_alert_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<BudgetAlert>> {
        let user = caller_id(ctx)?;
        Ok(service(ctx)?
            .store
            .alert(&user, &id)
            .await?
            .map(BudgetAlert))
    }
}

#[derive(InputObject)]
pub struct CreateBudgetInput {
    /// null or absent: all EXPENSE spending.
    category: Option<String>,
    amount: Decimal,
    /// Default: the user's currency.
    currency: Option<String>,
    #[graphql(default_with = "BudgetPeriod::Monthly")]
    period: BudgetPeriod,
    /// Default [80, 100]; each 1..=1000, at most 5.
    alert_thresholds: Option<Vec<i32>>,
}

#[derive(InputObject)]
pub struct UpdateBudgetInput {
    /// null: all spending.
    category: MaybeUndefined<String>,
    amount: Option<Decimal>,
    period: Option<BudgetPeriod>,
    alert_thresholds: Option<Vec<i32>>,
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn create_budget(&self, ctx: &Context<'_>, input: CreateBudgetInput) -> Result<Budget> {
        let (user, profile) = caller_profile(ctx).await?;
        let view = service(ctx)?
            .create(
                &user,
                profile,
                NewBudget {
                    category: input.category,
                    amount: input.amount.0,
                    currency: input.currency,
                    period: input.period.into(),
                    thresholds: input.alert_thresholds,
                },
            )
            .await?;
        Ok(Budget(view))
    }

    /// Changing the amount re-arms the thresholds that are no longer reached.
    async fn update_budget(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateBudgetInput,
    ) -> Result<Budget> {
        let (user, profile) = caller_profile(ctx).await?;
        let change = BudgetChange {
            category: match input.category {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(c) => Some(Some(c)),
            },
            amount: input.amount.map(|d| d.0),
            period: input.period.map(Into::into),
            thresholds: input.alert_thresholds,
        };
        Ok(Budget(
            service(ctx)?.update(&user, profile, &id, change).await?,
        ))
    }

    async fn delete_budget(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user = caller_id(ctx)?;
        service(ctx)?.delete(&user, &id).await?;
        Ok(true)
    }

    async fn mark_budget_alert_read(&self, ctx: &Context<'_>, id: ID) -> Result<BudgetAlert> {
        let user = caller_id(ctx)?;
        let s = service(ctx)?;
        if !s.store.mark_read(&user, &id).await? {
            return Err(AppError::not_found("budget alert").into());
        }
        let alert = s
            .store
            .alert(&user, &id)
            .await?
            .ok_or_else(|| AppError::not_found("budget alert"))?;
        Ok(BudgetAlert(alert))
    }
}
