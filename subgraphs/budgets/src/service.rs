//! Budgets, the spending ledger and alerts.
//!
//! The ledger holds one entry per expense (its latest version), built from the
//! expenses subgraph's events. After each event the budgets the change can move are
//! evaluated — of its category or overall, in a currency it counts in (the budget's
//! own, or one the rates table converts), for the periods holding its old and new
//! dates — with their spending read in one ledger query. For each threshold reached,
//! one alert is inserted under the unique key `budget|periodStart|threshold|generation`,
//! so a crossing alerts exactly once however often (or concurrently) it is evaluated.
//! The alert document carries its `budget.alert` event for the notifications subgraph
//! in the same insert.
//!
//! Periods are evaluated where the expense falls, so a back-dated expense can raise an
//! alert for a past period (once, like any other). Amounts in another currency than the
//! budget's are converted with the rates table; without a rate they are not counted and
//! show in `Budget.uncountedExpenses`.

use chrono::NaiveDate;
use contract::events::{BudgetAlertRaised, DomainEvent, ExpenseChanged, ExpenseSnapshot, TxKind};
use contract::households::Ownership;
use contract::ids::{AlertId, BudgetId, UserId};
use kit::AppError;
use kit::clock::Clock;
use kit::events::{Dispatcher, Event, EventHandler, Outbox};
use kit::households::Membership;
use kit::money::{Currency, Decimal, Money, Total, positive_amount};
use kit::users::UserProfile;

use crate::domain::{
    self, Alert, Budget, BudgetView, Category, LedgerEntry, LiveEntry, Period, Severity,
};
use crate::store::Store;

#[derive(Clone)]
pub struct Budgets {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub clock: Clock,
}

pub struct NewBudget {
    /// `None`: all spending. Checked here (1 to 40 characters).
    pub category: Option<String>,
    pub amount: Decimal,
    /// `None`: the user's currency.
    pub currency: Option<Currency>,
    pub period: Period,
    pub thresholds: Option<Vec<i32>>,
    /// A household's shared budget: the caller's membership there (checked to be an
    /// owner's). Its currency is the default.
    pub household: Option<Membership>,
}

#[derive(Default)]
pub struct BudgetChange {
    /// `Some(None)`: make it an overall budget.
    pub category: Option<Option<String>>,
    pub amount: Option<Decimal>,
    pub period: Option<Period>,
    pub thresholds: Option<Vec<i32>>,
}

const TAKEN: &str = "a budget for this category and period already exists";

impl Budgets {
    pub fn new(db: &mongodb::Database, dispatcher: Dispatcher, clock: Clock) -> Budgets {
        Budgets {
            store: Store::new(db),
            dispatcher,
            clock,
        }
    }

    /// The budget with its period containing `today` and what it used in it.
    pub async fn view(&self, budget: Budget, today: NaiveDate) -> Result<BudgetView, AppError> {
        let (start, next) = budget.period.range(today);
        let spending = self.store.spending(&budget, start, next).await?;
        Ok(BudgetView {
            budget,
            start,
            next,
            spending,
        })
    }

    #[tracing::instrument(skip(self, profile, input), fields(user = %user_id))]
    pub async fn create(
        &self,
        user_id: &UserId,
        profile: UserProfile,
        input: NewBudget,
    ) -> Result<BudgetView, AppError> {
        let currency = input.currency.unwrap_or(match &input.household {
            Some(m) => m.currency,
            None => profile.currency,
        });
        let amount = positive_amount(input.amount, currency)?;
        let thresholds = domain::thresholds(input.thresholds.as_deref())?;
        let category = input.category.as_deref().map(Category::parse).transpose()?;
        let now = self.clock.now();
        let budget = Budget {
            id: BudgetId::new(),
            user_id: user_id.clone(),
            household: input.household.map(|m| m.household),
            category,
            amount,
            period: input.period,
            thresholds,
            rearmed: Vec::new(),
            deleted: false,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        if !self.store.insert_budget(&budget).await? {
            return Err(AppError::conflict(TAKEN, Some("category")));
        }
        let view = self
            .view(budget, self.clock.today_in(profile.timezone))
            .await?;
        self.evaluate(&view.budget, view.start, view.next).await?;
        Ok(view)
    }

    #[tracing::instrument(skip(self, profile, change))]
    pub async fn update(
        &self,
        owner: &Ownership,
        profile: UserProfile,
        id: &BudgetId,
        change: BudgetChange,
    ) -> Result<BudgetView, AppError> {
        let today = self.clock.today_in(profile.timezone);
        let change = &change;
        kit::db::optimistic("budget", || async move {
            let before = self.store.owned_budget(owner, id).await?;
            let mut after = before.clone();
            if let Some(a) = change.amount {
                after.amount = positive_amount(a, before.amount.currency())?;
            }
            if let Some(t) = &change.thresholds {
                after.thresholds = domain::thresholds(Some(t))?;
            }
            if let Some(c) = &change.category {
                after.category = c.as_deref().map(Category::parse).transpose()?;
            }
            if let Some(p) = change.period {
                after.period = p;
            }
            after.version = before.version + 1;
            after.updated_at = self.clock.now();
            // Re-arm the thresholds the change un-crossed in the current period.
            let (start, next) = after.period.range(today);
            let spent = self.store.spending(&after, start, next).await?.spent_minor;
            for t in after.thresholds.clone() {
                if !domain::crossed(spent, after.amount.amount_minor(), t) {
                    after.rearm(t, start);
                }
            }
            match self.store.replace_budget(&after, before.version).await? {
                None => Ok(None),
                Some(false) => Err(AppError::conflict(TAKEN, Some("category"))),
                Some(true) => {
                    let view = self.view(after, today).await?;
                    self.evaluate(&view.budget, view.start, view.next).await?;
                    Ok(Some(view))
                }
            }
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, owner: &Ownership, id: &BudgetId) -> Result<(), AppError> {
        kit::db::optimistic("budget", || async move {
            let before = self.store.owned_budget(owner, id).await?;
            let mut after = before.clone();
            after.deleted = true;
            after.version += 1;
            let written = self.store.replace_budget(&after, before.version).await? == Some(true);
            Ok(written.then_some(()))
        })
        .await
    }

    /// The budgets with their periods containing `today` and what they used in them, in
    /// the order given: one ledger query however many budgets (see `Store::spendings`).
    pub async fn views(
        &self,
        budgets: Vec<Budget>,
        today: NaiveDate,
    ) -> Result<Vec<BudgetView>, AppError> {
        let periods: Vec<(&Budget, NaiveDate, NaiveDate)> = budgets
            .iter()
            .map(|b| {
                let (start, next) = b.period.range(today);
                (b, start, next)
            })
            .collect();
        let spendings = self.store.spendings(&periods).await?;
        Ok(budgets
            .into_iter()
            .zip(spendings)
            .map(|(budget, spending)| {
                let (start, next) = budget.period.range(today);
                BudgetView {
                    budget,
                    start,
                    next,
                    spending,
                }
            })
            .collect())
    }

    /// Creates the alerts due for `budget` in `[start, next)`; returns how many.
    pub async fn evaluate(
        &self,
        budget: &Budget,
        start: NaiveDate,
        next: NaiveDate,
    ) -> Result<usize, AppError> {
        let spent = self.store.spending(budget, start, next).await?.spent_minor;
        self.raise_alerts(budget, start, spent).await
    }

    /// Creates the alerts due for `budget` in the period from `start` where it used
    /// `spent` (minor units of its currency); returns how many.
    #[tracing::instrument(skip(self, budget), fields(budget = %budget.id))]
    async fn raise_alerts(
        &self,
        budget: &Budget,
        start: NaiveDate,
        spent: i128,
    ) -> Result<usize, AppError> {
        let amount_minor = budget.amount.amount_minor();
        let currency = budget.amount.currency();
        // Exact text at any size: a period's spending may exceed the largest amount.
        let money = |minor: i128| Total::from_minor(minor, currency).amount_text();
        let percent = domain::percent_used(spent, amount_minor);
        let category = budget.category.as_ref().map(|c| c.name.clone());
        let mut created = 0;
        for &t in &budget.thresholds {
            if !domain::crossed(spent, amount_minor, t) {
                continue;
            }
            let severity = Severity::of_threshold(i64::from(t));
            let now = self.clock.now();
            let alert = Alert {
                id: AlertId::new(),
                user_id: budget.user_id.clone(),
                budget_id: budget.id.clone(),
                threshold: t,
                generation: budget.generation(t, start),
                period_start: start,
                percent_used: percent,
                severity,
                message: domain::alert_message(
                    category.as_deref(),
                    t,
                    percent,
                    &money(spent),
                    &money(i128::from(amount_minor)),
                    currency.code(),
                ),
                read_at: None,
                created_at: now,
            };
            let event = DomainEvent::BudgetAlert(BudgetAlertRaised {
                alert_id: alert.id.clone(),
                budget_id: budget.id.clone(),
                category: category.clone(),
                threshold: i64::from(t),
                percent_used: percent,
                severity,
                message: alert.message.clone(),
                period_start: start,
                spent_minor: Total::from_minor(spent, currency).minor_saturating_i64(),
                amount_minor,
                currency: currency.code().to_string(),
                household: budget.household.clone(),
            })
            .into_event(&budget.user_id, now);
            let events = Outbox::with(event, &self.dispatcher.consumer_names());
            if self.store.insert_alert(&alert, events).await? {
                created += 1;
            }
        }
        if created > 0 {
            self.dispatcher.wake_user(budget.user_id.as_str());
        }
        Ok(created)
    }

    /// Applies an `expense.*` event: ledger first (idempotent by expense version), then
    /// the alerts of every budget whose period holds the old or the new date.
    #[tracing::instrument(skip(self, data), fields(expense = %data.expense_id, user = %user_id))]
    pub async fn apply_expense_event(
        &self,
        user_id: &UserId,
        data: &ExpenseChanged,
    ) -> Result<(), AppError> {
        let live = match &data.after {
            Some(a) => Some(LiveEntry {
                kind: a.kind,
                amount: snapshot_amount(a)?,
                category_key: a.category_key.clone(),
                date: a.date,
                household: a.household.clone(),
            }),
            None => None,
        };
        self.store
            .apply(&LedgerEntry {
                expense_id: data.expense_id.clone(),
                user_id: user_id.clone(),
                version: data.version,
                live,
            })
            .await?;
        let touched: Vec<&ExpenseSnapshot> = [data.before.as_ref(), data.after.as_ref()]
            .into_iter()
            .flatten()
            .filter(|s| s.kind == TxKind::Expense)
            .collect();
        if touched.is_empty() {
            return Ok(());
        }
        // The budgets the change can move: of a category it touches (or overall), in a
        // currency it is counted in (the budget's own, or one the rates table converts),
        // for the periods holding its old and new dates — the evaluation's own rules.
        // The user's own budgets count all of their expenses; a household's shared
        // budgets count the expenses shared with it (before or after the change).
        let mut budgets = self.store.budgets(user_id).await?;
        let mut households: Vec<&contract::ids::HouseholdId> = touched
            .iter()
            .filter_map(|s| s.household.as_ref())
            .collect();
        households.sort();
        households.dedup();
        for h in households {
            budgets.extend(
                self.store
                    .budgets_of(&Ownership::Household(h.clone()))
                    .await?,
            );
        }
        let mut rates: Option<domain::Rates> = None;
        let mut periods: Vec<(&Budget, NaiveDate, NaiveDate)> = Vec::new();
        for budget in &budgets {
            let target = budget.amount.currency();
            let counted_by = |s: &&&ExpenseSnapshot| match &budget.household {
                Some(h) => s.household.as_ref() == Some(h),
                None => true,
            };
            for s in touched
                .iter()
                .filter(counted_by)
                .filter(|s| budget.covers(&s.category_key))
            {
                if s.currency != target.code() {
                    let table = match &rates {
                        Some(t) => t,
                        None => rates.insert(self.store.rate_table().await?),
                    };
                    let counted = Currency::parse(&s.currency).is_ok_and(|from| {
                        table.0.contains_key(&from) && table.0.contains_key(&target)
                    });
                    if !counted {
                        continue;
                    }
                }
                let (start, next) = budget.period.range(s.date);
                if !periods.contains(&(budget, start, next)) {
                    periods.push((budget, start, next));
                }
            }
        }
        let spendings = self.store.spendings(&periods).await?;
        for ((budget, start, _), spending) in periods.iter().zip(spendings) {
            self.raise_alerts(budget, *start, spending.spent_minor)
                .await?;
        }
        Ok(())
    }
}

/// An expense's amount as its event reports it; one the product could not have written
/// makes the event invalid (it is parked, not applied).
fn snapshot_amount(s: &ExpenseSnapshot) -> Result<Money, AppError> {
    let currency = Currency::parse(&s.currency).map_err(|e| AppError::money("currency", e))?;
    Money::from_minor(s.amount_minor, currency).map_err(|e| AppError::money("amountMinor", e))
}

/// The consumer side of `POST /internal/events`: `expense.*` events.
pub struct ExpenseEvents(pub Budgets);

impl EventHandler for ExpenseEvents {
    async fn handle(&self, envelope: &Event, event: DomainEvent) -> Result<(), AppError> {
        match event.expense_change() {
            Some(change) => self.0.apply_expense_event(&envelope.user_id, change).await,
            None => Err(AppError::validation(
                "type",
                format!("budgets does not consume {} events", event.kind()),
            )),
        }
    }
}
