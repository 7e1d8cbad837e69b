//! The GraphQL schema of the notifications subgraph: the types ([`types`]), the
//! `Query` ([`query`] and the federation entities of [`entities`]), the `Mutation`
//! ([`mutation`]) and the `Subscription` ([`subscription`]).

mod entities;
mod mutation;
mod query;
mod subscription;
mod types;

use async_graphql::{Context, MergedObject, Schema};
use contract::ids::UserId;
use kit::AppError;
use kit::users::{AccessToken, UserDirectory};

use crate::domain::Preferences;
use crate::service::Notifications;

pub use entities::{Budget, BudgetAlert, EntityQuery};
pub use mutation::Mutation;
pub use query::NotificationQuery;
pub use subscription::{SubscriptionRoot, user_feed};
pub use types::*;

pub type NotificationsSchema = Schema<Query, Mutation, SubscriptionRoot>;

// The `Query` type: its fields, and the entities resolved for the router.
#[derive(MergedObject, Default)]
pub struct Query(NotificationQuery, EntityQuery);

pub fn build_schema(n: Notifications, users: UserDirectory) -> NotificationsSchema {
    Schema::build(Query::default(), Mutation, SubscriptionRoot)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(n)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

pub fn bare_schema() -> NotificationsSchema {
    Schema::build(Query::default(), Mutation, SubscriptionRoot)
        .enable_federation()
        .enable_subscription_in_federation()
        .finish()
}

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Notifications, AppError> {
    kit::server::context_data(ctx)
}

/// The caller's preferences, with the timezone of their profile.
async fn load_preferences(ctx: &Context<'_>, user: &UserId) -> Result<Preferences, AppError> {
    let svc = service(ctx)?;
    let timezone = match (ctx.data_opt::<AccessToken>(), ctx.data::<UserDirectory>()) {
        (Some(token), Ok(users)) => Some(users.profile(user.as_str(), &token.0).await?.timezone),
        _ => None,
    };
    svc.preferences_in(user, timezone).await
}
