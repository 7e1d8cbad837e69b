//! Live budget alerts through the router, over the real product: who may subscribe,
//! and many subscriptions on one connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::stack::ProductStack;

const ALERTS: &str = "subscription { budgetAlerts { threshold severity } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_without_a_token_is_unauthenticated() {
    let stack = ProductStack::start().await;
    let mut ws = stack.ws_with(json!({})).await;
    ws.subscribe("alerts", ALERTS).await;
    let answer = ws.recv(Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["id"], "alerts");
    assert_eq!(
        answer["payload"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_subscriptions_on_one_connection_each_receive_the_alert() {
    const N: usize = 1000;
    let stack = ProductStack::start_with(|c| c.websocket.max_operations = N).await;
    let gql = stack.gql();
    let alice = stack.register("many").await;
    gql.ok(
        "mutation { createBudget(input: { category: \"food\", amount: \"100\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    let mut ws = stack.ws(&alice.token).await;
    let mut pending: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    // A router busy preparing other operations refuses some with RATE_LIMITED and a
    // `retryAfter`, as it would for any client: those are subscribed again, as a
    // client does, until a round is refused nothing (a few rounds at most).
    for _round in 0..10 {
        for id in &pending {
            ws.subscribe(id, ALERTS).await;
        }
        pending.clear();
        // Give the router time to open every subscription on the notifications
        // subgraph, and collect what it refused.
        let quiet = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Some(msg) = ws
            .recv(quiet.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            assert_eq!(msg["type"], "error", "before any expense: {msg}");
            assert_eq!(
                msg["payload"][0]["extensions"]["code"], "RATE_LIMITED",
                "{msg}"
            );
            pending.push(msg["id"].as_str().unwrap().to_owned());
        }
        if pending.is_empty() {
            break;
        }
    }
    assert!(
        pending.is_empty(),
        "still refused after ten rounds: {pending:?}"
    );
    gql.ok(
        "mutation { createExpense(input: { amount: \"85\", category: \"food\", description: \"feast\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    let mut seen = HashSet::new();
    while seen.len() < N {
        let Some(msg) = ws.recv(Duration::from_secs(30)).await else {
            break;
        };
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(
            msg["payload"]["data"]["budgetAlerts"]["threshold"], 80,
            "{msg}"
        );
        assert!(seen.insert(msg["id"].as_str().unwrap().to_owned()), "{msg}");
    }
    assert_eq!(seen.len(), N, "every subscription received the alert once");
}

const RESUMABLE: &str = "subscription($after: ID) { budgetAlerts(after: $after) {
    threshold notification { id } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_made_while_the_client_was_away_arrives_once_when_it_resumes() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("away").await;
    gql.ok(
        "mutation { createBudget(input: { category: \"food\", amount: \"100\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    let spend = async |amount: &str| {
        gql.ok(
            "mutation($a: Decimal!) { createExpense(input: { amount: $a, category: \"food\", description: \"x\" }) { id } }",
            json!({ "a": amount }),
            Some(&alice.token),
        )
        .await;
    };
    let mut ws = stack.ws(&alice.token).await;
    ws.send(json!({ "id": "a", "type": "subscribe", "payload": { "query": RESUMABLE } }))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    spend("85").await;
    let first = ws
        .next(Duration::from_secs(20))
        .await
        .expect("the 80% alert");
    assert_eq!(first["data"]["budgetAlerts"]["threshold"], 80, "{first}");
    let seen = first["data"]["budgetAlerts"]["notification"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(ws);

    // Away: the 100% alert is made and stored while no one listens.
    spend("20").await;
    let count = "{ notifications(first: 10) { totalCount } }";
    let mut stored = false;
    for _ in 0..100 {
        let d = gql.ok(count, json!({}), Some(&alice.token)).await;
        if d["notifications"]["totalCount"] == 2 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "the second alert was notified");

    // Back, resuming after the last alert seen: the missed one, once, and nothing else.
    let mut ws = stack.ws(&alice.token).await;
    ws.send(json!({ "id": "b", "type": "subscribe",
        "payload": { "query": RESUMABLE, "variables": { "after": seen } } }))
        .await;
    let missed = ws
        .next(Duration::from_secs(20))
        .await
        .expect("the missed alert");
    assert_eq!(missed["data"]["budgetAlerts"]["threshold"], 100, "{missed}");
    assert_ne!(
        missed["data"]["budgetAlerts"]["notification"]["id"],
        seen.as_str()
    );
    assert_eq!(ws.recv(Duration::from_secs(2)).await, None, "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_alert_arrives_over_server_sent_events() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("ssealice").await;
    gql.ok(
        "mutation { createBudget(input: { category: \"food\", amount: \"100\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    let mut sse = support::streams::open(
        &stack.router_url(),
        "text/event-stream",
        Some(&alice.token),
        "subscription { budgetAlerts { threshold severity budget { category } } }",
        json!({}),
    )
    .await;
    assert_eq!(sse.status, 200);
    // Give the router time to open the subscription on the notifications subgraph.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gql.ok(
        "mutation { createExpense(input: { amount: \"85\", category: \"food\", description: \"feast\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    let (event, data) = sse
        .next_event(Duration::from_secs(30))
        .await
        .expect("the alert arrives as an SSE event");
    assert_eq!(event, "next");
    let data: serde_json::Value = serde_json::from_str(&data).expect("JSON");
    assert_eq!(
        data["data"]["budgetAlerts"],
        json!({"threshold": 80, "severity": "WARNING", "budget": {"category": "food"}}),
        "{data}"
    );
}
