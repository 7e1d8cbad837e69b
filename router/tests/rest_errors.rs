//! The REST shim's answers when things go wrong — bad parameters, wrong bodies, too
//! many requests, a subgraph down, slow or broken — over the real product: each is
//! the status that fits with `{error, code, details}`, never a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::stack::ProductStack;

/// Sends a request to the router; returns the status, the headers and the JSON body.
async fn send(
    stack: &ProductStack,
    method: Method,
    path: &str,
    token: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .request(method, stack.url(path))
        .bearer_auth(token);
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, headers, json)
}

async fn get(stack: &ProductStack, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = send(stack, Method::GET, path, token, None).await;
    (status, body)
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body.get("details").is_some(), "{body}");
}

#[tokio::test]
async fn a_new_user_reads_empty_analytics_and_notifications_and_bad_parameters_are_400s() {
    let stack = ProductStack::start().await;
    let ada = stack.register("ada").await;
    let t = ada.token.as_str();

    let (status, month) = get(&stack, "/api/analytics/monthly-summary", t).await;
    assert_eq!(status, 200, "{month}");
    let period = month["period"].as_str().unwrap();
    assert_eq!(period.len(), 7, "{month}");
    assert_eq!(month["totalSpent"].as_f64(), Some(0.0), "{month}");
    assert_eq!(month["transactionCount"], 0);
    assert_eq!(month["categoryBreakdown"], json!({}));

    let (status, trends) = get(&stack, "/api/analytics/trends", t).await;
    assert_eq!(status, 200, "{trends}");
    let trends = trends.as_array().unwrap();
    assert_eq!(trends.len(), 6);
    assert_eq!(trends[5]["month"], period, "the last month is this month");

    let (status, daily) = get(&stack, "/api/analytics/daily-pattern?days=7", t).await;
    assert_eq!(status, 200, "{daily}");
    assert_eq!(daily["dailyData"].as_array().unwrap().len(), 7);
    assert_eq!(daily["period"], "7 days");

    let (status, cats) = get(&stack, "/api/analytics/category-analysis?period=Year", t).await;
    assert_eq!(status, 200, "{cats}");
    assert_eq!(cats["period"], "year");
    assert_eq!(cats["topCategory"], Value::Null);

    let (status, top) = get(&stack, "/api/analytics/top-expenses?limit=3", t).await;
    assert_eq!((status, top), (200, json!([])));

    let (status, insights) = get(&stack, "/api/analytics/insights", t).await;
    assert_eq!(status, 200, "{insights}");
    assert_eq!(insights["insights"], json!([]));
    assert_eq!(insights["totalExpenses"], 0);
    assert_eq!(insights["period"], period);

    let (status, list) = get(&stack, "/api/notifications?unreadOnly=true", t).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list,
        json!({"notifications": [], "unreadCount": 0, "total": 0, "nextCursor": null})
    );

    // Bad parameters: 400 naming the parameter, before anything runs.
    for (path, param) in [
        ("/api/analytics/trends?months=0", "months"),
        ("/api/analytics/trends?months=abc", "months"),
        ("/api/analytics/monthly-summary?year=2024&month=13", "month"),
        ("/api/analytics/monthly-summary?year=99999", "year"),
        ("/api/analytics/daily-pattern?days=367", "days"),
        ("/api/analytics/top-expenses?limit=1000", "limit"),
        ("/api/analytics/category-analysis?period=decade", "period"),
        ("/api/notifications?limit=0", "limit"),
        ("/api/notifications?unreadOnly=maybe", "unreadOnly"),
    ] {
        let (status, body) = get(&stack, path, t).await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");
        assert_eq!(body["details"][0]["field"], param, "{path}: {body}");
    }

    // Someone else's (or no) notification: 404, never a 500.
    for (method, path) in [
        (
            Method::PUT,
            "/api/notifications/000000000000000000000000/read",
        ),
        (Method::PUT, "/api/notifications/not-an-id/read"),
        (Method::DELETE, "/api/notifications/not-an-id"),
    ] {
        let (status, _, body) = send(&stack, method, path, t, None).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, _, body) = send(&stack, Method::PUT, "/api/notifications/read-all", t, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updatedCount"], 0);

    // Without a token: 401 on every new route.
    for path in [
        "/api/analytics/insights",
        "/api/notifications",
        "/api/notifications/unread-count",
    ] {
        let resp = reqwest::get(stack.url(path)).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn oversized_and_non_json_bodies_are_413_and_415() {
    let stack = ProductStack::start().await;
    let ada = stack.register("ada").await;
    let t = ada.token.as_str();

    let big = format!(
        r#"{{"amount": 1, "description": "{}"}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    let (status, _, body) = send(
        &stack,
        Method::POST,
        "/api/expenses",
        t,
        Some(("application/json", big.into_bytes())),
    )
    .await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");

    let (status, _, body) = send(
        &stack,
        Method::POST,
        "/api/expenses",
        t,
        Some(("text/plain", b"amount=1".to_vec())),
    )
    .await;
    assert_error(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE");

    let (status, _, body) = send(
        &stack,
        Method::POST,
        "/api/expenses/import",
        t,
        Some(("application/json", b"{}".to_vec())),
    )
    .await;
    assert_error(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE");

    let (status, _, body) = send(
        &stack,
        Method::POST,
        "/api/expenses",
        t,
        Some(("application/json", b"[1, 2".to_vec())),
    )
    .await;
    assert_error(status, &body, 400, "BAD_REQUEST");

    // Nothing was written.
    let (status, list) = get(&stack, "/api/expenses", t).await;
    assert_eq!(status, 200);
    assert_eq!(list["expenses"], json!([]));
}

#[tokio::test]
async fn too_many_requests_are_429_with_retry_after() {
    let stack = ProductStack::start_with(|config| {
        config.rate_limit.enabled = true;
        config.rate_limit.per_second = 1;
        config.rate_limit.burst = 3;
    })
    .await;
    let ada = stack.register("ada").await;
    let mut limited = None;
    for _ in 0..10 {
        let (status, headers, body) =
            send(&stack, Method::GET, "/api/budgets", &ada.token, None).await;
        if status == 429 {
            limited = Some((headers, body));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (headers, body) = limited.expect("the bucket of 3 runs out within 10 requests");
    assert_error(429, &body, 429, "RATE_LIMITED");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

/// A server that answers every request with a 500 and an HTML page.
async fn broken_server() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::response::Html("<h1>oops</h1>"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/graphql")
}

#[tokio::test]
async fn a_subgraph_down_slow_or_broken_is_503_504_or_502() {
    // Port 1 (outside the ephemeral range, so no test server can be given it): refused.
    let closed = "http://127.0.0.1:1/graphql".to_owned();
    let broken = broken_server().await;
    let stack = ProductStack::start_with(move |config| {
        let subgraphs = &mut config.subgraphs;
        subgraphs.get_mut("analytics").unwrap().url = Some(closed);
        subgraphs.get_mut("notifications").unwrap().url = Some(broken);
        // Budgets answers, but never within a millisecond.
        subgraphs.get_mut("budgets").unwrap().timeout_ms = Some(1);
    })
    .await;
    let ada = stack.register("ada").await;
    let t = ada.token.as_str();

    let (status, body) = get(&stack, "/api/analytics/trends", t).await;
    assert_error(status, &body, 503, "SUBGRAPH_UNAVAILABLE");
    let (status, body) = get(&stack, "/api/budgets", t).await;
    assert_error(status, &body, 504, "SUBGRAPH_TIMEOUT");
    let (status, body) = get(&stack, "/api/notifications", t).await;
    assert_error(status, &body, 502, "SUBGRAPH_BAD_RESPONSE");

    // The others still work.
    let (status, body) = get(&stack, "/api/expenses", t).await;
    assert_eq!(status, 200, "{body}");

    // The health summary names who is down.
    let health: Value = reqwest::get(stack.url("/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let health: Value = reqwest::get(stack.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["services"]["analytics"], "down", "{health}");
    assert_eq!(health["services"]["users"], "up", "{health}");
}
