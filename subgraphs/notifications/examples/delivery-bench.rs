//! delivery-bench: fair event delivery under one user's backlog (a benchmark command,
//! not a test).
//!
//! Real expenses, budgets and notifications subgraphs in this process over the database
//! of `MONGODB_URI`, events over HTTP, timings from the environment (`EVENT_POLL_MS`,
//! `EVENT_BATCH_MAX`, `EVENT_STREAMS`, ...; the services' defaults otherwise).
//!
//! 1. With no backlog: N ordinary users (default 10) each set a 100.00 budget alerting at
//!    80% and spend 85.00; the latency from `createExpense` answering to the alert
//!    arriving on the user's `budgetAlerts` subscription (notifications).
//! 2. One user imports a backlog of B expenses (default 20,000, CSV imports of 10,000
//!    rows: B `expense.created` events for budgets); while it drains, the same N samples.
//! 3. The backlog's drain: events pending when the import ended, time until none is
//!    left, events per second.
//!
//! `MONGODB_URI=mongodb://127.0.0.1:27017 cargo run --release -p notifications --example delivery-bench [backlog] [samples]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/figures.rs"]
mod figures;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use figures::spread;
use kit::testing::test_user;
use mongodb::bson::{Document, doc};
use serde_json::json;

const ALERTS: &str = "subscription { budgetAlerts { threshold message } }";
const IMPORT: &str = "mutation($csv: String!) { importExpensesCsv(csv: $csv) { rows created } }";
/// Rows per CSV import (the import's own limit).
const ROWS_PER_IMPORT: usize = 10_000;

/// Events the expenses subgraph has not yet delivered to budgets.
async fn pending(chain: &support::Chain) -> u64 {
    chain.dbs[2]
        .db
        .collection::<Document>("expenses")
        .count_documents(doc! { "outboxPending.c": "budgets" })
        .await
        .unwrap()
}

/// One ordinary user crossing 80% of a budget: createExpense answered -> alert arrived.
async fn alert_latency(chain: &support::Chain) -> Option<Duration> {
    let (_, token) = test_user();
    chain.create_budget(&token, "100.00", &[80]).await;
    let mut ws = chain.subscribe(&token, ALERTS).await;
    // Let the subscription start before the expense is written.
    tokio::time::sleep(Duration::from_millis(50)).await;
    chain.spend(&token, "85.00").await;
    let answered = Instant::now();
    match support::next_message(&mut ws, Duration::from_secs(600)).await {
        Some(v) if v["type"] == "next" => Some(answered.elapsed()),
        other => {
            eprintln!("no alert: {other:?}");
            None
        }
    }
}

async fn samples(chain: &support::Chain, n: usize, label: &str) {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let before = pending(chain).await;
        if let Some(d) = alert_latency(chain).await {
            got.push(d);
            println!(
                "  {label}: alert after {:.0} ms ({before} backlog events pending)",
                figures::ms(d)
            );
        }
    }
    println!(
        "alert latency {label}, {} of {n} samples: {}",
        got.len(),
        spread(&mut got)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backlog: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let chain = support::start_chain(false).await;

    // 1. No backlog.
    samples(&chain, n, "with no backlog").await;

    // 2. One user's backlog, imported as CSV files.
    let (_, big) = test_user();
    let started = Instant::now();
    let mut row = 0;
    while row < backlog {
        let rows = ROWS_PER_IMPORT.min(backlog - row);
        let mut csv = String::from("id,date,amount,category,description\r\n");
        for i in row..row + rows {
            csv.push_str(&format!(
                "row-{i},2024-03-{:02},1.00,food,backlog {i}\r\n",
                1 + i % 28
            ));
        }
        let answer = chain
            .expenses_gql
            .ok(IMPORT, json!({ "csv": csv }), Some(&big))
            .await;
        assert_eq!(answer["importExpensesCsv"]["created"], rows, "{answer}");
        row += rows;
    }
    let imported = started.elapsed();
    let drain_from = Instant::now();
    let left = pending(&chain).await;
    println!(
        "backlog: {backlog} expenses imported in {:.1} s; {left} events still pending for budgets",
        imported.as_secs_f64()
    );
    samples(&chain, n, "during the backlog").await;

    // 3. The drain.
    loop {
        let now = pending(&chain).await;
        if now == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained = drain_from.elapsed();
    println!(
        "drain: {left} events in {:.1} s after the import ({:.0} events/s); all {backlog} delivered {:.1} s after the import began ({:.0} events/s overall)",
        drained.as_secs_f64(),
        left as f64 / drained.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        backlog as f64 / started.elapsed().as_secs_f64(),
    );
}
