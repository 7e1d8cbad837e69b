//! notifications-bench: the figures of issue 4 (a benchmark command, not a test).
//!
//! 1. Latency from `createExpense` returning to the `budgetAlerts` event arriving on a
//!    websocket, over N alerts (default 200): real expenses, budgets and
//!    notifications subgraphs in this process, events over HTTP, the subscription over
//!    graphql-transport-ws. Timings are the services' own (from the environment:
//!    `EVENT_POLL_MS`, `NOTIFY_TAIL_POLL_MS`, ...).
//! 2. 1,000 idle subscriptions on one notifications instance: resident memory per
//!    subscription (process RSS before/after; client and server sockets live in this
//!    one process, so the figure includes both ends) and the fan-out latency of one
//!    notification to all of them.
//!
//! `MONGODB_URI=mongodb://127.0.0.1:27777 cargo run -p notifications --example notifications-bench [alerts] [subscriptions]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/figures.rs"]
mod figures;
#[path = "../tests/support/mod.rs"]
mod support;

use figures::{ms, percentile};

use std::time::{Duration, Instant};

use chrono::Utc;
use kit::events::Event;
use kit::testing::test_user;
use serde_json::json;

const ALERTS: &str = "subscription { budgetAlerts { threshold message } }";
const ADDED: &str = "subscription { notificationAdded { id } }";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let alerts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let subs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let chain = support::start_chain(false).await;

    // 1. createExpense -> budgetAlerts.
    let mut latencies = Vec::with_capacity(alerts);
    for i in 0..alerts {
        let (_, token) = test_user();
        chain.create_budget(&token, "1.00", &[100]).await;
        let mut ws = chain.subscribe(&token, ALERTS).await;
        // Let the subscription start before the expense is written.
        tokio::time::sleep(Duration::from_millis(20)).await;
        chain.spend(&token, "1.00").await;
        let returned = Instant::now();
        let got = support::next_message(&mut ws, Duration::from_secs(60)).await;
        let took = returned.elapsed();
        match got {
            Some(v) if v["type"] == "next" => latencies.push(took),
            other => eprintln!("alert {i}: no event ({other:?})"),
        }
    }
    latencies.sort();
    println!(
        "createExpense -> budgetAlerts over {} alerts: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 1.0)),
    );

    // 2. Idle subscriptions and fan-out.
    let (user, token) = test_user();
    let url = format!("ws://{}/graphql", chain.notifications_server.addr);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let mut sockets = Vec::with_capacity(subs);
    for _ in 0..subs {
        sockets.push(support::subscribe_at(&url, &token, ADDED).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "{subs} idle subscriptions: RSS {} KiB -> {} KiB, {:.1} KiB per subscription (both ends)",
        before,
        after,
        (after.saturating_sub(before)) as f64 / subs as f64
    );
    let event = Event::new(
        "budget.alert",
        &user,
        Utc::now(),
        json!({ "alertId": kit::ids::new_id(), "budgetId": kit::ids::new_id(), "category": "food",
                "threshold": 100, "percentUsed": 100.0, "severity": "CRITICAL",
                "message": "fan-out", "periodStart": "2024-01-01" }),
    );
    let http = reqwest::Client::new();
    let start = Instant::now();
    let status = http
        .post(chain.notifications_server.url("/internal/events"))
        .header("x-service-token", "test-service-token")
        .json(&event)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
    let arrivals = futures::future::join_all(sockets.iter_mut().map(|ws| async move {
        support::next_message(ws, Duration::from_secs(30))
            .await
            .map(|_| start.elapsed())
    }))
    .await;
    let mut got: Vec<Duration> = arrivals.into_iter().flatten().collect();
    got.sort();
    println!(
        "fan-out of one notification to {} of {subs} subscribers: first {:.1} ms, p50 {:.1} ms, p95 {:.1} ms, last {:.1} ms",
        got.len(),
        ms(percentile(&got, 0.0)),
        ms(percentile(&got, 0.50)),
        ms(percentile(&got, 0.95)),
        ms(percentile(&got, 1.0)),
    );
}
