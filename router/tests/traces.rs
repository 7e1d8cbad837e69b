//! Traces over OTLP: with an endpoint set, a request through the router and everything
//! it causes (the subgraph it calls, the events that go on to budgets and notifications,
//! the notification's delivery) are spans of one trace, received by an OTLP/HTTP
//! collector running in this test.
//!
//! One test in this file: the process's tracing set-up (installed once) exports here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use serde_json::json;
use support::stack::ProductStack;

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Seen {
    trace_id: String,
    name: String,
    /// The `service` attribute the product puts on its spans.
    service: String,
    resource_service: String,
    /// Every string attribute, `key=value`.
    attributes: BTreeSet<String>,
}

type Spans = Arc<Mutex<Vec<Seen>>>;

fn text(attributes: &[KeyValue], key: &str) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            any_value::Value::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

/// `POST /v1/traces`: OTLP/HTTP protobuf, decoded and kept.
async fn collect(State(spans): State<Spans>, body: Bytes) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export request");
    let mut seen = spans.lock().unwrap();
    for resource in request.resource_spans {
        let resource_service = resource
            .resource
            .as_ref()
            .map(|r| text(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, text(&span.attributes, &kv.key)))
                    .collect();
                seen.push(Seen {
                    trace_id: hex::encode(&span.trace_id),
                    name: span.name.clone(),
                    service: text(&span.attributes, "service"),
                    resource_service: resource_service.clone(),
                    attributes,
                });
            }
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

async fn start_collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(collect))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// Sends what has been recorded, then every span received so far.
async fn all_spans(spans: &Spans) -> Vec<Seen> {
    tokio::task::spawn_blocking(contract::telemetry::flush)
        .await
        .unwrap();
    spans.lock().unwrap().clone()
}

fn has(spans: &[Seen], name: &str, service: &str) -> bool {
    spans.iter().any(|s| s.name == name && s.service == service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_follows_a_request_through_the_router_subgraphs_events_and_delivery() {
    let (collector, spans) = start_collector().await;
    // Before the stack starts (its own set-up is then a no-op).
    contract::telemetry::init(
        "product-under-test",
        "warn",
        contract::telemetry::LogFormat::Text,
        Some(&collector),
    );
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("tracy").await;

    // A plain request: the router starts a trace and the subgraph it calls joins it.
    gql.ok("{ me { username } }", json!({}), Some(&alice.token))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = all_spans(&spans).await;
        let joined = all
            .iter()
            .filter(|s| s.name == "graphql" && s.service == "router")
            .any(|r| {
                all.iter().any(|s| {
                    s.trace_id == r.trace_id && s.name == "graphql" && s.service == "users"
                })
            });
        if joined {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a router span and a users span with one trace id: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        spans
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.resource_service == "product-under-test"),
        "spans carry the service name they were exported under"
    );

    // The alert chain, in the caller's own trace.
    gql.ok(
        "mutation { updateNotificationPreferences(input: { email: \"tracy@example.com\" }) { email } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    gql.ok(
        "mutation { createBudget(input: { category: \"food\", amount: \"100\" }) { id } }",
        json!({}),
        Some(&alice.token),
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer: serde_json::Value = reqwest::Client::new()
        .post(stack.router_url())
        .bearer_auth(&alice.token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "query": "mutation { createExpense(input: { amount: \"85\", category: \"food\", description: \"feast\" }) { id } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["errors"].is_null(), "{answer}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (last, complete) = loop {
        let mine: Vec<Seen> = all_spans(&spans)
            .await
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let complete = has(&mine, "graphql", "router")
            && has(&mine, "graphql", "expenses")
            && has(&mine, "event", "budgets")
            && has(&mine, "event", "notifications")
            && has(&mine, "delivery", "notifications");
        if complete || tokio::time::Instant::now() >= deadline {
            break (mine, complete);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<String> = last
        .iter()
        .map(|s| format!("{} {} {:?}", s.service, s.name, s.attributes))
        .collect();
    assert!(
        complete,
        "router → expenses → (expense.created) budgets → (budget.alert) notifications → \
         EMAIL delivery in trace {trace_id}; got {names:#?}"
    );
    assert!(
        last.iter().any(|s| s.name == "event"
            && s.service == "budgets"
            && s.attributes.contains("event.kind=expense.created")),
        "{names:#?}"
    );
    assert!(
        last.iter().any(|s| s.name == "event"
            && s.service == "notifications"
            && s.attributes.contains("event.kind=budget.alert")),
        "{names:#?}"
    );
    assert!(
        last.iter()
            .any(|s| s.name == "delivery" && s.attributes.contains("channel=EMAIL")),
        "{names:#?}"
    );
}
