//! How long a budget alert takes to reach a websocket through the router.
//!
//!     MONGODB_URI=... cargo run --release -p router --example alert-latency [-- N]
//!
//! Starts the whole product on loopback (the five subgraphs over throwaway databases on
//! `MONGODB_URI`, the router in front) with the services' own polling defaults, as
//! `make run` has them. Then, N times (default 50): a fresh user with a food budget of
//! 100 subscribes to `budgetAlerts` through the router, spends 85, and the time from the
//! `createExpense` answer to the alert on the websocket is taken. Prints p50, p95 and the
//! largest, and which database server answered (change streams or polling).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/support/stack.rs"]
mod stack;

use std::time::{Duration, Instant};

use serde_json::json;
use stack::{ProductStack, Timings};

const ALERTS: &str = "subscription { budgetAlerts { threshold severity } }";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn server_label() -> String {
    let client = mongodb::Client::with_uri_str(kit::testing::mongodb_uri())
        .await
        .expect("MONGODB_URI");
    let admin = client.database("admin");
    let info = admin
        .run_command(mongodb::bson::doc! { "buildInfo": 1 })
        .await
        .expect("buildInfo");
    let name = match info.get_str("secantusVersion") {
        Ok(v) => format!("SecantusDB {v}"),
        Err(_) => format!(
            "MongoDB-compatible {}",
            info.get_str("version").unwrap_or("?")
        ),
    };
    let mode = kit::changes::follow_mode(&admin).await;
    format!("{name}, {mode:?}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N is a count"))
        .unwrap_or(50);
    println!("database: {}", server_label().await);
    let stack = ProductStack::start_timed(Timings::Product, |_| {}).await;
    let gql = stack.gql();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let user = stack.register(&format!("latency{i}")).await;
        gql.ok(
            "mutation { createBudget(input: { category: \"food\", amount: \"100\" }) { id } }",
            json!({}),
            Some(&user.token),
        )
        .await;
        let mut ws = stack.ws(&user.token).await;
        ws.subscribe("alerts", ALERTS).await;
        // Let the subscription reach the notifications subgraph before spending.
        tokio::time::sleep(Duration::from_millis(200)).await;
        gql.ok(
            "mutation { createExpense(input: { amount: \"85\", category: \"food\", description: \"x\" }) { id } }",
            json!({}),
            Some(&user.token),
        )
        .await;
        let answered = Instant::now();
        let alert = ws.next(Duration::from_secs(30)).await.expect("the alert");
        let ms = answered.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(alert["data"]["budgetAlerts"]["threshold"], 80, "{alert}");
        samples.push(ms);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "alert latency, createExpense answer -> budgetAlerts event through the router, N = {n}: \
         p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        samples[samples.len() - 1],
    );
}
