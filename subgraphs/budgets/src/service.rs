//! Budgets, the spending ledger and alerts.
//!
//! The ledger holds one entry per expense (its latest version), built from the
//! expenses subgraph's events. After each event the budgets whose period contains the
//! expense's old or new date are evaluated: for each threshold reached, one alert is
//! inserted under the unique key `budget|periodStart|threshold|generation`, so a
//! crossing alerts exactly once however often (or concurrently) it is evaluated. The
//! alert document carries its `budget.alert` event for the notifications subgraph in
//! the same insert.
//!
//! Periods are evaluated where the expense falls, so a back-dated expense can raise an
//! alert for a past period (once, like any other). Amounts in another currency than the
//! budget's are converted with the rates table; without a rate they are not counted and
//! show in `Budget.uncountedExpenses`.

use chrono::NaiveDate;
use contract::events::{BudgetAlertRaised, DomainEvent, ExpenseChanged, ExpenseSnapshot, TxKind};
use contract::ids::{AlertId, BudgetId, UserId};
use kit::AppError;
use kit::clock::Clock;
use kit::events::{Dispatcher, Event, EventHandler, Outbox};
use kit::money::{Currency, Decimal, Money, positive_amount};
use kit::users::UserProfile;
use mongodb::bson;

use crate::domain::{self, Period, Severity};
use crate::store::{AlertDoc, BudgetDoc, LedgerDoc, RearmDoc, Spending, Store, unique_key};

#[derive(Clone)]
pub struct Budgets {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub clock: Clock,
}

pub struct NewBudget {
    pub category: Option<String>,
    pub amount: Decimal,
    pub currency: Option<String>,
    pub period: Period,
    pub thresholds: Option<Vec<i32>>,
}

#[derive(Default)]
pub struct BudgetChange {
    /// `Some(None)`: make it an overall budget.
    pub category: Option<Option<String>>,
    pub amount: Option<Decimal>,
    pub period: Option<Period>,
    pub thresholds: Option<Vec<i32>>,
}

/// A budget with its current period and spending.
#[derive(Debug, Clone)]
pub struct BudgetView {
    pub doc: BudgetDoc,
    pub start: NaiveDate,
    pub next: NaiveDate,
    pub spending: Spending,
}

fn category_name(raw: &str) -> Result<(String, String), AppError> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > 40 {
        return Err(AppError::validation(
            "category",
            "a category has 1 to 40 characters (or null for all spending)",
        ));
    }
    Ok((name.to_string(), name.to_lowercase()))
}

impl Budgets {
    pub fn new(db: &mongodb::Database, dispatcher: Dispatcher, clock: Clock) -> Budgets {
        Budgets {
            store: Store::new(db),
            dispatcher,
            clock,
        }
    }

    /// The budget's stored period; an unknown one is an internal error (logged), never
    /// a silent default.
    fn period_of(b: &BudgetDoc) -> Result<Period, AppError> {
        Period::parse(&b.period).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "budget {} has an unknown stored period {:?}",
                b.id,
                b.period
            ))
        })
    }

    pub async fn view(&self, doc: BudgetDoc, today: NaiveDate) -> Result<BudgetView, AppError> {
        let (start, next) = Self::period_of(&doc)?.range(today);
        let spending = self
            .store
            .spending(&doc, &domain::day_key(start), &domain::day_key(next))
            .await?;
        Ok(BudgetView {
            doc,
            start,
            next,
            spending,
        })
    }

    #[tracing::instrument(skip(self, profile, input), fields(user = %user_id))]
    pub async fn create(
        &self,
        user_id: &str,
        profile: UserProfile,
        input: NewBudget,
    ) -> Result<BudgetView, AppError> {
        let currency = match input.currency.as_deref() {
            None => profile.currency,
            Some(c) => Currency::parse(c).map_err(|e| AppError::money("currency", e))?,
        };
        let amount = positive_amount(input.amount, currency)?;
        let thresholds = domain::thresholds(input.thresholds.as_deref())?;
        let category = input.category.as_deref().map(category_name).transpose()?;
        let now = self.clock.now();
        let category_key = category.as_ref().map(|c| c.1.clone());
        let doc = BudgetDoc {
            id: kit::ids::new_id(),
            user_id: user_id.to_string(),
            category: category.map(|c| c.0),
            unique_key: unique_key(user_id, category_key.as_deref(), input.period.as_str()),
            category_key,
            amount_minor: amount.amount_minor(),
            currency: currency.code().to_string(),
            period: input.period.as_str().to_string(),
            thresholds,
            rearmed: Vec::new(),
            deleted: false,
            version: 1,
            created_at: bson::DateTime::from_chrono(now),
            updated_at: bson::DateTime::from_chrono(now),
        };
        if !self.store.insert_budget(&doc).await? {
            return Err(AppError::conflict(
                "you already have a budget for this category and period",
                Some("category"),
            ));
        }
        let view = self
            .view(doc, self.clock.today_in(profile.timezone))
            .await?;
        self.evaluate(&view.doc, view.start, view.next).await?;
        Ok(view)
    }

    #[tracing::instrument(skip(self, profile, change), fields(user = %user_id))]
    pub async fn update(
        &self,
        user_id: &str,
        profile: UserProfile,
        id: &str,
        change: BudgetChange,
    ) -> Result<BudgetView, AppError> {
        let today = self.clock.today_in(profile.timezone);
        let change = &change;
        kit::db::optimistic("budget", || async move {
            let before = self.store.owned_budget(user_id, id).await?;
            let mut after = before.clone();
            let currency = Currency::parse(&before.currency).map_err(AppError::internal)?;
            if let Some(a) = change.amount {
                after.amount_minor = positive_amount(a, currency)?.amount_minor();
            }
            if let Some(t) = &change.thresholds {
                after.thresholds = domain::thresholds(Some(t))?;
            }
            if let Some(c) = &change.category {
                let c = c.as_deref().map(category_name).transpose()?;
                after.category_key = c.as_ref().map(|c| c.1.clone());
                after.category = c.map(|c| c.0);
            }
            if let Some(p) = change.period {
                after.period = p.as_str().to_string();
            }
            after.unique_key = unique_key(user_id, after.category_key.as_deref(), &after.period);
            after.version = before.version + 1;
            after.updated_at = bson::DateTime::from_chrono(self.clock.now());
            // Re-arm the thresholds the change un-crossed in the current period.
            let (start, next) = Self::period_of(&after)?.range(today);
            let spent = self
                .store
                .spending(&after, &domain::day_key(start), &domain::day_key(next))
                .await?
                .spent_minor;
            let start_text = start.to_string();
            for t in after.thresholds.clone() {
                if !domain::crossed(spent, after.amount_minor, t) {
                    let generation = after.generation(t, &start_text) + 1;
                    after
                        .rearmed
                        .retain(|r| !(r.threshold == t && r.period_start == start_text));
                    after.rearmed.push(RearmDoc {
                        threshold: t,
                        period_start: start_text.clone(),
                        generation,
                    });
                }
            }
            match self.store.replace_budget(&after, before.version).await? {
                None => Ok(None),
                Some(false) => Err(AppError::conflict(
                    "you already have a budget for this category and period",
                    Some("category"),
                )),
                Some(true) => {
                    let view = self.view(after, today).await?;
                    self.evaluate(&view.doc, view.start, view.next).await?;
                    Ok(Some(view))
                }
            }
        })
        .await
    }

    #[tracing::instrument(skip(self), fields(user = %user_id))]
    pub async fn delete(&self, user_id: &str, id: &str) -> Result<(), AppError> {
        kit::db::optimistic("budget", || async move {
            let before = self.store.owned_budget(user_id, id).await?;
            let mut after = before.clone();
            after.deleted = true;
            after.unique_key = format!("deleted|{}", before.id);
            after.version += 1;
            let written = self.store.replace_budget(&after, before.version).await? == Some(true);
            Ok(written.then_some(()))
        })
        .await
    }

    /// Creates the alerts due for `budget` in `[start, next)`; returns how many.
    #[tracing::instrument(skip(self, budget), fields(budget = %budget.id))]
    pub async fn evaluate(
        &self,
        budget: &BudgetDoc,
        start: NaiveDate,
        next: NaiveDate,
    ) -> Result<usize, AppError> {
        let spending = self
            .store
            .spending(budget, &domain::day_key(start), &domain::day_key(next))
            .await?;
        let spent = spending.spent_minor;
        let currency = Currency::parse(&budget.currency).map_err(AppError::internal)?;
        let money = |minor: i64| {
            // Beyond the largest amount the product keeps: this change cannot be
            // applied as it is (its event is parked, never retried forever).
            Money::from_minor(minor, currency)
                .map(|m| m.amount_text())
                .map_err(|e| AppError::validation("amount", format!("the period's spending: {e}")))
        };
        let percent = domain::percent_used(spent, budget.amount_minor);
        let start_text = start.to_string();
        let mut created = 0;
        for &t in &budget.thresholds {
            if !domain::crossed(spent, budget.amount_minor, t) {
                continue;
            }
            let generation = budget.generation(t, &start_text);
            let severity = Severity::of_threshold(i64::from(t));
            let message = domain::alert_message(
                budget.category.as_deref(),
                t,
                percent,
                &money(spent)?,
                &money(budget.amount_minor)?,
                currency.code(),
            );
            let now = self.clock.now();
            let id = kit::ids::new_id();
            let event = DomainEvent::BudgetAlert(BudgetAlertRaised {
                alert_id: AlertId::from_trusted(&id),
                budget_id: BudgetId::from_trusted(&budget.id),
                category: budget.category.clone(),
                threshold: i64::from(t),
                percent_used: percent,
                severity,
                message: message.clone(),
                period_start: start,
                spent_minor: spent,
                amount_minor: budget.amount_minor,
                currency: budget.currency.clone(),
            })
            .into_event(&UserId::from_trusted(&budget.user_id), now);
            let alert = AlertDoc {
                dedup_key: format!("{}|{}|{}|{}", budget.id, start_text, t, generation),
                id,
                user_id: budget.user_id.clone(),
                budget_id: budget.id.clone(),
                threshold: t,
                generation,
                period_start: start_text.clone(),
                percent_used: percent,
                severity: severity.as_str().to_string(),
                message,
                read_at: None,
                created_at: bson::DateTime::from_chrono(now),
                events: Outbox::with(event, &self.dispatcher.consumer_names()),
            };
            if self.store.insert_alert(&alert).await? {
                created += 1;
            }
        }
        if created > 0 {
            self.dispatcher.wake();
        }
        Ok(created)
    }

    /// Applies an `expense.*` event: ledger first (idempotent by expense version), then
    /// the alerts of every budget whose period holds the old or the new date.
    #[tracing::instrument(skip(self, data), fields(expense = %data.expense_id, user = %user_id))]
    pub async fn apply_expense_event(
        &self,
        user_id: &str,
        data: &ExpenseChanged,
    ) -> Result<(), AppError> {
        let entry = match &data.after {
            Some(a) => LedgerDoc {
                id: data.expense_id.to_string(),
                user_id: user_id.to_string(),
                version: data.version,
                kind: a.kind.as_str().to_string(),
                amount_minor: a.amount_minor,
                currency: a.currency.clone(),
                category_key: a.category_key.clone(),
                day: domain::day_key(a.date),
                state: "live".to_string(),
            },
            None => LedgerDoc {
                id: data.expense_id.to_string(),
                user_id: user_id.to_string(),
                version: data.version,
                kind: String::new(),
                amount_minor: 0,
                currency: String::new(),
                category_key: String::new(),
                day: String::new(),
                state: "deleted".to_string(),
            },
        };
        self.store.apply(&entry).await?;
        let touched: Vec<&ExpenseSnapshot> = [data.before.as_ref(), data.after.as_ref()]
            .into_iter()
            .flatten()
            .filter(|s| s.kind == TxKind::Expense)
            .collect();
        if touched.is_empty() {
            return Ok(());
        }
        for budget in self.store.budgets(user_id).await? {
            let period = Self::period_of(&budget)?;
            let mut periods: Vec<(NaiveDate, NaiveDate)> = Vec::new();
            for s in &touched {
                let applies = budget
                    .category_key
                    .as_ref()
                    .is_none_or(|c| *c == s.category_key);
                if applies {
                    let p = period.range(s.date);
                    if !periods.contains(&p) {
                        periods.push(p);
                    }
                }
            }
            for (start, next) in periods {
                self.evaluate(&budget, start, next).await?;
            }
        }
        Ok(())
    }
}

/// The consumer side of `POST /internal/events`: `expense.*` events.
pub struct ExpenseEvents(pub Budgets);

impl EventHandler for ExpenseEvents {
    async fn handle(&self, envelope: &Event, event: DomainEvent) -> Result<(), AppError> {
        match event.expense_change() {
            Some(change) => {
                self.0
                    .apply_expense_event(envelope.user_id.as_str(), change)
                    .await
            }
            None => Err(AppError::validation(
                "type",
                format!("budgets does not consume {} events", event.kind()),
            )),
        }
    }
}
