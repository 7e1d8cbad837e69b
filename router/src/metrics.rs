//! Prometheus metrics, one registry per router instance.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::execute::FetchObserver;
use crate::pipeline::PipelineObserver;

/// Distinct client-chosen operation names kept as labels; later ones count as `other`
/// (names from the safelist manifest always count).
pub const MAX_OPERATION_LABELS: usize = 100;

pub struct Metrics {
    /// Operation names in use as labels.
    operation_labels: parking_lot::Mutex<std::collections::HashSet<String>>,
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
            operation_labels: parking_lot::Mutex::new(std::collections::HashSet::new()),
            registry,
            requests,
            errors,
            request_latency,
            subgraph_latency,
            subgraph_requests,
            plan_cache,
        }
    }

    /// The label of a request's operation name: `anonymous` without one; the name
    /// itself when it is a plain GraphQL name already in use or there is room for
    /// one more; else `other`. Clients cannot grow the series without bound.
    pub fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return "anonymous".to_owned();
        };
        let plain = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain {
            return "other".to_owned();
        }
        let mut known = self.operation_labels.lock();
        if known.contains(name) || known.len() < MAX_OPERATION_LABELS {
            known.insert(name.to_owned());
            name.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// Operation names that always get their own label (the safelist's).
    pub fn allow_operation_names<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        self.operation_labels
            .lock()
            .extend(names.into_iter().map(str::to_owned));
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
