//! Applying expense events to the read models, and rebuilding them from the log.

use contract::events::{ExpenseChanged, ExpenseSnapshot};
use contract::ids::UserId;
use futures::TryStreamExt;
use kit::AppError;
use kit::clock::Clock;
use kit::events::{DomainEvent, Event, EventHandler};
use kit::money::{Currency, Money};

use crate::domain::{BucketKey, ExpenseState};
use crate::store::Store;

#[derive(Clone)]
pub struct Analytics {
    pub store: Store,
    pub clock: Clock,
    pub budgets: crate::budgets::BudgetsClient,
    /// Delivers the `weekly.summary` events.
    pub events: kit::events::Dispatcher,
}

/// The expense's state as `s` reports it; an amount the product could not have written
/// makes the event invalid (it is parked, not applied).
fn state(
    user_id: &UserId,
    data: &ExpenseChanged,
    s: &ExpenseSnapshot,
    deleted: bool,
) -> Result<ExpenseState, AppError> {
    let currency = Currency::parse(&s.currency).map_err(|e| AppError::money("currency", e))?;
    Ok(ExpenseState {
        id: data.expense_id.clone(),
        user_id: user_id.clone(),
        version: data.version,
        deleted,
        kind: s.kind,
        amount: Money::from_minor(s.amount_minor, currency)
            .map_err(|e| AppError::money("amountMinor", e))?,
        category: s.category.clone(),
        category_key: s.category_key.clone(),
        date: s.date,
        household: s.household.clone(),
    })
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
        self.apply(&envelope.user_id, change).await
    }

    /// Applies one expense change. Idempotent: the expense state is version-guarded and
    /// the rows it touches are recomputed from scratch.
    pub async fn apply(&self, user_id: &UserId, data: &ExpenseChanged) -> Result<(), AppError> {
        let mut keys: Vec<BucketKey> = Vec::new();
        // The row the expense was in before any version we stored.
        if let Some(old) = self.store.get_expense(&data.expense_id).await? {
            if old.user_id != *user_id {
                return Err(AppError::validation(
                    "userId",
                    "expense belongs to another user",
                ));
            }
            keys.push(old.bucket());
        }
        let new_state = match (&data.after, &data.before) {
            (Some(after), _) => Some(state(user_id, data, after, false)?),
            (None, Some(before)) => Some(state(user_id, data, before, true)?),
            (None, None) => None,
        };
        if let Some(s) = &new_state {
            self.store.put_expense(s).await?;
            keys.push(s.bucket());
        }
        if let Some(b) = &data.before {
            keys.push(state(user_id, data, b, true)?.bucket());
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
                    Some(change) => self.apply(&event.user_id, change).await,
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
