//! Prometheus metrics, one registry per router instance.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::execute::FetchObserver;
use crate::pipeline::PipelineObserver;

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub request_latency: HistogramVec,
    pub subgraph_latency: HistogramVec,
    pub subgraph_requests: IntCounterVec,
    pub plan_cache: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("router_requests_total", "GraphQL requests by HTTP status"),
            &["status"],
        )
        .expect("static metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "router_errors_total",
                "GraphQL errors returned, by extensions.code",
            ),
            &["code"],
        )
        .expect("static metric definition");
        let request_latency = HistogramVec::new(
            HistogramOpts::new(
                "router_request_duration_seconds",
                "End-to-end request latency",
            ),
            &["operation"],
        )
        .expect("static metric definition");
        let subgraph_latency = HistogramVec::new(
            HistogramOpts::new(
                "router_subgraph_request_duration_seconds",
                "Subgraph request latency",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["subgraph"],
        )
        .expect("static metric definition");
        let subgraph_requests = IntCounterVec::new(
            Opts::new(
                "router_subgraph_requests_total",
                "Subgraph requests by outcome",
            ),
            &["subgraph", "outcome"],
        )
        .expect("static metric definition");
        let plan_cache = IntCounterVec::new(
            Opts::new("router_plan_cache_total", "Operation/plan cache lookups"),
            &["result"],
        )
        .expect("static metric definition");
        for c in [&requests, &errors, &subgraph_requests, &plan_cache] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric names");
        }
        for h in [&request_latency, &subgraph_latency] {
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric names");
        }
        Self {
            registry,
            requests,
            errors,
            request_latency,
            subgraph_latency,
            subgraph_requests,
            plan_cache,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl FetchObserver for Metrics {
    fn fetched(&self, subgraph: &str, elapsed: Duration, ok: bool) {
        self.subgraph_latency
            .with_label_values(&[subgraph])
            .observe(elapsed.as_secs_f64());
        self.subgraph_requests
            .with_label_values(&[subgraph, if ok { "ok" } else { "error" }])
            .inc();
    }
}

impl PipelineObserver for Metrics {
    fn plan_cache(&self, hit: bool) {
        self.plan_cache
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
    }
}
