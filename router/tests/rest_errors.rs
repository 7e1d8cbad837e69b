//! The REST shim's answers when things go wrong — bad parameters, wrong bodies, too
//! many requests, a subgraph down, slow or broken — over the real product: each is
//! the status that fits with `{error, code, details}`, never a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::rest::{Rest, assert_error};
use support::stack::ProductStack;

#[tokio::test]
async fn a_new_user_reads_empty_analytics_and_notifications_and_bad_parameters_are_400s() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let t = ada.token.as_str();

    let month = rest
        .get("/api/analytics/monthly-summary", t)
        .await
        .expect(200);
    let period = month.body["period"].as_str().unwrap();
    assert_eq!(period.len(), 7, "{}", month.raw);
    assert_eq!(month.raw_at("/totalSpent"), "0.00");
    assert_eq!(month.body["transactionCount"], 0);
    assert_eq!(month.body["categoryBreakdown"], json!({}));

    let trends = rest.get("/api/analytics/trends", t).await.expect(200);
    let trends = trends.body.as_array().unwrap();
    assert_eq!(trends.len(), 6);
    assert_eq!(trends[5]["month"], period, "the last month is this month");

    let daily = rest
        .get("/api/analytics/daily-pattern?days=7", t)
        .await
        .expect(200);
    assert_eq!(daily.body["dailyData"].as_array().unwrap().len(), 7);
    assert_eq!(daily.body["period"], "7 days");

    let cats = rest
        .get("/api/analytics/category-analysis?period=Year", t)
        .await
        .expect(200);
    assert_eq!(cats.body["period"], "year");
    assert_eq!(cats.body["topCategory"], Value::Null);

    let top = rest
        .get("/api/analytics/top-expenses?limit=3", t)
        .await
        .expect(200);
    assert_eq!(top.body, json!([]));

    let insights = rest.get("/api/analytics/insights", t).await.expect(200);
    assert_eq!(insights.body["insights"], json!([]));
    assert_eq!(insights.body["totalExpenses"], 0);
    assert_eq!(insights.body["period"], period);

    let list = rest
        .get("/api/notifications?unreadOnly=true", t)
        .await
        .expect(200);
    assert_eq!(
        list.body,
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
        let reply = rest.get(path, t).await;
        assert_error(&reply, 400, "VALIDATION_FAILED");
        assert_eq!(
            reply.body["details"][0]["field"], param,
            "{path}: {}",
            reply.raw
        );
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
        let reply = rest.send(method, path, Some(t), &[], None).await;
        assert_error(&reply, 404, "NOT_FOUND");
    }
    let all = rest.put("/api/notifications/read-all", t).await.expect(200);
    assert_eq!(all.body["updatedCount"], 0);

    // Without a token: 401 on every new route.
    for path in [
        "/api/analytics/insights",
        "/api/notifications",
        "/api/notifications/unread-count",
    ] {
        let reply = rest.send(Method::GET, path, None, &[], None).await;
        assert_error(&reply, 401, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn oversized_and_non_json_bodies_are_413_and_415() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let t = ada.token.as_str();

    let big = format!(
        r#"{{"amount": 1, "description": "{}"}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    for (path, content_type, body, status, code) in [
        (
            "/api/expenses",
            "application/json",
            big,
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "/api/expenses",
            "text/plain",
            "amount=1".to_owned(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "/api/expenses/import",
            "application/json",
            "{}".to_owned(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "/api/expenses",
            "application/json",
            "[1, 2".to_owned(),
            400,
            "BAD_REQUEST",
        ),
    ] {
        let reply = rest
            .send_bytes(Method::POST, path, t, content_type, body)
            .await;
        assert_error(&reply, status, code);
    }

    // Nothing was written.
    let list = rest.get("/api/expenses", t).await.expect(200);
    assert_eq!(list.body["expenses"], json!([]));
}

#[tokio::test]
async fn too_many_requests_are_429_with_retry_after() {
    let stack = ProductStack::start_with(|config| {
        config.rate_limit.enabled = true;
        config.rate_limit.per_second = 1;
        config.rate_limit.burst = 3;
    })
    .await;
    let rest = Rest::over(stack);
    let ada = rest.register("ada").await;
    let mut limited = None;
    for _ in 0..10 {
        let reply = rest.get("/api/budgets", &ada.token).await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
        reply.expect(200);
    }
    let reply = limited.expect("the bucket of 3 runs out within 10 requests");
    assert_error(&reply, 429, "RATE_LIMITED");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
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
    let rest = Rest::over(stack);
    let ada = rest.register("ada").await;
    let t = ada.token.as_str();

    assert_error(
        &rest.get("/api/analytics/trends", t).await,
        503,
        "SUBGRAPH_UNAVAILABLE",
    );
    assert_error(&rest.get("/api/budgets", t).await, 504, "SUBGRAPH_TIMEOUT");
    assert_error(
        &rest.get("/api/notifications", t).await,
        502,
        "SUBGRAPH_BAD_RESPONSE",
    );

    // The others still work.
    rest.get("/api/expenses", t).await.expect(200);

    // Readiness and the health summary name who is down.
    let ready = rest.send(Method::GET, "/ready", None, &[], None).await;
    assert_eq!(ready.body["status"], "degraded", "{}", ready.raw);
    let health = rest
        .send(Method::GET, "/health", None, &[], None)
        .await
        .expect(200);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(
        health.body["services"]["analytics"], "down",
        "{}",
        health.raw
    );
    assert_eq!(
        health.body["services"]["notifications"], "down",
        "{}",
        health.raw
    );
    assert_eq!(health.body["services"]["users"], "up", "{}", health.raw);
}
