//! Federation entities: the `Notification` resolver, and the entities of the budgets
//! subgraph that notifications point at.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use contract::ids::NotificationId;

use super::{Notification, service};

/// A budget, owned and resolved by the budgets subgraph.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Budget {
    pub id: ID,
}

/// A budget alert, owned and resolved by the budgets subgraph.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct BudgetAlert {
    pub id: ID,
}

#[derive(Default)]
pub struct EntityQuery;

#[Object]
impl EntityQuery {
    /// Entity resolution for `Notification`: only the caller's own.
    #[graphql(entity)]
    async fn find_notification_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<Notification>> {
        let user = kit::auth::caller_id(ctx)?;
        let svc = service(ctx)?;
        // No notification has an id that is not one.
        let Ok(id) = NotificationId::parse(&id) else {
            return Ok(None);
        };
        Ok(svc.store.get(&user, &id).await?.map(Notification::from))
    }
}
