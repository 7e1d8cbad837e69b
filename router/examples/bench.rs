//! Benchmark command (not a test): `cargo run -p router --release --example bench`.
//!
//! Starts four in-memory async-graphql subgraphs shaped like the public federation
//! gateways benchmark (accounts, inventory, products, reviews), composes them, starts
//! the router binary, drives it with `wrk` (Debian package) at 50 connections for a
//! fixed time, checks the responses, and prints RPS, p50/p95/p99 latency and the
//! router's peak RSS. It also measures one subgraph called directly versus through
//! the router (router overhead).
//!
//! Environment:
//! - `BENCH_DURATION` (seconds, default 10), `BENCH_CONNECTIONS` (default 50)
//! - `ROUTER_BIN` (default `target/release/router`)
//! - `BENCH_HIVE_ROUTER`: path of a Hive Router binary (`hive_router`, crate
//!   `hive-router`; it reads `SUPERGRAPH_FILE_PATH`, `HOST`, `PORT`, `LOG_LEVEL`)
//!   to compare against, with the single-subgraph overhead through it too, with its
//!   subgraph de-duplication on (its default) and off (`ROUTER_CONFIG_FILE_PATH`)
//! - `BENCH_HIVE_GATEWAY`: path of a `hive-gateway` executable (npm
//!   `@graphql-hive/gateway`, Node >= 22) to compare against
//! - `BENCH_ROUTER_BINS`: comma-separated router binaries taking the same
//!   `--supergraph PATH --listen ADDR` flags, to compare against
//! - `BENCH_SERVE_ONLY=1`: only start the subgraphs and write the supergraph; prints
//!   `SUPERGRAPH <path>` and serves until killed (for `scripts/router-instructions.sh`,
//!   which counts the router's instructions per request under callgrind)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_graphql::{ID, Object, SimpleObject};
use router::compose::{SubgraphSdl, compose_supergraph};

#[path = "support/subgraph.rs"]
mod subgraph;
use subgraph::serve;

const QUERY: &str = r#"fragment User on User { id username name }
fragment Review on Review { id body }
fragment Product on Product { inStock name price shippingEstimate upc weight }
query TestQuery {
  users { ...User reviews { ...Review product { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } } }
  topProducts { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } }
}"#;

const SINGLE_QUERY: &str = "{ topProducts { upc name price weight } }";

mod accounts {
    use super::*;
    #[derive(SimpleObject, Clone)]
    pub struct User {
        pub id: ID,
        pub name: Option<String>,
        pub username: Option<String>,
        pub birthday: Option<i32>,
    }
    pub fn users() -> Vec<User> {
        (1..=4)
            .map(|i| User {
                id: ID(i.to_string()),
                name: Some(format!("User {i}")),
                username: Some(format!("@user{i}")),
                birthday: Some(1_000 + i),
            })
            .collect()
    }
    pub struct Query;
    #[Object]
    impl Query {
        async fn me(&self) -> Option<User> {
            users().into_iter().next()
        }
        async fn user(&self, id: ID) -> Option<User> {
            users().into_iter().find(|u| u.id == id)
        }
        async fn users(&self) -> Vec<User> {
            users()
        }
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> Option<User> {
            users().into_iter().find(|u| u.id == id)
        }
    }
}

mod products {
    use super::*;
    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub upc: String,
        pub name: Option<String>,
        pub price: Option<i32>,
        pub weight: Option<i32>,
    }
    pub fn products() -> Vec<Product> {
        (1..=5)
            .map(|i| Product {
                upc: i.to_string(),
                name: Some(format!("Product {i}")),
                price: Some(100 * i),
                weight: Some(10 * i),
            })
            .collect()
    }
    pub struct Query;
    #[Object]
    impl Query {
        async fn top_products(&self, #[graphql(default = 5)] first: i32) -> Vec<Product> {
            products()
                .into_iter()
                .take(usize::try_from(first).unwrap_or(0))
                .collect()
        }
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
            products().into_iter().find(|p| p.upc == upc)
        }
    }
}

mod inventory {
    use super::*;
    pub struct Product {
        upc: String,
        price: Option<i32>,
        weight: Option<i32>,
    }
    #[Object]
    impl Product {
        #[graphql(external)]
        async fn upc(&self) -> &String {
            &self.upc
        }
        #[graphql(external)]
        async fn price(&self) -> Option<i32> {
            self.price
        }
        #[graphql(external)]
        async fn weight(&self) -> Option<i32> {
            self.weight
        }
        async fn in_stock(&self) -> Option<bool> {
            Some(self.upc != "3")
        }
        #[graphql(requires = "price weight")]
        async fn shipping_estimate(&self) -> Option<i32> {
            let (price, weight) = (self.price?, self.weight?);
            Some(if price > 1000 { 0 } else { weight / 2 })
        }
    }
    pub struct Query;
    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_upc(
            &self,
            #[graphql(key)] upc: String,
            price: Option<i32>,
            weight: Option<i32>,
        ) -> Product {
            Product { upc, price, weight }
        }
    }
}

mod reviews {
    use super::*;
    #[derive(Clone)]
    pub struct Review {
        id: u32,
        author: u32,
        product: u32,
    }
    fn reviews() -> Vec<Review> {
        (1..=10)
            .map(|i| Review {
                id: i,
                author: (i % 4) + 1,
                product: (i % 5) + 1,
            })
            .collect()
    }
    pub struct User {
        id: ID,
    }
    #[Object]
    impl User {
        #[graphql(external)]
        async fn id(&self) -> &ID {
            &self.id
        }
        #[graphql(external)]
        async fn username(&self) -> Option<String> {
            Some(format!("@user{}", self.id.as_str()))
        }
        async fn reviews(&self) -> Vec<Review> {
            reviews()
                .into_iter()
                .filter(|r| r.author.to_string() == self.id.as_str())
                .collect()
        }
    }
    pub struct Product {
        upc: String,
    }
    #[Object]
    impl Product {
        #[graphql(external)]
        async fn upc(&self) -> &String {
            &self.upc
        }
        async fn reviews(&self) -> Vec<Review> {
            reviews()
                .into_iter()
                .filter(|r| r.product.to_string() == self.upc)
                .collect()
        }
    }
    #[Object]
    impl Review {
        async fn id(&self) -> ID {
            ID(self.id.to_string())
        }
        async fn body(&self) -> Option<String> {
            Some(format!("Review {}", self.id))
        }
        #[graphql(provides = "username")]
        async fn author(&self) -> Option<User> {
            Some(User {
                id: ID(self.author.to_string()),
            })
        }
        async fn product(&self) -> Option<Product> {
            Some(Product {
                upc: self.product.to_string(),
            })
        }
    }
    pub struct Query;
    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> User {
            User { id }
        }
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Product {
            Product { upc }
        }
        #[graphql(entity)]
        async fn find_review_by_id(&self, id: ID) -> Option<Review> {
            reviews()
                .into_iter()
                .find(|r| r.id.to_string() == id.as_str())
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

const WRK_LUA: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
done = function(summary, latency, requests)
  io.write(string.format("BENCH rps=%f p50=%f p95=%f p99=%f non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"#;

fn run_wrk(url: &str, body: &str, connections: u32, seconds: u32) -> Wrk {
    let script = std::env::temp_dir().join("router-bench.lua");
    std::fs::write(&script, WRK_LUA).expect("write wrk script");
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .env("BENCH_BODY", body)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Wrk {
        rps: field("rps"),
        p50_ms: field("p50"),
        p95_ms: field("p95"),
        p99_ms: field("p99"),
        non_2xx: field("non2xx") as u64,
    }
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Starts a gateway, loads it with the single-subgraph query and prints its figures and
/// the latency it adds over calling the subgraph directly.
async fn overhead(
    label: &str,
    cmd: Command,
    url: String,
    body: &str,
    connections: u32,
    seconds: u32,
    direct: &Wrk,
) {
    let _gateway = spawn_quiet(cmd, label);
    wait_ready(&url).await;
    let body = body.to_string();
    let through = tokio::task::spawn_blocking(move || run_wrk(&url, &body, connections, seconds))
        .await
        .expect("wrk task");
    println!(
        "  through {label}: {:.0} RPS p50 {:.2} ms p99 {:.2} ms; added latency p50 {:+.1}%, p99 {:+.1}%",
        through.rps,
        through.p50_ms,
        through.p99_ms,
        (through.p50_ms / direct.p50_ms - 1.0) * 100.0,
        (through.p99_ms / direct.p99_ms - 1.0) * 100.0
    );
}

async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let ok = client
            .post(url)
            .json(&serde_json::json!({"query": "{ __typename }"}))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not become ready");
}

async fn fetch(url: &str, query: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({"query": query}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json response")
}

/// A command serving GraphQL at a free loopback port (`--supergraph PATH --listen
/// ADDR`, the flags of our router and the others compared), and the URL it answers at.
fn gateway_cmd(bin: &str, supergraph: &Path) -> (Command, String) {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["--supergraph"])
        .arg(supergraph)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    (cmd, format!("http://127.0.0.1:{port}/graphql"))
}

/// Our router, quiet, on a free port.
fn router_cmd(bin: &str, supergraph: &Path) -> (Command, String) {
    let (mut cmd, url) = gateway_cmd(bin, supergraph);
    cmd.env("RUST_LOG", "error");
    (cmd, url)
}

/// Starts `cmd` with its output discarded; it is killed when the guard drops.
fn spawn_quiet(mut cmd: Command, what: &str) -> Killer {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    Killer(child)
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Row {
    name: String,
    wrk: Wrk,
    rss_mb: f64,
}

async fn bench_gateway(
    name: &str,
    cmd: Command,
    url: &str,
    expected: &serde_json::Value,
    c: u32,
    d: u32,
) -> Row {
    let child = spawn_quiet(cmd, "gateway");
    wait_ready(url).await;
    let got = fetch(url, QUERY).await;
    assert_eq!(
        got["data"], expected["data"],
        "{name} returns the expected data"
    );
    let body = serde_json::json!({"query": QUERY}).to_string();
    let wrk = tokio::task::spawn_blocking({
        let url = url.to_owned();
        move || run_wrk(&url, &body, c, d)
    })
    .await
    .expect("wrk task");
    let after = fetch(url, QUERY).await;
    assert_eq!(
        after["data"], expected["data"],
        "{name} still correct after load"
    );
    let rss_mb = peak_rss_mb(child.0.id());
    Row {
        name: name.to_owned(),
        wrk,
        rss_mb,
    }
}

#[tokio::main]
async fn main() {
    let seconds: u32 = std::env::var("BENCH_DURATION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let connections: u32 = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let router_bin = std::env::var("ROUTER_BIN").unwrap_or_else(|_| "target/release/router".into());

    let (a_url, a_sdl) = serve(accounts::Query).await;
    let (i_url, i_sdl) = serve(inventory::Query).await;
    let (p_url, p_sdl) = serve(products::Query).await;
    let (r_url, r_sdl) = serve(reviews::Query).await;
    let sdl = compose_supergraph(&[
        SubgraphSdl {
            name: "accounts".into(),
            url: a_url,
            sdl: a_sdl,
        },
        SubgraphSdl {
            name: "inventory".into(),
            url: i_url,
            sdl: i_sdl,
        },
        SubgraphSdl {
            name: "products".into(),
            url: p_url.clone(),
            sdl: p_sdl,
        },
        SubgraphSdl {
            name: "reviews".into(),
            url: r_url,
            sdl: r_sdl,
        },
    ])
    .expect("benchmark subgraphs compose");
    let dir = std::env::temp_dir().join(format!("router-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let supergraph = dir.join("supergraph.graphql");
    std::fs::write(&supergraph, &sdl).expect("write supergraph");
    if std::env::var("BENCH_SERVE_ONLY").is_ok_and(|v| v == "1") {
        println!("SUPERGRAPH {}", supergraph.display());
        std::future::pending::<()>().await;
    }

    // Expected answer: computed by our router once, then checked for consistency
    // against every gateway (all must agree).
    let (cmd, url) = router_cmd(&router_bin, &supergraph);
    let expected = {
        let _probe = spawn_quiet(cmd, "router");
        wait_ready(&url).await;
        let v = fetch(&url, QUERY).await;
        assert!(
            v.get("errors").is_none(),
            "benchmark query has no errors: {v}"
        );
        assert!(
            v["data"]["users"][0]["reviews"][0]["product"]["shippingEstimate"].is_number(),
            "{v}"
        );
        v
    };

    println!("federation benchmark: {connections} connections, {seconds}s per run");
    let mut rows = Vec::new();
    let (cmd, url) = router_cmd(&router_bin, &supergraph);
    rows.push(bench_gateway("router (ours)", cmd, &url, &expected, connections, seconds).await);

    let hive_router = std::env::var("BENCH_HIVE_ROUTER").ok();
    if let Some(bin) = &hive_router {
        let (cmd, url) = hive_router_cmd(bin, &supergraph);
        rows.push(bench_gateway("hive-router", cmd, &url, &expected, connections, seconds).await);
    }
    if let Ok(hive) = std::env::var("BENCH_HIVE_GATEWAY") {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/graphql");
        let mut cmd = Command::new(&hive);
        cmd.arg("supergraph").arg(&supergraph).args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
        ]);
        rows.push(bench_gateway("hive-gateway", cmd, &url, &expected, connections, seconds).await);
    }
    if let Ok(bins) = std::env::var("BENCH_ROUTER_BINS") {
        for bin in bins.split(',').filter(|b| !b.is_empty()) {
            let (cmd, url) = gateway_cmd(bin, &supergraph);
            rows.push(bench_gateway(bin, cmd, &url, &expected, connections, seconds).await);
        }
    }

    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "gateway", "RPS", "p50 ms", "p95 ms", "p99 ms", "RSS MB", "errors"
    );
    for r in &rows {
        println!(
            "{:<28} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>8}",
            r.name, r.wrk.rps, r.wrk.p50_ms, r.wrk.p95_ms, r.wrk.p99_ms, r.rss_mb, r.wrk.non_2xx
        );
    }
    let ours = &rows[0];
    for other in rows.iter().skip(1) {
        println!(
            "ours vs {}: {:.2}x RPS, p99 {:.2} ms vs {:.2} ms, RSS {:.1} MB vs {:.1} MB",
            other.name,
            ours.wrk.rps / other.wrk.rps,
            ours.wrk.p99_ms,
            other.wrk.p99_ms,
            ours.rss_mb,
            other.rss_mb
        );
    }

    // Router overhead on a single-subgraph query: direct vs through the router.
    let direct_body = serde_json::json!({"query": SINGLE_QUERY}).to_string();
    let direct = tokio::task::spawn_blocking({
        let p_url = p_url.clone();
        let body = direct_body.clone();
        move || run_wrk(&p_url, &body, connections, seconds)
    })
    .await
    .expect("wrk task");
    println!(
        "single subgraph (products) direct: {:.0} RPS p50 {:.2} ms p99 {:.2} ms",
        direct.rps, direct.p50_ms, direct.p99_ms
    );
    // With de-duplication identical concurrent queries share subgraph calls, which
    // flatters the router; the second run measures the plain per-request overhead.
    // Hive Router de-duplicates subgraph requests by default too
    // (`traffic_shaping.all.dedupe_enabled`): measured both ways, like ours.
    let mut gateways = Vec::new();
    for dedupe in ["true", "false"] {
        let (mut cmd, url) = router_cmd(&router_bin, &supergraph);
        cmd.env("ROUTER_DEDUPE", dedupe);
        gateways.push((format!("router (dedupe={dedupe})"), cmd, url));
    }
    for dedupe in ["true", "false"] {
        let Some(bin) = &hive_router else { break };
        let (mut cmd, url) = hive_router_cmd(bin, &supergraph);
        let config = std::env::temp_dir().join(format!("hive-router-dedupe-{dedupe}.yaml"));
        std::fs::write(
            &config,
            format!("traffic_shaping:\n  all:\n    dedupe_enabled: {dedupe}\n"),
        )
        .expect("write the Hive Router configuration");
        cmd.env("ROUTER_CONFIG_FILE_PATH", &config);
        gateways.push((format!("hive-router (dedupe={dedupe})"), cmd, url));
    }
    for (label, cmd, url) in gateways {
        overhead(
            &label,
            cmd,
            url,
            &direct_body,
            connections,
            seconds,
            &direct,
        )
        .await;
    }
}

/// Hive Router on a free loopback port: it is configured by environment variables.
fn hive_router_cmd(bin: &str, supergraph: &Path) -> (Command, String) {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.env("SUPERGRAPH_FILE_PATH", supergraph)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "error");
    (cmd, format!("http://127.0.0.1:{port}/graphql"))
}
