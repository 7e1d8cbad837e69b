//! Batched loads of the caller's budgets and alerts (see `kit::loader`): a page of
//! alerts asking for their budgets, budgets asking for their alerts, or the router's
//! `_entities` with N representations cost a bounded number of queries, not N.

use std::collections::HashMap;

use chrono::NaiveDate;
use contract::ids::{AlertId, BudgetId, UserId};
use kit::AppError;
use kit::loader::{UserBatch, UserLoader};

use crate::domain::{Alert, BudgetView};
use crate::service::Budgets;

/// Budgets by id with their period containing a day (`today` in the caller's
/// timezone), deleted ones included (an old alert still names its budget): the
/// caller's own and households' shared ones (whose readers the resolver checks), per
/// request one budgets query and one ledger query for each distinct day.
pub struct Views(pub Budgets);

impl UserBatch for Views {
    type Key = (BudgetId, NaiveDate);
    type Value = BudgetView;

    async fn load(
        &self,
        user: &UserId,
        keys: &[(BudgetId, NaiveDate)],
    ) -> Result<HashMap<(BudgetId, NaiveDate), BudgetView>, AppError> {
        let mut ids: Vec<BudgetId> = keys.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let budgets: Vec<_> = self
            .0
            .store
            .budgets_by_ids(&ids)
            .await?
            .into_iter()
            .filter(|b| b.household.is_some() || &b.user_id == user)
            .collect();
        let mut days: Vec<NaiveDate> = keys.iter().map(|(_, day)| *day).collect();
        days.sort();
        days.dedup();
        let mut out = HashMap::with_capacity(keys.len());
        for day in days {
            let wanted: Vec<_> = budgets
                .iter()
                .filter(|b| keys.contains(&(b.id.clone(), day)))
                .cloned()
                .collect();
            for view in self.0.views(wanted, day).await? {
                out.insert((view.budget.id.clone(), day), view);
            }
        }
        Ok(out)
    }
}

/// Each budget's alerts, newest first: one query per user.
pub struct AlertsOf(pub Budgets);

impl UserBatch for AlertsOf {
    type Key = BudgetId;
    type Value = Vec<Alert>;

    async fn load(
        &self,
        user: &UserId,
        keys: &[BudgetId],
    ) -> Result<HashMap<BudgetId, Vec<Alert>>, AppError> {
        let mut out: HashMap<BudgetId, Vec<Alert>> =
            keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        for alert in self.0.store.alerts(user, keys, false).await? {
            if let Some(list) = out.get_mut(&alert.budget_id) {
                list.push(alert);
            }
        }
        Ok(out)
    }
}

/// Alerts by id: one query per user.
pub struct AlertsById(pub Budgets);

impl UserBatch for AlertsById {
    type Key = AlertId;
    type Value = Alert;

    async fn load(
        &self,
        user: &UserId,
        keys: &[AlertId],
    ) -> Result<HashMap<AlertId, Alert>, AppError> {
        let found = self.0.store.alerts_by_ids(user, keys).await?;
        Ok(found.into_iter().map(|a| (a.id.clone(), a)).collect())
    }
}

/// The loaders of the budgets schema (in its data).
pub struct Loaders {
    pub views: UserLoader<Views>,
    pub alerts_of: UserLoader<AlertsOf>,
    pub alerts: UserLoader<AlertsById>,
}

impl Loaders {
    pub fn new(budgets: &Budgets) -> Loaders {
        Loaders {
            views: kit::loader::loader(Views(budgets.clone())),
            alerts_of: kit::loader::loader(AlertsOf(budgets.clone())),
            alerts: kit::loader::loader(AlertsById(budgets.clone())),
        }
    }
}
