//! Benchmark command (not a test): `cargo run -p router --release --example edge-bench`.
//!
//! The cost of hostile work at the router's edge, measured in one process (router and
//! one in-memory subgraph on loopback):
//! - a `{ me { id } }` probe's latency on an idle router;
//! - how long one fragment bomb (N = 30: 2^30 fields once expanded, ~1.4 KB of text) and
//!   ten at once take to be refused;
//! - the probe's latency while bombs keep arriving, and its ratio to the idle figure;
//! - the process RSS before, during and after websocket clients that send queries with
//!   ~45 KB answers and never read them.
//!
//! Environment: `EDGE_BENCH_PROBES` (default 300), `EDGE_BENCH_READERS` (slow
//! websocket clients, default 20), `EDGE_BENCH_QUERIES` (per slow client, default 200).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::{ID, Object};
use futures::SinkExt;
use router::compose::{SubgraphSdl, compose_supergraph};

#[path = "support/subgraph.rs"]
mod subgraph;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Query;

#[Object]
impl Query {
    async fn me(&self) -> ID {
        ID("1".into())
    }

    /// A text of `size` bytes: a large answer.
    async fn blob(&self, size: i32) -> String {
        "x".repeat(usize::try_from(size.clamp(0, 1 << 20)).unwrap_or(0))
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bomb(n: usize) -> String {
    let mut q = "query Bomb { ...F0 }\n".to_string();
    for i in 0..n {
        q.push_str(&format!(
            "fragment F{i} on Query {{ ...F{} ...F{} }}\n",
            i + 1,
            i + 1
        ));
    }
    q.push_str(&format!("fragment F{n} on Query {{ me }}\n"));
    q
}

async fn post(http: &reqwest::Client, url: &str, query: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let body: serde_json::Value = http
        .post(url)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("router answers")
        .json()
        .await
        .expect("a JSON answer");
    (started.elapsed(), body)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| ms(samples[((samples.len() - 1) as f64 * p).round() as usize]);
    (at(0.50), at(0.99))
}

async fn probes(http: &reqwest::Client, url: &str, n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, body) = post(http, url, "{ me }").await;
        assert_eq!(body["data"]["me"], "1", "probe answered: {body}");
        samples.push(t);
    }
    percentiles(samples)
}

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let probes_n = env_or("EDGE_BENCH_PROBES", 300);
    let readers = env_or("EDGE_BENCH_READERS", 20);
    let per_reader = env_or("EDGE_BENCH_QUERIES", 200);

    // One in-memory subgraph and the router over it.
    let (sub_url, sdl) = subgraph::serve(Query).await;
    let supergraph = compose_supergraph(&[SubgraphSdl {
        name: "bench".into(),
        url: sub_url,
        sdl,
    }])
    .expect("composes");
    let supergraph = Arc::new(router::supergraph::Supergraph::parse(&supergraph).expect("loads"));
    let state = router::build_state_with(router::Config::default(), supergraph)
        .await
        .expect("router state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind router");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(router::serve(state, listener, std::future::pending()));
    let url = format!("http://{addr}/graphql");
    let http = reqwest::Client::new();

    println!("edge-bench: router and one subgraph in this process, loopback");
    let (idle50, idle99) = probes(&http, &url, probes_n).await;
    println!("probe {{ me }} idle:            p50 {idle50:.2} ms  p99 {idle99:.2} ms");

    let text = bomb(30);
    let mut single = Vec::new();
    for _ in 0..10 {
        let (t, body) = post(&http, &url, &text).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
            "{body}"
        );
        single.push(t);
    }
    let (b50, b99) = percentiles(single);
    println!(
        "fragment bomb N=30 ({} bytes): refused in p50 {b50:.2} ms  max {b99:.2} ms",
        text.len()
    );
    let started = Instant::now();
    let ten = futures::future::join_all((0..10).map(|_| post(&http, &url, &text))).await;
    let slowest = ten.iter().map(|(t, _)| *t).max().unwrap_or_default();
    println!(
        "ten bombs at once:              all refused in {:.2} ms (slowest {:.2} ms)",
        ms(started.elapsed()),
        ms(slowest)
    );

    // Bombs keep arriving, ten at a time, while the probe runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let (http, url, text, stop) = (http.clone(), url.clone(), text.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                futures::future::join_all((0..10).map(|_| post(&http, &url, &text))).await;
                sent += 10;
            }
            sent
        })
    };
    let (hot50, hot99) = probes(&http, &url, probes_n).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = attack.await.unwrap_or(0);
    println!(
        "probe {{ me }} under bombs:       p50 {hot50:.2} ms  p99 {hot99:.2} ms  ({sent} bombs meanwhile; p50 x{:.2}, p99 x{:.2} of idle)",
        hot50 / idle50.max(1e-9),
        hot99 / idle99.max(1e-9)
    );

    // Websocket clients that ask for large answers and never read them.
    let baseline = rss_mb();
    let ws_url = format!("ws://{addr}/graphql");
    let mut sockets = Vec::new();
    for _ in 0..readers {
        let mut req = ws_url.as_str().into_client_request().expect("request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket");
        let _ = ws
            .send(Message::text(
                json!({"type": "connection_init", "payload": {}}).to_string(),
            ))
            .await;
        for i in 0..per_reader {
            let msg = json!({"id": format!("q{i}"), "type": "subscribe",
                "payload": {"query": "{ blob(size: 45000) }"}});
            if ws.send(Message::text(msg.to_string())).await.is_err() {
                break;
            }
        }
        sockets.push(ws);
    }
    let mut peak = rss_mb();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_mb());
    }
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_mb();
    println!(
        "slow readers ({readers} x {per_reader} queries of 45 KB answers, never read): RSS {baseline:.0} MB before, {peak:.0} MB peak, {after:.0} MB 5 s after they left (peak x{:.2} of before)",
        peak / baseline.max(1e-9)
    );
}
