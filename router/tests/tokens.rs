//! One table of malformed tokens, one answer everywhere: the router's GraphQL endpoint,
//! the REST shim and every subgraph called directly refuse each with 401 /
//! `UNAUTHENTICATED` (the router and the subgraphs share one verifier).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::testing::TEST_JWT_SECRET;
use serde_json::{Value, json};
use support::stack::ProductStack;

fn now() -> u64 {
    contract::auth::now_secs()
}

fn signed(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unsigned(claims: Value) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(claims)
    )
}

/// Every way an access token can be wrong, by name.
fn malformed_tokens(user: &str, refresh_token: &str) -> Vec<(&'static str, String)> {
    let (now, s) = (now(), TEST_JWT_SECRET);
    vec![
        (
            "no iat",
            signed(json!({ "sub": user, "exp": now + 600 }), s),
        ),
        ("no exp", signed(json!({ "sub": user, "iat": now }), s)),
        ("no sub", signed(json!({ "exp": now + 600, "iat": now }), s)),
        (
            "wrong secret",
            signed(
                json!({ "sub": user, "exp": now + 600, "iat": now }),
                "another-secret-another-secret-another",
            ),
        ),
        (
            "alg none",
            unsigned(json!({ "sub": user, "exp": now + 600, "iat": now })),
        ),
        (
            "expired",
            signed(
                json!({ "sub": user, "exp": now - 3600, "iat": now - 7200 }),
                s,
            ),
        ),
        ("refresh token as access token", refresh_token.to_string()),
    ]
}

async fn post_graphql(url: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_door_answers_a_malformed_token_with_401_unauthenticated() {
    let stack = ProductStack::start().await;
    let registered = stack
        .gql()
        .ok(
            "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id } } }",
            json!({ "input": { "username": "tokens", "email": "tokens@example.com",
                "password": "correct horse battery staple" } }),
            None,
        )
        .await;
    let user = registered["register"]["user"]["id"].as_str().unwrap();
    let refresh = registered["register"]["refreshToken"].as_str().unwrap();
    // The well-formed token works at every door (the table below is not refused for
    // some other reason).
    let good = registered["register"]["accessToken"].as_str().unwrap();
    assert_eq!(post_graphql(&stack.router_url(), good).await.0, 200);

    let mut doors: Vec<(String, String)> = vec![("router".into(), stack.router_url())];
    for name in ["users", "expenses", "budgets", "analytics", "notifications"] {
        doors.push((name.to_string(), stack.subgraph_url(name).to_string()));
    }
    let http = reqwest::Client::new();
    for (what, token) in malformed_tokens(user, refresh) {
        for (door, url) in &doors {
            let (status, body) = post_graphql(url, &token).await;
            assert_eq!(status, 401, "{what} at {door}: {body}");
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{what} at {door}: {body}"
            );
        }
        let r = http
            .get(stack.url("/api/users/profile"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 401, "{what} at the REST shim: {body}");
        assert_eq!(body["code"], "UNAUTHENTICATED", "{what} at the REST shim");
    }
}

#[tokio::test]
async fn a_router_that_leaves_tokens_to_the_subgraphs_still_answers_401_unauthenticated() {
    let stack = ProductStack::start_with(|c| c.auth.jwt_secret = None).await;
    let session = stack.register("forwarded").await;
    let no_iat = signed(
        json!({ "sub": session.user_id, "exp": now() + 600 }),
        TEST_JWT_SECRET,
    );
    // The subgraph refuses it; the router passes its coded error on.
    let r = reqwest::Client::new()
        .post(stack.router_url())
        .bearer_auth(&no_iat)
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    let r = reqwest::Client::new()
        .get(stack.url("/api/users/profile"))
        .bearer_auth(&no_iat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED", "{body}");
    // The same user's real token goes through.
    let r = reqwest::Client::new()
        .get(stack.url("/api/users/profile"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
