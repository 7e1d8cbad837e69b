//! Applying expense events to the read models, and rebuilding them from the log.

use futures::TryStreamExt;
use futures::future::BoxFuture;
use kit::AppError;
use kit::clock::Clock;
use kit::events::{Event, EventHandler};
use serde::Deserialize;

use crate::store::{BucketKey, ExpenseDoc, Store};

#[derive(Clone)]
pub struct Analytics {
    pub store: Store,
    pub clock: Clock,
    pub budgets: crate::budgets::BudgetsClient,
}

/// The expense fields the expenses subgraph puts in its events.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    #[serde(rename = "type")]
    kind: String,
    amount_minor: i64,
    currency: String,
    category: String,
    category_key: String,
    date: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExpenseEventData {
    expense_id: String,
    version: i64,
    before: Option<Snapshot>,
    after: Option<Snapshot>,
}

fn state(user_id: &str, data: &ExpenseEventData, s: &Snapshot, deleted: bool) -> ExpenseDoc {
    ExpenseDoc {
        id: data.expense_id.clone(),
        user_id: user_id.to_string(),
        version: data.version,
        deleted,
        kind: s.kind.clone(),
        amount_minor: s.amount_minor,
        currency: s.currency.clone(),
        category: s.category.clone(),
        category_key: s.category_key.clone(),
        date: s.date.clone(),
    }
}

impl Analytics {
    /// Logs the event, then applies it.
    pub async fn receive(&self, event: &Event) -> Result<(), AppError> {
        if !event.kind.starts_with("expense.") {
            tracing::debug!(kind = %event.kind, "ignoring event");
            return Ok(());
        }
        self.store.log_event(event).await?;
        match self.apply(event).await {
            // A malformed event is kept in the log and acknowledged: refusing it would
            // block every later event of the user.
            Err(AppError::Validation { message, .. }) => {
                tracing::warn!(event = %event.id, error = %message, "unusable expense event");
                Ok(())
            }
            other => other,
        }
    }

    /// Applies one expense event. Idempotent: the expense state is version-guarded and
    /// the rows it touches are recomputed from scratch.
    pub async fn apply(&self, event: &Event) -> Result<(), AppError> {
        let data: ExpenseEventData = serde_json::from_value(event.data.clone())
            .map_err(|e| AppError::validation("data", format!("not an expense event: {e}")))?;
        let mut keys: Vec<BucketKey> = Vec::new();
        // The row the expense was in before any version we stored.
        if let Some(old) = self.store.get_expense(&data.expense_id).await? {
            if old.user_id != event.user_id {
                return Err(AppError::validation(
                    "userId",
                    "expense belongs to another user",
                ));
            }
            keys.push(BucketKey::of(&old));
        }
        let new_state = match (&data.after, &data.before) {
            (Some(after), _) => Some(state(&event.user_id, &data, after, false)),
            (None, Some(before)) => Some(state(&event.user_id, &data, before, true)),
            (None, None) => None,
        };
        if let Some(s) = &new_state {
            self.store.put_expense(s).await?;
            keys.push(BucketKey::of(s));
        }
        if let Some(b) = &data.before {
            keys.push(BucketKey::of(&state(&event.user_id, &data, b, true)));
        }
        keys.dedup();
        for k in &keys {
            self.store.recompute(k).await?;
        }
        Ok(())
    }

    /// Rebuilds every read model by replaying the analytics' own event log, oldest first.
    /// Returns the number of events replayed.
    pub async fn rebuild(&self) -> Result<u64, AppError> {
        self.store.clear_read_models().await?;
        let mut cursor = self.store.all_events().await?;
        let mut n = 0;
        while let Some(doc) = cursor.try_next().await? {
            let event = doc.to_event()?;
            if let Err(e) = self.apply(&event).await {
                if let AppError::Internal(_) = e {
                    return Err(e);
                }
                tracing::warn!(event = %event.id, error = %e.public_message(), "skipping unusable event");
            }
            n += 1;
        }
        Ok(n)
    }
}

/// The `/internal/events` handler.
pub struct ExpenseEvents(pub Analytics);

impl EventHandler for ExpenseEvents {
    fn handle(&self, event: Event) -> BoxFuture<'_, Result<(), AppError>> {
        Box::pin(async move { self.0.receive(&event).await })
    }
}
