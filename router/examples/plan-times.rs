//! Planning cost on a cold start (a command, not a test):
//! `cargo run -p router --release --example plan-times [-- path/to/supergraph.graphql]`.
//!
//! Loads the product's supergraph (default `schema/supergraph.graphql`) and, for every
//! GraphQL operation the REST shim runs, prints how long its first preparation takes
//! (parse, validate, normalise, plan: what a request would wait for on a cold plan
//! cache) and a cached one. The router does this work when it starts, off the request
//! path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use router::pipeline::{Pipeline, PipelineOptions};
use router::subgraph::SubgraphClient;
use router::supergraph::Supergraph;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "schema/supergraph.graphql".to_owned());
    let started = Instant::now();
    let supergraph = Arc::new(Supergraph::from_file(path.as_ref()).expect("the supergraph loads"));
    println!(
        "supergraph {path}: loaded in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let config = router::Config::default();
    let pipeline = Pipeline::new(
        supergraph,
        Arc::new(SubgraphClient::new(HashMap::new(), false)),
        PipelineOptions {
            limits: config.limits.clone(),
            introspection: true,
            plan_cache_size: config.plan_cache_size,
            parser_token_limit: config.limits.max_tokens,
            planning_timeout: Duration::from_secs(10),
        },
    );
    let ops = router::rest::ops::all();
    println!("{:>10} {:>10}  operation", "cold ms", "cached ms");
    let mut total = Duration::ZERO;
    let mut slowest = (Duration::ZERO, String::new());
    for op in &ops {
        let t = Instant::now();
        let result = pipeline.prepare(op, None);
        let cold = t.elapsed();
        let t = Instant::now();
        let _ = pipeline.prepare(op, None);
        let cached = t.elapsed();
        if let Err(e) = result {
            println!("FAILED {op}: {:?}", e.errors);
            continue;
        }
        total += cold;
        if cold > slowest.0 {
            slowest = (cold, op.clone());
        }
        let short: String = op.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = short.chars().take(90).collect();
        println!(
            "{:>10.2} {:>10.4}  {short}",
            cold.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );
    }
    println!(
        "{} operations: {:.1} ms in all, slowest {:.2} ms",
        ops.len(),
        total.as_secs_f64() * 1e3,
        slowest.0.as_secs_f64() * 1e3
    );
}
