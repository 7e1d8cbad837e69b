#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The alert path end to end on real servers: an expense written in the expenses
//! subgraph crosses a budget in the budgets subgraph, whose `budget.alert` event
//! becomes a notification that reaches the user's websocket, and only theirs.

mod support;

use std::time::Duration;

use kit::testing::test_user;
use serde_json::json;

const ALERTS: &str =
    "subscription { budgetAlerts { threshold severity message alert { id } budget { id } } }";

#[tokio::test]
async fn an_expense_over_budget_reaches_the_owners_websocket_as_a_budget_alert() {
    let chain = support::start_chain(true).await;
    let (_, ann) = test_user();
    let (_, bob) = test_user();
    let budget = chain.create_budget(&ann, "10.00", &[80, 100]).await;
    let bob_budget = chain.create_budget(&bob, "10.00", &[80, 100]).await;
    let mut ann_ws = chain.subscribe(&ann, ALERTS).await;
    let mut bob_ws = chain.subscribe(&bob, ALERTS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    chain.spend(&ann, "8.50").await;
    let got = support::next_message(&mut ann_ws, Duration::from_secs(20))
        .await
        .expect("an alert");
    let a = &got["payload"]["data"]["budgetAlerts"];
    assert_eq!(a["threshold"], 80, "{got}");
    assert_eq!(a["severity"], "WARNING");
    assert_eq!(a["budget"]["id"], budget["id"]);
    // Bob spent nothing: nothing reaches him, though his socket is open and listening.
    support::assert_silent(&mut bob_ws, Duration::from_millis(800)).await;
    let d = chain
        .notifications_gql
        .ok(
            "{ unreadNotificationCount notifications { edges { node { type } } } }",
            json!({}),
            Some(&ann),
        )
        .await;
    assert_eq!(d["unreadNotificationCount"], 1);
    assert_eq!(
        d["notifications"]["edges"][0]["node"]["type"],
        "BUDGET_ALERT"
    );

    // Bob's subscription was live all along: his own alert reaches him, and not Ann.
    chain.spend(&bob, "9.00").await;
    let got = support::next_message(&mut bob_ws, Duration::from_secs(20))
        .await
        .expect("bob's alert");
    let b = &got["payload"]["data"]["budgetAlerts"];
    assert_eq!(b["threshold"], 80, "{got}");
    assert_eq!(b["budget"]["id"], bob_budget["id"]);
    support::assert_silent(&mut ann_ws, Duration::from_millis(800)).await;
}
