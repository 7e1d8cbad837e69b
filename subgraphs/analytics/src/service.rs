//! Applying expense events to the read models, and rebuilding them from the log.

use contract::events::{ExpenseChanged, ExpenseSnapshot};
use futures::TryStreamExt;
use kit::AppError;
use kit::clock::Clock;
use kit::events::{DomainEvent, Event, EventHandler};

use crate::store::{BucketKey, ExpenseDoc, Store};

#[derive(Clone)]
pub struct Analytics {
    pub store: Store,
    pub clock: Clock,
    pub budgets: crate::budgets::BudgetsClient,
    /// Delivers the `weekly.summary` events.
    pub events: kit::events::Dispatcher,
}

fn state(user_id: &str, data: &ExpenseChanged, s: &ExpenseSnapshot, deleted: bool) -> ExpenseDoc {
    ExpenseDoc {
        id: data.expense_id.to_string(),
        user_id: user_id.to_string(),
        version: data.version,
        deleted,
        kind: s.kind.as_str().to_string(),
        amount_minor: s.amount_minor,
        currency: s.currency.clone(),
        category: s.category.clone(),
        category_key: s.category_key.clone(),
        date: s.date.to_string(),
    }
}

impl Analytics {
    /// Logs the event, then applies it.
    pub async fn receive(&self, envelope: &Event, event: &DomainEvent) -> Result<(), AppError> {
        let Some(change) = event.expense_change() else {
            return Err(AppError::validation(
                "type",
                format!("analytics does not consume {} events", event.kind()),
            ));
        };
        self.store.log_event(envelope).await?;
        self.apply(envelope.user_id.as_str(), change).await
    }

    /// Applies one expense change. Idempotent: the expense state is version-guarded and
    /// the rows it touches are recomputed from scratch.
    pub async fn apply(&self, user_id: &str, data: &ExpenseChanged) -> Result<(), AppError> {
        let mut keys: Vec<BucketKey> = Vec::new();
        // The row the expense was in before any version we stored.
        if let Some(old) = self.store.get_expense(data.expense_id.as_str()).await? {
            if old.user_id != user_id {
                return Err(AppError::validation(
                    "userId",
                    "expense belongs to another user",
                ));
            }
            keys.push(BucketKey::of(&old));
        }
        let new_state = match (&data.after, &data.before) {
            (Some(after), _) => Some(state(user_id, data, after, false)),
            (None, Some(before)) => Some(state(user_id, data, before, true)),
            (None, None) => None,
        };
        if let Some(s) = &new_state {
            self.store.put_expense(s).await?;
            keys.push(BucketKey::of(s));
        }
        if let Some(b) = &data.before {
            keys.push(BucketKey::of(&state(user_id, data, b, true)));
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
            let applied = match DomainEvent::from_event(&event) {
                Ok(d) => match d.expense_change() {
                    Some(change) => self.apply(event.user_id.as_str(), change).await,
                    None => Ok(()),
                },
                Err(e) => Err(e.into()),
            };
            if let Err(e) = applied {
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
    async fn handle(&self, envelope: &Event, event: DomainEvent) -> Result<(), AppError> {
        self.0.receive(envelope, &event).await
    }
}
