//! The GraphQL operations the REST shim runs, in one place: the handlers run them, and
//! the router plans every one of them when it starts ([`all`]), so that no REST call
//! waits for planning.

use std::sync::LazyLock;

use super::households::{HOUSEHOLD_FIELDS, INVITATION_FIELDS};
use super::notifications::NOTIFICATION_FIELDS;
use super::shapes::{ALERT_FIELDS, BUDGET_FIELDS, EXPENSE_FIELDS, PROFILE_FIELDS};
use super::users::AUTH_FIELDS;

pub static MONTHLY_SUMMARY: LazyLock<String> = LazyLock::new(|| {
    "query($year: Int, $month: Int) { monthlySummary(year: $year, month: $month) { \
             period currency totalSpent totalIncome transactionCount incomeCount averagePerTransaction \
             categoryBreakdown { category total } } }".to_owned()
});

pub static SPENDING_TRENDS: LazyLock<String> = LazyLock::new(|| {
    "query($months: Int!) { spendingTrends(months: $months) { month totalSpent totalIncome transactionCount } }".to_owned()
});

pub static CATEGORY_ANALYSIS: LazyLock<String> = LazyLock::new(|| {
    "query($period: AnalysisPeriod!) { categoryAnalysis(period: $period) { \
             period from to currency totalSpent topCategory \
             categories { category totalSpent count average percentage } } }"
        .to_owned()
});

pub static DAILY_PATTERN: LazyLock<String> = LazyLock::new(|| {
    "query($days: Int!) { dailyPattern(days: $days) { from to currency averageDailySpending daily { date amount } } }".to_owned()
});

pub static TOP_EXPENSES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "query($limit: Int!, $period: AnalysisPeriod!) {{ topExpenses(limit: $limit, period: $period) {{ {EXPENSE_FIELDS} }} }}"
    )
});

pub static INSIGHTS: LazyLock<String> = LazyLock::new(|| {
    "{ insights { kind title message severity figures { name value } } \
             month: categoryAnalysis(period: MONTH) { from totalSpent categories { count } } }"
        .to_owned()
});

pub static BUDGETS: LazyLock<String> =
    LazyLock::new(|| format!("query {{ budgets {{ {BUDGET_FIELDS} }} }}"));

pub static CREATE_BUDGET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($input: CreateBudgetInput!) {{ createBudget(input: $input) {{ {BUDGET_FIELDS} }} }}"
    )
});

pub static UPDATE_BUDGET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($id: ID!, $input: UpdateBudgetInput!) {{ updateBudget(id: $id, input: $input) {{ {BUDGET_FIELDS} }} }}"
    )
});

pub static BUDGET_ALERTS: LazyLock<String> = LazyLock::new(|| {
    format!("query($unread: Boolean) {{ budgetAlerts(unreadOnly: $unread) {{ {ALERT_FIELDS} }} }}")
});

pub static MARK_ALERT_READ: LazyLock<String> = LazyLock::new(|| {
    format!("mutation($id: ID!) {{ markBudgetAlertRead(id: $id) {{ {ALERT_FIELDS} }} }}")
});

pub static EXPENSES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "query($filter: ExpenseFilter, $first: Int, $after: String, $from: Date, $to: Date) {{ \
         expenses(filter: $filter, first: $first, after: $after) {{ edges {{ node {{ {EXPENSE_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} \
         expenseSummary(from: $from, to: $to) {{ totalIncome totalExpenses balance }} }}"
    )
});

pub static CREATE_EXPENSE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($input: CreateExpenseInput!, $key: String) {{ createExpense(input: $input, idempotencyKey: $key) {{ {EXPENSE_FIELDS} }} }}"
    )
});

pub static EXPENSE: LazyLock<String> =
    LazyLock::new(|| format!("query($id: ID!) {{ expense(id: $id) {{ {EXPENSE_FIELDS} }} }}"));

pub static UPDATE_EXPENSE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($id: ID!, $input: UpdateExpenseInput!) {{ updateExpense(id: $id, input: $input) {{ {EXPENSE_FIELDS} }} }}"
    )
});

pub static EXPENSE_SUMMARY: LazyLock<String> = LazyLock::new(|| {
    "query($from: Date, $to: Date) { expenseSummary(from: $from, to: $to) { totalIncome totalExpenses balance byCategory { category total count } } }".to_owned()
});

pub static EXPORT_CSV: LazyLock<String> = LazyLock::new(|| {
    "query($from: Date, $to: Date) { exportExpensesCsv(from: $from, to: $to) { csv } }".to_owned()
});

pub static IMPORT_CSV: LazyLock<String> = LazyLock::new(|| {
    "mutation($csv: String!) { importExpensesCsv(csv: $csv) { rows created alreadyPresent } }"
        .to_owned()
});

pub static NOTIFICATIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "query($unread: Boolean, $first: Int, $after: String) {{ \
         notifications(unreadOnly: $unread, first: $first, after: $after) {{ totalCount edges {{ node {{ {NOTIFICATION_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} \
         unreadNotificationCount }}"
    )
});

pub static MARK_NOTIFICATION_READ: LazyLock<String> = LazyLock::new(|| {
    format!("mutation($id: ID!) {{ markNotificationRead(id: $id) {{ {NOTIFICATION_FIELDS} }} }}")
});

pub static MARK_ALL_READ: LazyLock<String> =
    LazyLock::new(|| "mutation { markAllNotificationsRead }".to_owned());

pub static REGISTER: LazyLock<String> = LazyLock::new(|| {
    format!("mutation($input: RegisterInput!) {{ register(input: $input) {{ {AUTH_FIELDS} }} }}")
});

pub static LOGIN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($email: String!, $password: String!) {{ login(email: $email, password: $password) {{ {AUTH_FIELDS} }} }}"
    )
});

pub static LOGIN_WITH_CODE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($challenge: String!, $code: String!) {{ loginWithCode(challenge: $challenge, code: $code) {{ {AUTH_FIELDS} }} }}"
    )
});

pub static PROFILE: LazyLock<String> =
    LazyLock::new(|| format!("query {{ me {{ {PROFILE_FIELDS} }} }}"));

pub static UPDATE_PROFILE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($input: UpdateProfileInput!) {{ updateProfile(input: $input) {{ {PROFILE_FIELDS} }} }}"
    )
});

pub static HOUSEHOLDS: LazyLock<String> =
    LazyLock::new(|| format!("query {{ households {{ {HOUSEHOLD_FIELDS} }} }}"));

pub static HOUSEHOLD: LazyLock<String> =
    LazyLock::new(|| format!("query($id: ID!) {{ household(id: $id) {{ {HOUSEHOLD_FIELDS} }} }}"));

pub static HOUSEHOLD_INVITATIONS: LazyLock<String> =
    LazyLock::new(|| format!("query {{ householdInvitations {{ {INVITATION_FIELDS} }} }}"));

pub static CREATE_HOUSEHOLD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($input: CreateHouseholdInput!) {{ createHousehold(input: $input) {{ {HOUSEHOLD_FIELDS} }} }}"
    )
});

pub static INVITE_TO_HOUSEHOLD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($householdId: ID!, $user: String!, $role: HouseholdRole!) {{ \
         inviteToHousehold(householdId: $householdId, user: $user, role: $role) {{ {INVITATION_FIELDS} }} }}"
    )
});

pub static ACCEPT_HOUSEHOLD_INVITATION: LazyLock<String> = LazyLock::new(|| {
    format!("mutation($id: ID!) {{ acceptHouseholdInvitation(id: $id) {{ {HOUSEHOLD_FIELDS} }} }}")
});

pub static DECLINE_HOUSEHOLD_INVITATION: LazyLock<String> =
    LazyLock::new(|| "mutation($id: ID!) { declineHouseholdInvitation(id: $id) }".to_owned());

pub static REVOKE_HOUSEHOLD_INVITATION: LazyLock<String> =
    LazyLock::new(|| "mutation($id: ID!) { revokeHouseholdInvitation(id: $id) }".to_owned());

pub static LEAVE_HOUSEHOLD: LazyLock<String> =
    LazyLock::new(|| "mutation($id: ID!) { leaveHousehold(id: $id) }".to_owned());

pub static CHANGE_HOUSEHOLD_ROLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($householdId: ID!, $userId: ID!, $role: HouseholdRole!) {{ \
         changeHouseholdRole(householdId: $householdId, userId: $userId, role: $role) {{ {HOUSEHOLD_FIELDS} }} }}"
    )
});

pub static REMOVE_HOUSEHOLD_MEMBER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "mutation($householdId: ID!, $userId: ID!) {{ \
         removeHouseholdMember(householdId: $householdId, userId: $userId) {{ {HOUSEHOLD_FIELDS} }} }}"
    )
});

/// `mutation($id: ID!) { <field>(id: $id) }`: the deletions (a Boolean answer).
pub fn delete(field: &str) -> String {
    format!("mutation($id: ID!) {{ {field}(id: $id) }}")
}

/// The mutation fields the deletions call.
pub const DELETIONS: [&str; 3] = ["deleteExpense", "deleteBudget", "deleteNotification"];

/// Every operation the REST shim runs.
pub fn all() -> Vec<String> {
    let mut ops: Vec<String> = [
        &MONTHLY_SUMMARY,
        &SPENDING_TRENDS,
        &CATEGORY_ANALYSIS,
        &DAILY_PATTERN,
        &TOP_EXPENSES,
        &INSIGHTS,
        &BUDGETS,
        &CREATE_BUDGET,
        &UPDATE_BUDGET,
        &BUDGET_ALERTS,
        &MARK_ALERT_READ,
        &EXPENSES,
        &CREATE_EXPENSE,
        &EXPENSE,
        &UPDATE_EXPENSE,
        &EXPENSE_SUMMARY,
        &EXPORT_CSV,
        &IMPORT_CSV,
        &NOTIFICATIONS,
        &MARK_NOTIFICATION_READ,
        &MARK_ALL_READ,
        &REGISTER,
        &LOGIN,
        &LOGIN_WITH_CODE,
        &PROFILE,
        &UPDATE_PROFILE,
        &HOUSEHOLDS,
        &HOUSEHOLD,
        &HOUSEHOLD_INVITATIONS,
        &CREATE_HOUSEHOLD,
        &INVITE_TO_HOUSEHOLD,
        &ACCEPT_HOUSEHOLD_INVITATION,
        &DECLINE_HOUSEHOLD_INVITATION,
        &REVOKE_HOUSEHOLD_INVITATION,
        &LEAVE_HOUSEHOLD,
        &CHANGE_HOUSEHOLD_ROLE,
        &REMOVE_HOUSEHOLD_MEMBER,
    ]
    .iter()
    .map(|op| op.as_str().to_owned())
    .collect();
    ops.extend(DELETIONS.iter().map(|field| delete(field)));
    ops
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    #[tokio::test]
    async fn every_rest_operation_validates_and_plans_against_the_committed_supergraph() {
        let config = crate::Config {
            supergraph: concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/supergraph.graphql").into(),
            ..crate::Config::default()
        };
        let state = crate::build_state(config).await.unwrap();
        assert!(state.pipeline.prepare("{ noSuchField }", None).is_err());
        for op in super::all() {
            if let Err(e) = state.pipeline.prepare(&op, None) {
                panic!("{op}: {e:?}");
            }
        }
    }
}
