//! `@defer` delivered incrementally over real HTTP: `multipart/mixed` (the GraphQL
//! incremental delivery format) and Server-Sent Events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/streams.rs"]
mod streams;

use std::time::{Duration, Instant};

use common::{StackOptions, start_stack};
use serde_json::json;

const DEFERRED: &str = r#"{ topProducts(first: 2) { upc name
    ... @defer(label: "talk") { reviews { body } } } }"#;
const MULTIPART: &str = "multipart/mixed;deferSpec=20220824, application/json";

async fn slow_reviews() -> common::Stack {
    start_stack(StackOptions {
        delay_ms: [("reviews", 1_500)].into_iter().collect(),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn deferred_fields_arrive_in_a_later_part_after_an_initial_part_that_does_not_wait() {
    let stack = slow_reviews().await;
    let started = Instant::now();
    let mut s = streams::open(&stack.router_url, MULTIPART, None, DEFERRED, json!({})).await;
    assert_eq!(s.status, 200);
    assert!(
        s.content_type.starts_with("multipart/mixed"),
        "{}",
        s.content_type
    );
    let first = s
        .next_part(Duration::from_secs(5))
        .await
        .expect("initial part");
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "the initial part did not wait for the slow subgraph: {:?}",
        started.elapsed()
    );
    assert_eq!(
        first,
        json!({"data": {"topProducts": [
            {"upc": "1", "name": "Table"}, {"upc": "2", "name": "Couch"}
        ]}, "hasNext": true})
    );
    let second = s
        .next_part(Duration::from_secs(10))
        .await
        .expect("subsequent part");
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(second["hasNext"], false, "{second}");
    let items = second["incremental"].as_array().expect("incremental list");
    assert_eq!(items.len(), 2, "{second}");
    assert_eq!(items[0]["path"], json!(["topProducts", 0]));
    assert_eq!(items[0]["label"], "talk");
    assert!(
        items[0]["data"]["reviews"][0]["body"].is_string(),
        "{second}"
    );
    assert_eq!(items[1]["path"], json!(["topProducts", 1]));
    assert!(
        s.next_part(Duration::from_secs(5)).await.is_none(),
        "the stream ends"
    );
}

#[tokio::test]
async fn a_deferred_query_over_sse_is_two_next_events_then_complete() {
    let stack = slow_reviews().await;
    let mut s = streams::open(
        &stack.router_url,
        "text/event-stream",
        None,
        DEFERRED,
        json!({}),
    )
    .await;
    assert_eq!(s.status, 200);
    let (event, data) = s.next_event(Duration::from_secs(5)).await.expect("initial");
    assert_eq!(event, "next");
    let first: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(first["hasNext"], true, "{first}");
    assert!(first["data"]["topProducts"][0].get("reviews").is_none());
    let (event, data) = s.next_event(Duration::from_secs(10)).await.expect("later");
    assert_eq!(event, "next");
    let second: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(second["hasNext"], false, "{second}");
    assert!(
        second["incremental"][1]["data"]["reviews"].is_array(),
        "{second}"
    );
    let (event, _) = s
        .next_event(Duration::from_secs(5))
        .await
        .expect("complete");
    assert_eq!(event, "complete");
}

#[tokio::test]
async fn a_client_that_takes_only_json_gets_the_deferred_fields_in_one_response() {
    let stack = start_stack(StackOptions::default()).await;
    let resp = stack.query(DEFERRED).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert!(
        resp["data"]["topProducts"][1]["reviews"][0]["body"].is_string(),
        "{resp}"
    );
    assert_eq!(resp["data"]["topProducts"][1]["name"], "Couch");
}

#[tokio::test]
async fn defer_turned_off_by_its_if_argument_answers_in_one_part() {
    let stack = start_stack(StackOptions::default()).await;
    let q = r#"query($d: Boolean!) { topProducts(first: 1) { upc
        ... @defer(if: $d) { name } } }"#;
    // Over multipart only: the client does not take plain JSON.
    let mut s = streams::open(
        &stack.router_url,
        "multipart/mixed",
        None,
        q,
        json!({"d": false}),
    )
    .await;
    let only = s.next_part(Duration::from_secs(5)).await.expect("one part");
    assert_eq!(
        only["data"],
        json!({"topProducts": [{"upc": "1", "name": "Table"}]})
    );
    assert!(s.next_part(Duration::from_secs(2)).await.is_none());
    // The literal `if: false` is not deferred either, and JSON clients get JSON.
    let q = "{ topProducts(first: 1) { upc ... @defer(if: false) { name } } }";
    let resp = stack.query(q).await;
    assert_eq!(
        resp["data"],
        json!({"topProducts": [{"upc": "1", "name": "Table"}]})
    );
}

#[tokio::test]
async fn a_deferred_fragment_spread_under_an_object_fills_in_that_object() {
    let stack = start_stack(StackOptions::default()).await;
    let q = "query { me { id ...Names @defer } } fragment Names on User { name username }";
    let mut s = streams::open(&stack.router_url, MULTIPART, None, q, json!({})).await;
    let first = s.next_part(Duration::from_secs(5)).await.expect("initial");
    assert_eq!(first, json!({"data": {"me": {"id": "1"}}, "hasNext": true}));
    let second = s
        .next_part(Duration::from_secs(5))
        .await
        .expect("subsequent");
    assert_eq!(
        second,
        json!({"incremental": [{"data": {"name": "Ada Lovelace", "username": "@ada"},
            "path": ["me"]}], "hasNext": false})
    );
}

#[tokio::test]
async fn an_invalid_deferred_query_is_answered_with_its_error_not_a_stream() {
    let stack = start_stack(StackOptions::default()).await;
    let q = "{ topProducts { upc ... @defer { nope } } }";
    let mut s = streams::open(&stack.router_url, "multipart/mixed", None, q, json!({})).await;
    let body = s.rest(Duration::from_secs(5)).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{v}"
    );
    // Over SSE the same error is a `next` event, then `complete`.
    let mut s = streams::open(&stack.router_url, "text/event-stream", None, q, json!({})).await;
    assert_eq!(s.status, 200);
    let (event, data) = s
        .next_event(Duration::from_secs(5))
        .await
        .expect("an event");
    assert_eq!(event, "next");
    assert!(data.contains("GRAPHQL_VALIDATION_FAILED"), "{data}");
    assert_eq!(
        s.next_event(Duration::from_secs(5)).await.expect("end").0,
        "complete"
    );
}
