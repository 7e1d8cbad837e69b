//! Federation entities this subgraph refers to but does not resolve.

use async_graphql::{ID, SimpleObject};
use contract::ids::ExpenseId;

/// An expense, owned and resolved by the expenses subgraph.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Expense {
    id: ID,
}

impl From<ExpenseId> for Expense {
    fn from(id: ExpenseId) -> Expense {
        Expense {
            id: ID(id.into_string()),
        }
    }
}
