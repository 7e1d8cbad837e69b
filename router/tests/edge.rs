//! The router's edge: JWT auth, limits, rate limiting, persisted queries, health,
//! readiness, metrics and request ids — over real HTTP.

mod common;

use common::{StackOptions, post_json, start_stack};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use router::Config;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-of-reasonable-length";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after epoch")
        .as_secs()
}

fn hs256_token(sub: &str, secret: &str, exp_offset: i64) -> String {
    let exp = (now() as i64 + exp_offset) as u64;
    let claims = json!({"sub": sub, "exp": exp, "iat": now(), "jti": format!("jti-{sub}")});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token encodes")
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An RS256 token signed with the test key (`kid` "test-key" in the JWKS fixture).
fn rs256_token(sub: &str, jti: &str) -> String {
    let der = std::fs::read(fixture("rs256-test-key.der")).expect("key fixture");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key".into());
    let claims = json!({"sub": sub, "exp": now() + 600, "iat": now(), "jti": jti});
    encode(&header, &claims, &EncodingKey::from_rsa_der(&der)).expect("encodes")
}

/// `{ me { id } }` with `Authorization: Bearer <token>`.
async fn me_with_token(stack: &common::Stack, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    post_json(
        &stack.router_url,
        json!({"query": "{ me { id } }"}),
        &[("authorization", bearer.as_str())],
    )
    .await
}

fn auth_config() -> Config {
    let mut config = Config::default();
    config.auth.jwt_secret = Some(SECRET.into());
    config
}

async fn stack_with(config: Config) -> common::Stack {
    start_stack(StackOptions {
        config: Some(config),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn valid_token_is_forwarded_to_subgraphs() {
    let stack = stack_with(auth_config()).await;
    let token = hs256_token("1", SECRET, 600);
    let bearer = format!("Bearer {token}");
    let (status, resp) = post_json(
        &stack.router_url,
        json!({"query": "{ me { id seenAuthorization } }"}),
        &[
            ("authorization", bearer.as_str()),
            ("x-request-id", "req-123"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        resp["data"]["me"]["seenAuthorization"],
        bearer.as_str(),
        "{resp}"
    );
    let seen = stack.subgraphs["users"]
        .last_request_id
        .lock()
        .expect("lock")
        .clone();
    assert_eq!(seen.as_deref(), Some("req-123"));
}

#[tokio::test]
async fn invalid_or_expired_tokens_are_rejected_before_any_subgraph_call() {
    let stack = stack_with(auth_config()).await;
    for token in [
        hs256_token("1", "some-other-secret-entirely", 600),
        hs256_token("1", SECRET, -3600),
        "not.a.jwt".to_owned(),
    ] {
        let (status, resp) = me_with_token(&stack, &token).await;
        assert_eq!(status, 401, "{resp}");
        assert_eq!(resp["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    assert_eq!(stack.total_hits(), 0);
    let (status, resp) = stack.post(json!({"query": "{ me { id } }"})).await;
    assert_eq!(status, 200, "anonymous requests pass through");
    assert_eq!(resp["data"]["me"]["id"], "1");
}

#[tokio::test]
async fn rs256_tokens_verify_against_a_jwks_file() {
    let mut config = Config::default();
    config.auth.jwks_path = Some(fixture("rs256-test-jwks.json"));
    let stack = stack_with(config).await;
    let (status, resp) = me_with_token(&stack, &rs256_token("2", "x")).await;
    assert_eq!(status, 200, "{resp}");
    let forged = hs256_token("2", "whatever-secret", 600);
    let (status, _) = me_with_token(&stack, &forged).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn rs256_keys_can_come_from_a_jwks_url() {
    let jwks = std::fs::read_to_string(fixture("rs256-test-jwks.json")).expect("jwks fixture");
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { ([("content-type", "application/json")], jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("jwks server");
    });
    let mut config = Config::default();
    config.auth.jwks_url = Some(format!("http://{addr}/.well-known/jwks.json"));
    let stack = stack_with(config).await;
    let (status, resp) = me_with_token(&stack, &rs256_token("1", "y")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["data"]["me"]["id"], "1");
}

#[tokio::test]
async fn limits_reject_deep_wide_and_costly_operations() {
    let mut config = Config::default();
    config.limits.max_depth = 3;
    config.limits.max_aliases = 2;
    config.limits.max_root_fields = 3;
    config.limits.max_cost = 500;
    let stack = stack_with(config).await;
    let cases = [
        (
            "{ users { reviews { product { reviews { body } } } } }",
            "depth",
        ),
        ("{ a: me { id } b: me { id } c: me { id } }", "aliases"),
        (
            "{ me { id } users { id } topProducts { upc } search { __typename } }",
            "root fields",
        ),
        ("{ topProducts(first: 1000) { upc } }", "estimated cost"),
    ];
    for (query, limit) in cases {
        let resp = stack.query(query).await;
        assert_eq!(
            resp["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
            "{query}: {resp}"
        );
        assert_eq!(
            resp["errors"][0]["extensions"]["limit"], limit,
            "{query}: {resp}"
        );
    }
    assert_eq!(stack.total_hits(), 0);
    let resp = stack.query("{ topProducts(first: 2) { upc } }").await;
    assert!(resp.get("errors").is_none(), "{resp}");
}

/// An operation of `n` fragments, each spreading the next twice: 2^n fields once
/// expanded, a few hundred bytes of text. `used` spreads the first one in the query;
/// otherwise the fragments are only defined.
fn fragment_bomb(n: usize, used: bool) -> String {
    let mut q = if used {
        "query Bomb { ...F0 }\n".to_string()
    } else {
        "query Bomb { me { id } }\n".to_string()
    };
    for i in 0..n {
        q.push_str(&format!(
            "fragment F{i} on Query {{ ...F{} ...F{} }}\n",
            i + 1,
            i + 1
        ));
    }
    q.push_str(&format!("fragment F{n} on Query {{ me {{ id }} }}\n"));
    q
}

#[tokio::test]
async fn fragment_bombs_are_refused_as_too_complex_before_they_are_expanded() {
    let stack = stack_with(Config::default()).await;
    for used in [true, false] {
        let query = fragment_bomb(30, used);
        let resp = tokio::time::timeout(std::time::Duration::from_secs(20), stack.query(&query))
            .await
            .expect("a fragment bomb is answered, not expanded");
        assert_eq!(
            resp["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
            "used: {used}: {resp}"
        );
    }
    // A small chain of the same shape is fine.
    let resp = stack.query(&fragment_bomb(3, true)).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(stack.total_hits(), 1);
}

#[tokio::test]
async fn body_size_limit_answers_413() {
    let mut config = Config::default();
    config.limits.max_body_bytes = 1024;
    let stack = stack_with(config).await;
    let big = "x".repeat(4096);
    let (status, _) = stack
        .post(json!({"query": format!("{{ me {{ id }} }} # {big}")}))
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn rate_limit_is_per_user_and_answers_429_with_retry_after() {
    let mut config = auth_config();
    config.rate_limit.enabled = true;
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 2;
    let stack = stack_with(config).await;
    let alice = format!("Bearer {}", hs256_token("1", SECRET, 600));
    let bob = format!("Bearer {}", hs256_token("2", SECRET, 600));
    let client = reqwest::Client::new();
    let send = |bearer: String| {
        let client = client.clone();
        let url = stack.router_url.clone();
        async move {
            client
                .post(url)
                .header("authorization", bearer)
                .json(&json!({"query": "{ me { id } }"}))
                .send()
                .await
                .expect("router answers")
        }
    };
    assert_eq!(send(alice.clone()).await.status(), 200);
    assert_eq!(send(alice.clone()).await.status(), 200);
    let limited = send(alice.clone()).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let body: serde_json::Value = limited.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(
        send(bob).await.status(),
        200,
        "another user has their own bucket"
    );
}

#[tokio::test]
async fn automatic_persisted_queries_register_then_run_by_hash() {
    let stack = stack_with(Config::default()).await;
    let query = "{ me { name } }";
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(query.as_bytes()))
    };
    let ext = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let (_, resp) = stack.post(json!({"extensions": ext})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    let (_, resp) = stack.post(json!({"query": query, "extensions": ext})).await;
    assert_eq!(resp["data"]["me"]["name"], "Ada Lovelace");
    let (_, resp) = stack.post(json!({"extensions": ext})).await;
    assert_eq!(resp["data"]["me"]["name"], "Ada Lovelace", "{resp}");
}

#[tokio::test]
async fn safelist_mode_only_runs_manifest_operations() {
    let allowed = "{ me { id } }";
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(allowed.as_bytes()))
    };
    let dir = std::env::temp_dir().join(format!("router-safelist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        json!({ "operations": { hash.clone(): allowed } }).to_string(),
    )
    .expect("write");
    let mut config = Config::default();
    config.persisted_queries.safelist_path = Some(manifest);
    config.persisted_queries.safelist_enforce = true;
    let stack = stack_with(config).await;
    let (_, resp) = stack.post(json!({"query": allowed})).await;
    assert_eq!(resp["data"]["me"]["id"], "1", "{resp}");
    let (_, resp) = stack
        .post(json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}}))
        .await;
    assert_eq!(resp["data"]["me"]["id"], "1", "{resp}");
    let (_, resp) = stack.post(json!({"query": "{ me { name } }"})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"],
        "OPERATION_NOT_IN_SAFELIST"
    );
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let stack = stack_with(Config::default()).await;
    let base = stack.router_url.trim_end_matches("/graphql").to_owned();
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    assert!(health["services"].is_object(), "{health}");
    let ready = reqwest::get(format!("{base}/ready")).await.expect("ready");
    assert_eq!(ready.status(), 200);
    stack.query("{ me { name reviews { body } } }").await;
    stack.query("{ me { name reviews { body } } }").await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("router_requests_total{status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("router_subgraph_request_duration_seconds_bucket{subgraph=\"reviews\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("router_plan_cache_total{result=\"hit\"} 1"),
        "{metrics}"
    );

    let down = start_stack(StackOptions {
        down: vec!["users"],
        ..Default::default()
    })
    .await;
    let base = down.router_url.trim_end_matches("/graphql").to_owned();
    let ready = reqwest::get(format!("{base}/ready")).await.expect("ready");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["services"]["users"], "down");
    assert_eq!(body["services"]["reviews"], "up");
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health["status"], "ok",
        "liveness does not depend on subgraphs"
    );
    assert_eq!(health["services"]["users"], "down", "{health}");
}

#[tokio::test]
async fn introspection_can_be_disabled() {
    let config = Config {
        introspection: false,
        ..Default::default()
    };
    let stack = stack_with(config).await;
    let resp = stack.query("{ __schema { queryType { name } } }").await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"],
        "INTROSPECTION_DISABLED"
    );
    let resp = stack.query("{ me { __typename id } }").await;
    assert_eq!(resp["data"]["me"], json!({"__typename": "User", "id": "1"}));
}

#[tokio::test]
async fn mutations_run_over_post_and_are_refused_over_get_with_405() {
    let stack = stack_with(Config::default()).await;
    let mutation =
        r#"mutation { rename(id: "2", name: "Alan M. Turing") { id name reviews { body } } }"#;
    let resp = stack.query(mutation).await;
    assert_eq!(resp["data"]["rename"]["name"], "Alan M. Turing", "{resp}");
    assert_eq!(
        resp["data"]["rename"]["reviews"][0]["body"],
        "Could be better."
    );
    let before = stack.total_hits();
    let url =
        reqwest::Url::parse_with_params(&stack.router_url, &[("query", mutation)]).expect("url");
    let resp = reqwest::get(url).await.expect("get");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(stack.total_hits(), before);
}

/// `{ me { id } }` as an anonymous caller with an `X-Forwarded-For` header.
async fn me_forwarded_for(stack: &common::Stack, forwarded_for: &str) -> u16 {
    post_json(
        &stack.router_url,
        json!({"query": "{ me { id } }"}),
        &[("x-forwarded-for", forwarded_for)],
    )
    .await
    .0
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let limited = |trusted: Vec<std::net::IpAddr>| {
        let mut config = Config::default();
        config.rate_limit.enabled = true;
        config.rate_limit.per_second = 1;
        config.rate_limit.burst = 1;
        config.trusted_proxies = trusted;
        config
    };
    // From an untrusted peer the header is ignored: both requests are the peer's.
    let stack = stack_with(limited(Vec::new())).await;
    assert_eq!(me_forwarded_for(&stack, "203.0.113.1").await, 200);
    assert_eq!(me_forwarded_for(&stack, "203.0.113.2").await, 429);
    // Behind a trusted proxy each client is counted on its own address.
    let stack = stack_with(limited(vec!["127.0.0.1".parse().unwrap()])).await;
    assert_eq!(me_forwarded_for(&stack, "203.0.113.1").await, 200);
    assert_eq!(
        me_forwarded_for(&stack, "203.0.113.2, 127.0.0.1").await,
        200
    );
    assert_eq!(me_forwarded_for(&stack, "203.0.113.1").await, 429);
}

#[tokio::test]
async fn operation_name_labels_are_bounded() {
    let stack = stack_with(Config::default()).await;
    for i in 0..150 {
        let (status, _) = stack
            .post(json!({"query": format!("query Q{i} {{ me {{ id }} }}"), "operationName": format!("Q{i}")}))
            .await;
        assert_eq!(status, 200);
    }
    let text = reqwest::get(stack.router_url.replace("/graphql", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("router_request_duration_seconds_count{"))
        .filter_map(|l| l.split("operation=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        labels.len(),
        router::metrics::MAX_OPERATION_LABELS + 1,
        "{labels:?}"
    );
    assert!(labels.contains("other"));
}

#[tokio::test]
async fn a_subgraph_answer_over_the_size_limit_is_a_bad_response() {
    let stack = stack_with(Config {
        max_subgraph_response_bytes: 16,
        ..Config::default()
    })
    .await;
    let resp = stack.query("{ me { id name } }").await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "SUBGRAPH_BAD_RESPONSE",
        "{resp}"
    );
}
