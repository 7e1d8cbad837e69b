//! The whole product through the router: the five real subgraphs over MongoDB, real
//! HTTP and websockets, events flowing expenses -> budgets -> notifications and
//! expenses -> analytics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use kit::testing::{Gql, wait_until};
use serde_json::{Value, json};
use support::stack::{ProductStack, Session};

/// Bound for every asynchronous step (event delivery, read models, subscriptions).
const WAIT: Duration = Duration::from_secs(20);

const CREATE_EXPENSE: &str = "mutation($input: CreateExpenseInput!) {
    createExpense(input: $input) { id amount category date } }";

const ALERTS_SUBSCRIPTION: &str = "subscription { budgetAlerts {
    threshold severity percentUsed
    alert { threshold severity }
    budget { id category spent } } }";

async fn create_expense(gql: &Gql, who: &Session, amount: &str, description: &str) -> Value {
    gql.ok(
        CREATE_EXPENSE,
        json!({ "input": { "amount": amount, "category": "food", "description": description } }),
        Some(&who.token),
    )
    .await["createExpense"]
        .clone()
}

async fn budget_spent(gql: &Gql, who: &Session) -> Value {
    gql.ok("{ budgets { spent } }", json!({}), Some(&who.token))
        .await["budgets"][0]["spent"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_registered_through_the_router_sees_their_profile() {
    let stack = ProductStack::start().await;
    let alice = stack.register("alice").await;
    let data = stack
        .gql()
        .ok("{ me { id username } }", json!({}), Some(&alice.token))
        .await;
    assert_eq!(
        data,
        json!({ "me": { "id": alice.user_id, "username": "alice" } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expenses_drive_budget_alerts_notifications_and_analytics_for_their_owner_only() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("alice").await;
    let bob = stack.register("bob").await;

    let budget = gql
        .ok(
            "mutation { createBudget(input: { category: \"food\", amount: \"100\" }) {
                id category amount percentUsed alertThresholds } }",
            json!({}),
            Some(&alice.token),
        )
        .await["createBudget"]
        .clone();
    let budget_id = budget["id"].as_str().expect("a budget id").to_owned();
    assert_eq!(
        budget,
        json!({ "id": budget_id, "category": "food", "amount": "100.00",
                "percentUsed": 0.0, "alertThresholds": [80, 100] })
    );

    let mut alice_ws = stack.ws(&alice.token).await;
    alice_ws.subscribe("alerts", ALERTS_SUBSCRIPTION).await;
    let mut bob_ws = stack.ws(&bob.token).await;
    bob_ws.subscribe("alerts", ALERTS_SUBSCRIPTION).await;

    // 50 of 100: no alert yet. Waiting for the budgets subgraph to count it also gives
    // the router time to open both upstream subscriptions.
    let first = create_expense(&gql, &alice, "50", "groceries").await;
    assert!(
        wait_until(WAIT, || async {
            budget_spent(&gql, &alice).await == "50.00"
        })
        .await,
        "the budgets subgraph never counted the first expense"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 85 of 100: the 80% alert, pushed through the router with the budget resolved
    // from the budgets subgraph.
    let second = create_expense(&gql, &alice, "35", "restaurant").await;
    let event = alice_ws.next(WAIT).await.expect("the 80% alert arrives");
    assert_eq!(
        event,
        json!({ "data": { "budgetAlerts": {
            "threshold": 80, "severity": "WARNING", "percentUsed": 85.0,
            "alert": { "threshold": 80, "severity": "WARNING" },
            "budget": { "id": budget_id, "category": "food", "spent": "85.00" },
        } } })
    );

    // 105 of 100: the 100% alert, CRITICAL.
    let third = create_expense(&gql, &alice, "20", "snacks").await;
    let event = alice_ws.next(WAIT).await.expect("the 100% alert arrives");
    assert_eq!(
        event,
        json!({ "data": { "budgetAlerts": {
            "threshold": 100, "severity": "CRITICAL", "percentUsed": 105.0,
            "alert": { "threshold": 100, "severity": "CRITICAL" },
            "budget": { "id": budget_id, "category": "food", "spent": "105.00" },
        } } })
    );

    // The user joined with their expenses (users + expenses), newest first.
    let me = gql
        .ok(
            "{ me { username expenses(first: 10) { totalCount
                edges { node { id amount category user { username } } } } } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    let node = |e: &Value| {
        json!({ "node": { "id": e["id"], "amount": e["amount"],
        "category": "food", "user": { "username": "alice" } } })
    };
    assert_eq!(
        me,
        json!({ "me": { "username": "alice", "expenses": { "totalCount": 3,
            "edges": [node(&third), node(&second), node(&first)] } } })
    );
    assert_eq!(
        [&first["amount"], &second["amount"], &third["amount"]],
        [&json!("50.00"), &json!("35.00"), &json!("20.00")]
    );

    let budgets = gql
        .ok(
            "{ budgets { id spent remaining percentUsed }
               budgetAlerts { threshold severity read } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    let mut alerts = budgets["budgetAlerts"].as_array().expect("alerts").clone();
    alerts.sort_by_key(|a| a["threshold"].as_i64());
    assert_eq!(
        budgets["budgets"],
        json!([{ "id": budget_id, "spent": "105.00", "remaining": "-5.00", "percentUsed": 105.0 }])
    );
    assert_eq!(
        alerts,
        vec![
            json!({ "threshold": 80, "severity": "WARNING", "read": false }),
            json!({ "threshold": 100, "severity": "CRITICAL", "read": false }),
        ]
    );

    // Both alerts became notifications (the subscription is fed from them).
    let notifications = gql
        .ok(
            "{ unreadNotificationCount
               notifications { totalCount edges { node { type priority read } } } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        notifications,
        json!({ "unreadNotificationCount": 2, "notifications": { "totalCount": 2, "edges": [
            { "node": { "type": "BUDGET_EXCEEDED", "priority": "HIGH", "read": false } },
            { "node": { "type": "BUDGET_ALERT", "priority": "MEDIUM", "read": false } },
        ] } })
    );

    // Analytics read models catch up from the expense events; top expenses are
    // resolved by the expenses subgraph.
    let date = first["date"].as_str().expect("a date");
    let year: i64 = date[..4].parse().expect("year");
    let month: i64 = date[5..7].parse().expect("month");
    let summary_query = "query($y: Int!, $m: Int!) { monthlySummary(year: $y, month: $m) {
        period totalSpent transactionCount averagePerTransaction
        categoryBreakdown { category total count } } }";
    let vars = json!({ "y": year, "m": month });
    let summary_of = |who: &Session| {
        let (gql, vars, token) = (gql.clone(), vars.clone(), who.token.clone());
        async move { gql.ok(summary_query, vars, Some(&token)).await["monthlySummary"].clone() }
    };
    assert!(
        wait_until(WAIT, || async {
            summary_of(&alice).await["transactionCount"] == 3
        })
        .await,
        "analytics never counted the three expenses"
    );
    assert_eq!(
        summary_of(&alice).await,
        json!({ "period": &date[..7], "totalSpent": "105.00", "transactionCount": 3,
                "averagePerTransaction": "35.00",
                "categoryBreakdown": [{ "category": "food", "total": "105.00", "count": 3 }] })
    );
    let top = gql
        .ok(
            "{ topExpenses(limit: 3) { id amount description } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        top,
        json!({ "topExpenses": [
            { "id": first["id"], "amount": "50.00", "description": "groceries" },
            { "id": second["id"], "amount": "35.00", "description": "restaurant" },
            { "id": third["id"], "amount": "20.00", "description": "snacks" },
        ] })
    );

    // Bob sees none of it.
    let bobs = gql
        .ok(
            "query($id: ID!) { me { username expenses(first: 10) { totalCount } }
               expense(id: $id) { id } budgets { id } budgetAlerts { id }
               notifications { totalCount } unreadNotificationCount
               topExpenses(limit: 3) { id } }",
            json!({ "id": first["id"] }),
            Some(&bob.token),
        )
        .await;
    assert_eq!(
        bobs,
        json!({ "me": { "username": "bob", "expenses": { "totalCount": 0 } },
                "expense": null, "budgets": [], "budgetAlerts": [],
                "notifications": { "totalCount": 0 }, "unreadNotificationCount": 0,
                "topExpenses": [] })
    );
    assert_eq!(summary_of(&bob).await["transactionCount"], 0);
    let budget_by_id = gql
        .request(
            "query($id: ID!) { budget(id: $id) { id } }",
            json!({ "id": budget_id }),
            Some(&bob.token),
        )
        .await;
    assert_eq!(
        budget_by_id["data"]["budget"],
        Value::Null,
        "{budget_by_id:#}"
    );
    assert_eq!(
        bob_ws.recv(Duration::from_millis(500)).await,
        None,
        "bob's subscription received alice's alerts"
    );
}

/// Asserts that every error of `resp` is a `SUBGRAPH_UNAVAILABLE` naming `service`
/// (`extensions.serviceName`), one at each of `paths` (in any order).
fn assert_unavailable_at(resp: &Value, service: &str, paths: &[Value]) {
    let errors = resp["errors"].as_array().expect("errors");
    for e in errors {
        assert_eq!(e["extensions"]["serviceName"], service, "{resp:#}");
        assert_eq!(e["extensions"]["code"], "SUBGRAPH_UNAVAILABLE", "{resp:#}");
    }
    let mut got: Vec<&Value> = errors.iter().map(|e| &e["path"]).collect();
    got.sort_by_key(|p| p.to_string());
    let mut want: Vec<&Value> = paths.iter().collect();
    want.sort_by_key(|p| p.to_string());
    assert_eq!(got, want, "{resp:#}");
}

/// A router URL on which nothing listens (port 1, outside the ephemeral range).
const CLOSED: &str = "http://127.0.0.1:1/graphql";

/// The product with the router pointing subgraph `down` at [`CLOSED`], and alice.
async fn with_down(down: &str) -> (ProductStack, Gql, Session) {
    let stack = ProductStack::start_with(|config| {
        config.subgraphs.get_mut(down).unwrap().url = Some(CLOSED.to_owned());
    })
    .await;
    let gql = stack.gql();
    let alice = stack.register("alice").await;
    (stack, gql, alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_budgets_down_a_query_joining_users_expenses_and_budgets_loses_only_budgets() {
    let (_stack, gql, alice) = with_down("budgets").await;
    create_expense(&gql, &alice, "12.50", "lunch").await;

    let resp = gql
        .request(
            "{ me { username expenses { edges { node { amount user { username } } } } }
               budgets { id spent }
               budgetAlerts { id } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    // Users' and expenses' data arrive; only the budgets fields are null.
    assert_eq!(
        resp["data"],
        json!({
            "me": {
                "username": "alice",
                "expenses": { "edges": [
                    { "node": { "amount": "12.50", "user": { "username": "alice" } } }
                ] }
            },
            "budgets": null,
            "budgetAlerts": null,
        }),
        "{resp:#}"
    );
    // The errors name the budgets fetch, with its code and the fields it cost.
    assert_unavailable_at(
        &resp,
        "budgets",
        &[json!(["budgets"]), json!(["budgetAlerts"])],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_expenses_down_the_user_arrives_and_only_expenses_fields_are_null() {
    let (_stack, gql, alice) = with_down("expenses").await;

    // A root field of users (with a field expenses adds to the user) beside root fields
    // of expenses and notifications.
    let resp = gql
        .request(
            "{ me { username currency expenses { totalCount } }
               expenseSummary { currency }
               unreadNotificationCount }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        resp["data"],
        json!({
            "me": { "username": "alice", "currency": "USD", "expenses": null },
            "expenseSummary": null,
            "unreadNotificationCount": 0,
        }),
        "{resp:#}"
    );
    assert_unavailable_at(
        &resp,
        "expenses",
        &[json!(["expenseSummary"]), json!(["me", "expenses"])],
    );
}

/// 9,999,999,999,999.99: the largest amount an expense may have in USD.
const LARGEST: &str = "9999999999999.99";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_total_of_the_largest_amounts_is_exact_through_the_router() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("alice").await;
    gql.ok(
        "mutation { createBudget(input: { amount: \"1000\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    for _ in 0..2 {
        create_expense(&gql, &alice, LARGEST, "castle").await;
    }
    let reports = "{ expenseSummary { totalExpenses byCategory { total } }
        monthlySummary { totalSpent averagePerTransaction categoryBreakdown { total } }
        categoryAnalysis { totalSpent categories { totalSpent average percentage } }
        dailyPattern(days: 1) { daily { amount } averageDailySpending }
        spendingTrends(months: 1) { totalSpent }
        insights { kind }
        budgets { spent remaining } }";
    let two = "19999999999999.98";
    let want = json!({
        "expenseSummary": { "totalExpenses": two, "byCategory": [{ "total": two }] },
        "monthlySummary": { "totalSpent": two, "averagePerTransaction": LARGEST,
                            "categoryBreakdown": [{ "total": two }] },
        "categoryAnalysis": { "totalSpent": two,
                              "categories": [{ "totalSpent": two, "average": LARGEST, "percentage": 100.0 }] },
        "dailyPattern": { "daily": [{ "amount": two }], "averageDailySpending": two },
        "spendingTrends": [{ "totalSpent": two }],
        "insights": [],
        "budgets": [{ "spent": two, "remaining": "-19999999998999.98" }],
    });
    let answer = || gql.request(reports, json!({}), Some(&alice.token));
    let settled = wait_until(WAIT, || async {
        let r = answer().await;
        r.get("errors").is_none() && r["data"] == want
    })
    .await;
    assert!(settled, "{:#}", answer().await);

    // The REST shim answers the same totals (not a 502).
    let http = reqwest::Client::new();
    for path in [
        "/api/expenses/summary",
        "/api/analytics/monthly-summary",
        "/api/analytics/category-analysis",
        "/api/budgets",
    ] {
        let r = http
            .get(stack.url(path))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains(two), "{path}: {text}");
    }

    // The next, small expense still moves the budget's spending, to the cent.
    create_expense(&gql, &alice, "1", "stamp").await;
    assert!(
        wait_until(WAIT, || async {
            budget_spent(&gql, &alice).await == "20000000000000.98"
        })
        .await,
        "the budgets subgraph stopped applying the user's expenses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_numbers_in_variables_keep_their_digits_through_the_router() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("alice").await;
    let body = |amount: &str| {
        format!(
            r#"{{"query": {}, "variables": {{"input": {{"amount": {amount}, "description": "x"}}}}}}"#,
            serde_json::to_string(CREATE_EXPENSE).unwrap()
        )
    };
    for (amount, why) in [
        ("12.34999999999999999999", "at most 2 decimal places"),
        ("1234567890123456789012345", "out of range"),
    ] {
        let r = gql.request_raw(&body(amount), Some(&alice.token)).await;
        let e = &r["errors"][0];
        assert_eq!(
            e["extensions"]["code"], "VALIDATION_FAILED",
            "{amount}: {r:#}"
        );
        assert_eq!(e["extensions"]["field"], "amount", "{r:#}");
        assert!(e["message"].as_str().unwrap().contains(why), "{r:#}");
    }
    for amount in ["12.35", r#""12.35""#] {
        let r = gql.request_raw(&body(amount), Some(&alice.token)).await;
        assert_eq!(r["data"]["createExpense"]["amount"], "12.35", "{r:#}");
    }
    let list = gql
        .ok(
            "{ expenses { totalCount edges { node { amount } } } }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        list["expenses"]["totalCount"], 2,
        "only the exact amounts were stored"
    );
}
