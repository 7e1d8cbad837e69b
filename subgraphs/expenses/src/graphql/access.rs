//! Who may read and change an expense: the one place this subgraph decides it. A
//! personal expense is its owner's alone; one shared with a household is also read by
//! the household's members (every role), and only an owner or member of the household
//! may share an expense with it, change a shared one or take it back. Roles are asked
//! of the users service on every request (`kit::households`), so a removed member is
//! refused from their next request on.

use async_graphql::Context;
use contract::households::Need;
use contract::ids::HouseholdId;
use kit::AppError;
pub use kit::households::list_owner;

use crate::domain::Expense;

/// The caller may read `expense`: their own, or shared with a household they are in.
pub async fn may_read(ctx: &Context<'_>, expense: &Expense) -> Result<bool, AppError> {
    let user = kit::auth::caller_id(ctx)?;
    if expense.user_id == user {
        return Ok(true);
    }
    match &expense.household {
        Some(h) => kit::households::may_read(ctx, h).await,
        None => Ok(false),
    }
}

/// The caller may move their expense from being shared with `before` to `after`
/// (either `None`: personal): they must be an owner or member of each household
/// involved. Asked by the service on the version a change is written over.
pub async fn may_share(
    ctx: &Context<'_>,
    before: Option<HouseholdId>,
    after: Option<HouseholdId>,
) -> Result<(), AppError> {
    if let Some(h) = &before {
        kit::households::authorize(ctx, h, Need::Write).await?;
    }
    if let Some(h) = after.as_ref().filter(|h| before.as_ref() != Some(*h)) {
        kit::households::authorize(ctx, h, Need::Write).await?;
    }
    Ok(())
}
