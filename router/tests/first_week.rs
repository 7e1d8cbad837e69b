#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A new user's first week, end to end over the real product (five subgraphs over
//! MongoDB and the router, real HTTP and websockets), through the legacy REST shim and
//! GraphQL: register, a food budget of 100, expenses of 50 and 35 (the 80% alert on a
//! websocket and in the notifications), 20 more (the 100% alert), analytics, CSV export
//! and import into a second account, isolation between the two, reading notifications.
//! README.md's "A first week, by hand" tells the same story with curl.

mod support;

use std::time::Duration;

use kit::testing::wait_until;
use serde_json::{Value, json};
use support::rest::{Reply, Rest};
use support::stack::Session;

/// Bound for every asynchronous step (event delivery, read models, subscriptions).
const WAIT: Duration = Duration::from_secs(20);

const ALERTS_SUBSCRIPTION: &str = "subscription { budgetAlerts {
    category threshold severity percentUsed
    alert { id threshold severity }
    budget { id category amount spent }
    notification { id type read } } }";

/// The `n` months `YYYY-MM` ending with `last`, oldest first.
fn months_ending(last: &str, n: usize) -> Vec<String> {
    let (mut year, mut month): (i32, i32) =
        (last[..4].parse().unwrap(), last[5..].parse().unwrap());
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(format!("{year:04}-{month:02}"));
        month -= 1;
        if month == 0 {
            month = 12;
            year -= 1;
        }
    }
    out.reverse();
    out
}

/// The ids of a list of objects (`/api/expenses`'s `expenses`, notifications, ...).
fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// What an expense is, without its id and timestamps: exact amount text, type,
/// currency, category, description, date, payment method, tags; sorted.
fn contents(reply: &Reply) -> Vec<String> {
    let n = reply.body["expenses"].as_array().expect("expenses").len();
    let mut rows: Vec<String> = (0..n)
        .map(|i| {
            let e = &reply.body["expenses"][i];
            format!(
                "{} {} {} {} {:?} {} {} {}",
                reply.raw_at(&format!("/expenses/{i}/amount")),
                e["type"],
                e["currency"],
                e["category"],
                e["description"],
                e["date"],
                e["paymentMethod"],
                e["tags"]
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn create_expense(rest: &Rest, who: &Session, body: Value) -> Reply {
    let reply = rest
        .post("/api/expenses", &who.token, body)
        .await
        .expect(201);
    assert_eq!(reply.body["_id"], reply.body["id"], "{}", reply.raw);
    reply
}

/// The next `budgetAlerts` event on `ws`, checked to be `threshold` / `severity` /
/// `percent` with the budget's `spent`; returns the event.
async fn expect_alert(
    ws: &mut support::stack::WsClient,
    budget_id: &str,
    (threshold, severity, percent, spent, kind): (i64, &str, f64, &str, &str),
) -> Value {
    let payload = ws
        .next(WAIT)
        .await
        .unwrap_or_else(|| panic!("the {threshold}% alert never arrived on the websocket"));
    let event = payload["data"]["budgetAlerts"].clone();
    assert_eq!(
        payload,
        json!({ "data": { "budgetAlerts": {
            "category": "food", "threshold": threshold, "severity": severity, "percentUsed": percent,
            "alert": { "id": event["alert"]["id"], "threshold": threshold, "severity": severity },
            "budget": { "id": budget_id, "category": "food", "amount": "100.00", "spent": spent },
            "notification": { "id": event["notification"]["id"], "type": kind, "read": false },
        } } })
    );
    assert!(event["alert"]["id"].is_string() && event["notification"]["id"].is_string());
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_users_first_week_through_rest_graphql_and_websockets() {
    let rest = Rest::start().await;
    let gql = rest.stack.gql();

    // Monday: alice registers over REST and opens the alerts subscription over GraphQL.
    let alice = rest.register("alice").await;
    let mut ws = rest.stack.ws(&alice.token).await;
    ws.subscribe("alerts", ALERTS_SUBSCRIPTION).await;

    let budget = rest
        .post(
            "/api/budgets",
            &alice.token,
            json!({ "category": "food", "amount": 100 }),
        )
        .await
        .expect(201);
    let budget_id = budget.body["id"].as_str().expect("a budget id").to_owned();
    assert_eq!(budget.body["_id"], budget_id.as_str());
    assert_eq!(budget.body["category"], "food");
    assert_eq!(budget.body["period"], "MONTHLY");
    assert_eq!(budget.body["alertThresholds"], json!([80, 100]));
    assert_eq!(budget.raw_at("/amount"), "100.00");
    assert_eq!(budget.raw_at("/spent"), "0.00");
    assert_eq!(budget.body["percentUsed"].as_f64(), Some(0.0));

    // Tuesday and Wednesday: 50 (a number) and 35 (a string).
    let groceries = create_expense(
        &rest,
        &alice,
        json!({ "amount": 50, "description": "groceries", "category": "food",
                "paymentMethod": "card", "tags": ["weekly", "market"] }),
    )
    .await;
    assert_eq!(groceries.raw_at("/amount"), "50.00");
    assert_eq!(groceries.body["type"], "EXPENSE");
    assert_eq!(groceries.body["currency"], "USD");
    let today = groceries.body["date"].as_str().expect("a date").to_owned();
    let month = today[..7].to_owned();
    // The budget counts the 50 (an event from expenses to budgets) before the 35 is
    // added, so the 35 is the one that crosses 80%.
    assert!(
        wait_until(WAIT, || async {
            rest.get("/api/budgets", &alice.token)
                .await
                .raw_at("/0/spent")
                == "50.00"
        })
        .await,
        "the budget never counted the first expense"
    );
    let dinner = create_expense(
        &rest,
        &alice,
        json!({ "amount": "35.00", "description": "dinner, with friends",
                "category": "food", "type": "expense" }),
    )
    .await;
    assert_eq!(dinner.raw_at("/amount"), "35.00");

    // 85 of 100: the WARNING alert arrives on the websocket ...
    let warning = expect_alert(
        &mut ws,
        &budget_id,
        (80, "WARNING", 85.0, "85.00", "BUDGET_ALERT"),
    )
    .await;
    let warning_id = warning["notification"]["id"].as_str().unwrap().to_owned();
    // ... and, as it was stored before it was pushed, in the notifications and alerts.
    let notifications = rest
        .get("/api/notifications", &alice.token)
        .await
        .expect(200);
    let n = &notifications.body["notifications"][0];
    assert_eq!(
        ids(&notifications.body["notifications"]),
        [warning_id.as_str()]
    );
    assert_eq!(n["_id"], warning_id.as_str());
    assert_eq!(n["type"], "BUDGET_ALERT");
    assert_eq!(n["priority"], "MEDIUM");
    assert_eq!(n["read"], false);
    assert!(n["channels"].is_array(), "{n}");
    assert!(n["title"].is_string() && n["message"].is_string(), "{n}");
    assert!(n["createdAt"].is_string(), "{n}");
    assert_eq!(notifications.body["unreadCount"], 1);
    assert_eq!(notifications.body["total"], 1);
    assert_eq!(notifications.body["nextCursor"], Value::Null);
    let unread = rest
        .get("/api/notifications/unread-count", &alice.token)
        .await
        .expect(200);
    assert_eq!(unread.body, json!({ "unreadCount": 1 }));
    let alerts = rest
        .get("/api/budgets/alerts", &alice.token)
        .await
        .expect(200);
    let a = &alerts.body["alerts"][0];
    assert_eq!(
        ids(&alerts.body["alerts"]),
        [warning["alert"]["id"].as_str().unwrap()]
    );
    assert_eq!(a["budgetId"], budget_id.as_str());
    assert_eq!(
        (&a["threshold"], &a["severity"], &a["read"]),
        (&json!(80), &json!("WARNING"), &json!(false))
    );
    assert_eq!(a["percentUsed"].as_f64(), Some(85.0));

    // Thursday: 20 more, 105 of 100: the CRITICAL alert.
    let snacks = create_expense(
        &rest,
        &alice,
        json!({ "amount": 20, "description": "snacks", "category": "food" }),
    )
    .await;
    let critical = expect_alert(
        &mut ws,
        &budget_id,
        (100, "CRITICAL", 105.0, "105.00", "BUDGET_EXCEEDED"),
    )
    .await;
    let critical_id = critical["notification"]["id"].as_str().unwrap().to_owned();
    let notifications = rest
        .get("/api/notifications", &alice.token)
        .await
        .expect(200);
    assert_eq!(
        ids(&notifications.body["notifications"]),
        [critical_id.clone(), warning_id.clone()],
        "newest first"
    );
    assert_eq!(notifications.body["notifications"][0]["priority"], "HIGH");
    assert_eq!(
        (
            &notifications.body["unreadCount"],
            &notifications.body["total"]
        ),
        (&json!(2), &json!(2))
    );
    // One page at a time.
    let page = rest
        .get("/api/notifications?limit=1&unreadOnly=true", &alice.token)
        .await
        .expect(200);
    assert_eq!(ids(&page.body["notifications"]), [critical_id.as_str()]);
    let cursor = page.body["nextCursor"].as_str().expect("a next cursor");
    let page = rest
        .get(
            &format!("/api/notifications?limit=1&unreadOnly=true&cursor={cursor}"),
            &alice.token,
        )
        .await
        .expect(200);
    assert_eq!(ids(&page.body["notifications"]), [warning_id.as_str()]);
    assert_eq!(page.body["nextCursor"], Value::Null);
    let budgets = rest.get("/api/budgets", &alice.token).await.expect(200);
    assert_eq!(ids(&budgets.body), [budget_id.as_str()]);
    assert_eq!(
        [budgets.raw_at("/0/spent"), budgets.raw_at("/0/remaining")],
        ["105.00", "-5.00"]
    );
    assert_eq!(budgets.body[0]["percentUsed"].as_f64(), Some(105.0));
    let alerts = rest
        .get("/api/budgets/alerts?unreadOnly=true", &alice.token)
        .await
        .expect(200);
    assert_eq!(
        alerts.body["alerts"].as_array().unwrap().len(),
        2,
        "{alerts:?}"
    );

    // Friday: the analytics read models catch up from the expense events.
    let expense_ids =
        [&groceries, &dinner, &snacks].map(|r| r.body["id"].as_str().unwrap().to_owned());
    assert!(
        wait_until(WAIT, || async {
            let trends = rest
                .get("/api/analytics/trends?months=6", &alice.token)
                .await;
            trends.body[5]["transactionCount"] == 3
        })
        .await,
        "analytics never counted the three expenses"
    );
    let trends = rest
        .get("/api/analytics/trends?months=6", &alice.token)
        .await
        .expect(200);
    let months: Vec<&str> = trends
        .body
        .as_array()
        .expect("a list of months")
        .iter()
        .map(|m| m["month"].as_str().expect("a month"))
        .collect();
    assert_eq!(months, months_ending(&month, 6), "oldest first, no gaps");
    assert_eq!(trends.raw_at("/5/totalSpent"), "105.00");
    for i in 0..5 {
        assert_eq!(trends.body[i]["transactionCount"], 0, "{}", trends.raw);
        assert_eq!(trends.body[i]["totalSpent"].as_f64(), Some(0.0));
    }

    let summary = rest
        .get("/api/analytics/monthly-summary", &alice.token)
        .await
        .expect(200);
    assert_eq!(summary.body["period"], month.as_str());
    assert_eq!(summary.body["currency"], "USD");
    assert_eq!(summary.body["transactionCount"], 3);
    assert_eq!(summary.body["incomeCount"], 0);
    assert_eq!(summary.body["totalIncome"].as_f64(), Some(0.0));
    assert_eq!(
        [
            summary.raw_at("/totalSpent"),
            summary.raw_at("/averagePerTransaction"),
            summary.raw_at("/categoryBreakdown/food"),
        ],
        ["105.00", "35.00", "105.00"]
    );
    assert_eq!(
        summary.body["categoryBreakdown"].as_object().unwrap().len(),
        1
    );

    let analysis = rest
        .get(
            "/api/analytics/category-analysis?period=month",
            &alice.token,
        )
        .await
        .expect(200);
    assert_eq!(analysis.body["period"], "month");
    assert_eq!(analysis.body["currency"], "USD");
    assert_eq!(analysis.body["topCategory"], "food");
    assert_eq!(analysis.body["from"], format!("{month}-01"));
    assert_eq!(analysis.body["categories"].as_array().unwrap().len(), 1);
    assert_eq!(analysis.body["categories"][0]["category"], "food");
    assert_eq!(analysis.body["categories"][0]["count"], 3);
    assert_eq!(
        analysis.body["categories"][0]["percentage"].as_f64(),
        Some(100.0)
    );
    assert_eq!(
        [
            analysis.raw_at("/totalSpent"),
            analysis.raw_at("/categories/0/totalSpent"),
            analysis.raw_at("/categories/0/avgAmount"),
        ],
        ["105.00", "105.00", "35.00"]
    );

    let daily = rest
        .get("/api/analytics/daily-pattern?days=30", &alice.token)
        .await
        .expect(200);
    assert_eq!(daily.body["period"], "30 days");
    assert_eq!(daily.body["to"], today.as_str());
    assert_eq!(daily.body["currency"], "USD");
    let days = daily.body["dailyData"].as_array().expect("dailyData");
    let at = days
        .iter()
        .position(|d| d["date"] == today.as_str())
        .expect("today is in the daily pattern");
    assert_eq!(daily.raw_at(&format!("/dailyData/{at}/amount")), "105.00");

    let top = rest
        .get(
            "/api/analytics/top-expenses?limit=10&period=month",
            &alice.token,
        )
        .await
        .expect(200);
    assert_eq!(ids(&top.body), expense_ids, "largest first");
    assert_eq!(
        [
            top.raw_at("/0/amount"),
            top.raw_at("/1/amount"),
            top.raw_at("/2/amount")
        ],
        ["50.00", "35.00", "20.00"]
    );
    assert_eq!(top.body[1]["description"], "dinner, with friends");

    let insights = rest
        .get("/api/analytics/insights", &alice.token)
        .await
        .expect(200);
    assert_eq!(insights.body["totalExpenses"], 3);
    assert_eq!(insights.raw_at("/totalSpent"), "105.00");
    assert_eq!(insights.body["period"], month.as_str());
    for insight in insights.body["insights"]
        .as_array()
        .expect("a list of insights")
    {
        for key in ["type", "title", "message", "severity"] {
            assert!(insight[key].is_string(), "{key} of {insight}");
        }
        assert!(insight["figures"].is_array(), "{insight}");
    }

    let by_category = rest
        .get("/api/expenses/summary", &alice.token)
        .await
        .expect(200);
    assert_eq!(by_category.body["summary"][0]["category"], "food");
    assert_eq!(by_category.body["summary"][0]["count"], 3);
    assert_eq!(by_category.body["summary"].as_array().unwrap().len(), 1);
    assert_eq!(
        [
            by_category.raw_at("/summary/0/total"),
            by_category.raw_at("/totalExpenses"),
            by_category.raw_at("/balance"),
        ],
        ["105.00", "105.00", "-105.00"]
    );

    // The same figures through GraphQL: every REST number carries the very digits of
    // the GraphQL decimal.
    let data = gql
        .ok(
            "{ me { username expenses(first: 10) { totalCount edges { node { id amount } } } }
               spendingTrends(months: 6) { month totalSpent totalIncome transactionCount }
               categoryAnalysis(period: MONTH) { from to totalSpent topCategory }
               dailyPattern(days: 30) { averageDailySpending }
               insights { kind }
               budgets { spent }
               unreadNotificationCount }",
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(data["me"]["username"], "alice");
    assert_eq!(data["me"]["expenses"]["totalCount"], 3);
    let mut newest_first = expense_ids.clone();
    newest_first.reverse();
    let graph_ids: Vec<&str> = data["me"]["expenses"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(graph_ids, newest_first);
    for (i, m) in data["spendingTrends"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(m["month"], months[i]);
        assert_eq!(
            trends.raw_at(&format!("/{i}/totalSpent")),
            m["totalSpent"].as_str().unwrap()
        );
        assert_eq!(
            trends.raw_at(&format!("/{i}/totalIncome")),
            m["totalIncome"].as_str().unwrap()
        );
        assert_eq!(trends.body[i]["transactionCount"], m["transactionCount"]);
    }
    assert_eq!(analysis.body["to"], data["categoryAnalysis"]["to"]);
    assert_eq!(data["categoryAnalysis"]["totalSpent"], "105.00");
    assert_eq!(
        daily.raw_at("/avgDailySpending"),
        data["dailyPattern"]["averageDailySpending"]
            .as_str()
            .unwrap()
    );
    let kinds: Vec<&Value> = insights.body["insights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["type"])
        .collect();
    let graph_kinds: Vec<&Value> = data["insights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["kind"])
        .collect();
    assert_eq!(kinds, graph_kinds);
    assert_eq!(data["budgets"], json!([{ "spent": "105.00" }]));
    assert_eq!(data["unreadNotificationCount"], 2);

    // Saturday: alice exports her expenses, and bob imports them into his own account.
    let csv = rest
        .get("/api/expenses/export.csv", &alice.token)
        .await
        .expect(200);
    assert!(csv.raw.starts_with("id,date,type,amount,"), "{}", csv.raw);
    assert_eq!(
        csv.raw.lines().count(),
        4,
        "a header and three rows: {}",
        csv.raw
    );
    assert!(csv.raw.contains(",50.00,") && csv.raw.contains("\"dinner, with friends\""));

    let alice_before = rest.get("/api/expenses", &alice.token).await.expect(200);
    let bob = rest.register("bob").await;
    let report = rest.import_csv(&bob.token, &csv.raw).await.expect(200);
    assert_eq!(
        report.body,
        json!({ "rows": 3, "created": 3, "alreadyPresent": 0 })
    );
    let bobs = rest.get("/api/expenses", &bob.token).await.expect(200);
    assert_eq!(contents(&bobs), contents(&alice_before));
    assert_eq!(bobs.raw_at("/summary/totalExpenses"), "105.00");
    let bob_ids = ids(&bobs.body["expenses"]);
    assert_eq!(bob_ids.len(), 3);
    assert!(
        bob_ids.iter().all(|id| !expense_ids.contains(id)),
        "the imported expenses have new ids: {bob_ids:?} vs {expense_ids:?}"
    );

    // Importing the same file again changes nothing, for bob and for alice (whose own
    // expenses the rows are).
    for who in [&bob, &alice] {
        let report = rest.import_csv(&who.token, &csv.raw).await.expect(200);
        assert_eq!(
            report.body,
            json!({ "rows": 3, "created": 0, "alreadyPresent": 3 }),
            "{}",
            who.username
        );
    }
    let again = rest.get("/api/expenses", &bob.token).await.expect(200);
    assert_eq!(ids(&again.body["expenses"]), bob_ids);

    // Bob sees nothing of alice: not her expenses by id, nor her budget, alerts or
    // notifications, and he cannot touch them.
    for id in &expense_ids {
        rest.get(&format!("/api/expenses/{id}"), &bob.token)
            .await
            .expect(404);
    }
    for path in [
        format!("/api/notifications/{warning_id}/read"),
        format!(
            "/api/budgets/alerts/{}/read",
            warning["alert"]["id"].as_str().unwrap()
        ),
    ] {
        rest.put(&path, &bob.token).await.expect(404);
    }
    rest.send(
        reqwest::Method::DELETE,
        &format!("/api/notifications/{critical_id}"),
        Some(&bob.token),
        &[],
        None,
    )
    .await
    .expect(404);
    assert_eq!(
        rest.get("/api/budgets", &bob.token).await.expect(200).body,
        json!([])
    );
    assert_eq!(
        rest.get("/api/budgets/alerts", &bob.token)
            .await
            .expect(200)
            .body,
        json!({ "alerts": [] })
    );
    assert_eq!(
        rest.get("/api/notifications", &bob.token)
            .await
            .expect(200)
            .body,
        json!({ "notifications": [], "unreadCount": 0, "total": 0, "nextCursor": null })
    );
    assert_eq!(
        rest.get("/api/notifications/unread-count", &bob.token)
            .await
            .expect(200)
            .body,
        json!({ "unreadCount": 0 })
    );
    // Bob's imported expenses reach his own analytics, and only his.
    assert!(
        wait_until(WAIT, || async {
            rest.get("/api/analytics/monthly-summary", &bob.token)
                .await
                .body["transactionCount"]
                == 3
        })
        .await,
        "analytics never counted bob's imported expenses"
    );

    // Alice's week is as she left it.
    let alice_after = rest.get("/api/expenses", &alice.token).await.expect(200);
    assert_eq!(alice_after.body, alice_before.body);
    assert_eq!(alice_after.raw, alice_before.raw);
    let summary = rest
        .get("/api/analytics/monthly-summary", &alice.token)
        .await
        .expect(200);
    assert_eq!(summary.body["transactionCount"], 3);
    assert_eq!(summary.raw_at("/totalSpent"), "105.00");

    // Sunday: alice reads her notifications.
    let read = rest
        .put(
            &format!("/api/notifications/{warning_id}/read"),
            &alice.token,
        )
        .await
        .expect(200);
    assert!(read.body["message"].is_string(), "{}", read.raw);
    assert_eq!(read.body["notification"]["id"], warning_id.as_str());
    assert_eq!(read.body["notification"]["read"], true);
    assert_eq!(
        rest.get("/api/notifications/unread-count", &alice.token)
            .await
            .expect(200)
            .body,
        json!({ "unreadCount": 1 })
    );
    let all = rest
        .put("/api/notifications/read-all", &alice.token)
        .await
        .expect(200);
    assert!(all.body["message"].is_string(), "{}", all.raw);
    assert_eq!(all.body["updatedCount"], 1);
    assert_eq!(
        rest.get("/api/notifications/unread-count", &alice.token)
            .await
            .expect(200)
            .body,
        json!({ "unreadCount": 0 })
    );
    let unread = rest
        .get("/api/notifications?unreadOnly=true", &alice.token)
        .await
        .expect(200);
    assert_eq!(unread.body["notifications"], json!([]));
    assert_eq!(unread.body["unreadCount"], 0);
    let all = rest
        .get("/api/notifications", &alice.token)
        .await
        .expect(200);
    assert_eq!(all.body["total"], 2);
    assert!(
        all.body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["read"] == true),
        "{}",
        all.raw
    );
    let data = gql
        .ok("{ unreadNotificationCount }", json!({}), Some(&alice.token))
        .await;
    assert_eq!(data, json!({ "unreadNotificationCount": 0 }));

    // Nothing more was pushed: each threshold alerted once.
    assert_eq!(ws.recv(Duration::from_millis(500)).await, None);
}
