//! The GraphQL schema of the analytics subgraph: output types (`types`), the queries
//! (`query`) and the entities it refers to (`entities`). No mutations.

mod entities;
mod query;
mod types;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Schema};
use contract::ids::UserId;
use kit::AppError;
use kit::money::{Currency, Total};
use kit::scalars::Decimal;
use kit::users::{UserDirectory, UserProfile};

use crate::service::Analytics;

pub use entities::Expense;
pub use query::Query;
pub use types::{
    AnalysisPeriod, CategoryAnalysis, CategoryStat, CategoryTotal, DailyAmount, DailyPattern,
    Insight, InsightFigure, InsightSeverity, MonthTrend, MonthlySummary,
};

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

/// The verified caller and their profile, which is remembered for the weekly job.
async fn caller_profile(ctx: &Context<'_>) -> Result<(UserId, UserProfile), AppError> {
    let (id, profile) = kit::users::caller_profile(ctx).await?;
    service(ctx)?.store.remember_profile(&id, &profile).await?;
    Ok((id, profile))
}

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Analytics, AppError> {
    kit::server::context_data(ctx)
}

/// Minor units of `currency`, exact at any size (a total may exceed one amount's limit).
fn money(minor: i128, currency: Currency) -> Decimal {
    Total::from_minor(minor, currency).into()
}

/// Formats minor units as money text (`"12.30 USD"`), for insight messages.
fn money_text(currency: Currency) -> impl Fn(i128) -> String {
    move |minor| Total::from_minor(minor, currency).to_string()
}
