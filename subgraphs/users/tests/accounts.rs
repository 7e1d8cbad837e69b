#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The users subgraph end to end: a real server on port 0, real HTTP, a real
//! MongoDB-compatible server through the official driver.

use std::time::Duration;

use futures::TryStreamExt;
use kit::auth::{Claims, JwtKeys, now_secs};
use kit::config::Secret;
use kit::testing::{
    Gql, TEST_JWT_SECRET, TestDb, TestServer, assert_sdl_matches_committed, first_error_code,
    test_config,
};
use mongodb::bson::doc;
use serde_json::{Value, json};

struct App {
    server: TestServer,
    gql: Gql,
    db: TestDb,
}

async fn start() -> App {
    let config = test_config(users::SERVICE);
    let db = TestDb::new(&config).await;
    let server = TestServer::start(users::app(&config, db.db.clone()).await.unwrap()).await;
    let gql = Gql::new(server.url("/graphql"));
    App { server, gql, db }
}

const REGISTER: &str = r#"mutation($input: RegisterInput!) {
  register(input: $input) { accessToken refreshToken expiresIn user { id username email currency timezone firstName } }
}"#;
const LOGIN: &str = r#"mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken refreshToken user { id email } }
}"#;
const REFRESH: &str = r#"mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id } } }"#;
const ME: &str =
    "{ me { id username email currency timezone firstName lastName monthlyIncome createdAt } }";

fn register_input(username: &str, email: &str) -> Value {
    json!({ "input": { "username": username, "email": email, "password": "correct horse battery" } })
}

async fn register(app: &App, username: &str, email: &str) -> Value {
    app.gql
        .ok(REGISTER, register_input(username, email), None)
        .await["register"]
        .clone()
}

/// A login attempt's whole response.
async fn login(app: &App, email: &str, password: &str) -> Value {
    app.gql
        .request(LOGIN, json!({ "email": email, "password": password }), None)
        .await
}

/// Exchanges a refresh token that must be accepted; returns the new one.
async fn refresh(app: &App, token: &str) -> String {
    app.gql.ok(REFRESH, json!({ "t": token }), None).await["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Exchanges a refresh token that must be refused; returns the error code.
async fn refresh_error(app: &App, token: &str) -> String {
    app.gql
        .error_code(REFRESH, json!({ "t": token }), None)
        .await
}

async fn logout(app: &App, token: &str) -> bool {
    let q = "mutation($t: String!) { logout(refreshToken: $t) }";
    app.gql.ok(q, json!({ "t": token }), None).await["logout"]
        .as_bool()
        .unwrap()
}

/// Asserts that `body` is a VALIDATION_FAILED error naming `field`.
fn assert_invalid(body: &Value, field: &str) {
    assert_eq!(first_error_code(body), "VALIDATION_FAILED", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
}

async fn user_count(app: &App) -> u64 {
    app.db
        .db
        .collection::<mongodb::bson::Document>("users")
        .count_documents(doc! {})
        .await
        .unwrap()
}

#[tokio::test]
async fn a_person_registers_logs_in_and_reads_their_profile() {
    let app = start().await;
    let reg = register(&app, "ada", "Ada@Example.com").await;
    assert_eq!(reg["expiresIn"], 900);
    assert_eq!(reg["user"]["currency"], "USD");
    assert_eq!(reg["user"]["timezone"], "UTC");
    assert_eq!(reg["user"]["email"], "Ada@Example.com");

    // Login matches the email case-insensitively and after trimming.
    let login =
        login(&app, "  ada@EXAMPLE.com ", "correct horse battery").await["data"]["login"].clone();
    assert_eq!(login["user"]["id"], reg["user"]["id"]);

    let token = login["accessToken"].as_str().unwrap();
    let me = app.gql.ok(ME, json!({}), Some(token)).await["me"].clone();
    assert_eq!(me["id"], reg["user"]["id"]);
    assert_eq!(me["username"], "ada");
    assert!(
        me["createdAt"].as_str().unwrap().ends_with('Z')
            || me["createdAt"].as_str().unwrap().contains("+00:00")
    );

    // Without a token `me` is refused.
    assert_eq!(
        app.gql.error_code(ME, json!({}), None).await,
        "UNAUTHENTICATED"
    );
    app.server.stop().await;
}

#[tokio::test]
async fn registration_takes_currency_names_and_timezone() {
    let app = start().await;
    let data = app
        .gql
        .ok(
            REGISTER,
            json!({ "input": { "username": "kenji", "email": "k@example.jp", "password": "password-123",
                     "currency": "jpy", "firstName": " Kenji ", "timezone": "Asia/Tokyo" } }),
            None,
        )
        .await;
    let user = &data["register"]["user"];
    assert_eq!(user["currency"], "JPY");
    assert_eq!(user["timezone"], "Asia/Tokyo");
    assert_eq!(user["firstName"], "Kenji");
}

#[tokio::test]
async fn update_profile_changes_fields_and_keeps_money_exact() {
    let app = start().await;
    let reg = register(&app, "grace", "grace@example.com").await;
    let token = reg["accessToken"].as_str().unwrap();
    const UPDATE: &str = r#"mutation($input: UpdateProfileInput!) {
      updateProfile(input: $input) { firstName lastName currency timezone monthlyIncome }
    }"#;
    let updated = app
        .gql
        .ok(
            UPDATE,
            json!({ "input": { "firstName": "Grace", "lastName": "Hopper", "timezone": "America/New_York",
                               "monthlyIncome": "5000.1" } }),
            Some(token),
        )
        .await["updateProfile"]
        .clone();
    assert_eq!(
        updated,
        json!({ "firstName": "Grace", "lastName": "Hopper", "currency": "USD",
                "timezone": "America/New_York", "monthlyIncome": "5000.10" })
    );

    // Switching to EUR keeps the income's value.
    let eur = app
        .gql
        .ok(
            UPDATE,
            json!({ "input": { "currency": "EUR", "lastName": null } }),
            Some(token),
        )
        .await["updateProfile"]
        .clone();
    assert_eq!(eur["currency"], "EUR");
    assert_eq!(eur["monthlyIncome"], "5000.10");
    assert_eq!(eur["lastName"], Value::Null);

    // JPY cannot hold 5000.10 exactly: refused, nothing changed.
    let body = app
        .gql
        .request(
            UPDATE,
            json!({ "input": { "currency": "JPY" } }),
            Some(token),
        )
        .await;
    assert_invalid(&body, "monthlyIncome");
    // Too many decimals, unknown timezone, unknown currency.
    for (input, field) in [
        (json!({ "monthlyIncome": "10.123" }), "monthlyIncome"),
        (json!({ "timezone": "Atlantis/Capital" }), "timezone"),
        (json!({ "currency": "XYZ" }), "currency"),
        (json!({ "monthlyIncome": "-5" }), "monthlyIncome"),
    ] {
        let body = app
            .gql
            .request(UPDATE, json!({ "input": input }), Some(token))
            .await;
        assert_invalid(&body, field);
    }
    let me = app.gql.ok(ME, json!({}), Some(token)).await["me"].clone();
    assert_eq!(me["currency"], "EUR");
    assert_eq!(me["monthlyIncome"], "5000.10");
    assert_eq!(me["timezone"], "America/New_York");
}

#[tokio::test]
async fn refresh_rotates_and_reusing_an_old_token_revokes_the_family() {
    let app = start().await;
    let reg = register(&app, "rot", "rot@example.com").await;
    let first = reg["refreshToken"].as_str().unwrap().to_string();

    let second = refresh(&app, &first).await;
    assert_ne!(first, second);
    let third = refresh(&app, &second).await;

    // The first token was already rotated: using it again is refused…
    assert_eq!(refresh_error(&app, &first).await, "UNAUTHENTICATED");
    // …and revokes the whole family, including the newest token.
    assert_eq!(refresh_error(&app, &third).await, "UNAUTHENTICATED");
    // A separate login is a separate family and still works.
    let login = login(&app, "rot@example.com", "correct horse battery").await;
    let other = login["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    let fourth = refresh(&app, &other).await;

    // Refresh tokens are stored only as hashes: each one is kept under its SHA-256,
    // and no stored document holds any token in clear.
    let stored: Vec<mongodb::bson::Document> = app
        .db
        .db
        .collection::<mongodb::bson::Document>("refresh_tokens")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let clear = [&first, &second, &third, &other, &fourth];
    for token in clear {
        let hash = kit::auth::sha256_hex(token);
        assert!(
            stored.iter().any(|d| d.get_str("_id") == Ok(hash.as_str())),
            "no stored hash for a token that was issued: {stored:?}"
        );
    }
    for d in &stored {
        let text = d.to_string();
        assert!(
            clear.iter().all(|t| !text.contains(t.as_str())),
            "a refresh token is stored in clear: {d}"
        );
    }
    assert_eq!(refresh_error(&app, "not-a-token").await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn logout_invalidates_the_refresh_token() {
    let app = start().await;
    let reg = register(&app, "bye", "bye@example.com").await;
    let token = reg["refreshToken"].as_str().unwrap();
    assert!(logout(&app, token).await);
    assert_eq!(refresh_error(&app, token).await, "UNAUTHENTICATED");
    assert!(!logout(&app, "unknown").await);
}

#[tokio::test]
async fn duplicate_email_or_username_is_a_conflict() {
    let app = start().await;
    register(&app, "first", "same@example.com").await;
    let body = app
        .gql
        .request(
            REGISTER,
            register_input("second", " SAME@example.com"),
            None,
        )
        .await;
    assert_eq!(first_error_code(&body), "CONFLICT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "email");
    let body = app
        .gql
        .request(REGISTER, register_input("FIRST", "other@example.com"), None)
        .await;
    assert_eq!(first_error_code(&body), "CONFLICT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "username");
    assert_eq!(user_count(&app).await, 1);
}

/// Sends eight registrations at once, the i-th with `username(i)` and `email(i)`, and
/// asserts that exactly one wins and the seven others are a CONFLICT on `field`.
async fn race_registrations(
    app: &App,
    username: impl Fn(usize) -> String,
    email: impl Fn(usize) -> String,
    field: &str,
) {
    let attempts = (0..8).map(|i| {
        let gql = app.gql.clone();
        let vars = register_input(&username(i), &email(i));
        async move { gql.request(REGISTER, vars, None).await }
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results
        .iter()
        .filter(|b| b["data"]["register"].is_object())
        .count();
    let conflicts = results
        .iter()
        .filter(|b| {
            b["errors"][0]["extensions"]["code"] == "CONFLICT"
                && b["errors"][0]["extensions"]["field"] == field
        })
        .count();
    assert_eq!((wins, conflicts), (1, 7), "{results:#?}");
    assert_eq!(user_count(app).await, 1);
}

#[tokio::test]
async fn concurrent_duplicate_registrations_let_exactly_one_win() {
    let app = start().await;
    race_registrations(
        &app,
        |i| format!("racer{i}"),
        |_| "race@example.com".into(),
        "email",
    )
    .await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_username_let_exactly_one_win() {
    let app = start().await;
    // The same name, in different cases, with different emails.
    race_registrations(
        &app,
        |i| if i % 2 == 0 { "Racer" } else { "racer" }.into(),
        |i| format!("racer{i}@example.com"),
        "username",
    )
    .await;
}

#[tokio::test]
async fn the_lockout_is_shared_by_every_instance_over_the_database() {
    let app = start().await;
    register(&app, "shared", "shared@example.com").await;
    // A second instance over the same database, as after a restart or behind a balancer.
    let config = test_config(users::SERVICE);
    let second = TestServer::start(users::app(&config, app.db.db.clone()).await.unwrap()).await;
    let instances = [app.gql.clone(), Gql::new(second.url("/graphql"))];
    let attempt = |gql: &Gql, password: &str| {
        let gql = gql.clone();
        let vars = json!({ "email": "shared@example.com", "password": password });
        async move { gql.request(LOGIN, vars, None).await }
    };
    for i in 0..5 {
        let body = attempt(&instances[i % 2], "wrong password").await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
    }
    for gql in &instances {
        let body = attempt(gql, "correct horse battery").await;
        assert_eq!(first_error_code(&body), "RATE_LIMITED", "{body}");
    }
}

#[tokio::test]
async fn invalid_registration_input_names_the_field_and_writes_nothing() {
    let app = start().await;
    let cases = [
        (
            json!({ "username": "okname", "email": "not-an-email", "password": "long enough" }),
            "email",
        ),
        (
            json!({ "username": "okname", "email": "a@example.com", "password": "short" }),
            "password",
        ),
        (
            json!({ "username": "x", "email": "a@example.com", "password": "long enough" }),
            "username",
        ),
        (
            json!({ "username": "okname", "email": "a@example.com", "password": "long enough", "currency": "ZZZ" }),
            "currency",
        ),
        (
            json!({ "username": "okname", "email": "a@example.com", "password": "long enough", "timezone": "Moon/Base" }),
            "timezone",
        ),
        (
            json!({ "username": "okname", "email": "a@example.com", "password": "x".repeat(129) }),
            "password",
        ),
    ];
    for (input, field) in cases {
        let body = app
            .gql
            .request(REGISTER, json!({ "input": input }), None)
            .await;
        assert_invalid(&body, field);
    }
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_unauthenticated() {
    let app = start().await;
    let reg = register(&app, "tok", "tok@example.com").await;
    let good = reg["accessToken"].as_str().unwrap();
    let user_id = reg["user"]["id"].as_str().unwrap();

    let mut tampered = good.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let keys = JwtKeys::hs256(&Secret::new(TEST_JWT_SECRET));
    let expired = keys
        .sign(&Claims {
            sub: user_id.into(),
            iat: now_secs() - 3600,
            exp: now_secs() - 60,
            jti: "x".into(),
        })
        .unwrap();
    let foreign = JwtKeys::hs256(&Secret::new("some-other-secret-some-other-secret!!"))
        .issue(user_id, Duration::from_secs(600))
        .unwrap();

    for token in [
        tampered.as_str(),
        expired.as_str(),
        foreign.as_str(),
        "garbage",
    ] {
        let resp = app
            .gql
            .http
            .post(&app.gql.url)
            .bearer_auth(token)
            .json(&json!({ "query": ME }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
    }
    app.gql.ok(ME, json!({}), Some(good)).await;
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_for_the_window() {
    let app = start().await;
    register(&app, "lock", "lock@example.com").await;
    let unknown = login(&app, "nobody@example.com", "wrong password").await;
    let wrong_pw = login(&app, "lock@example.com", "wrong password").await;
    // Unknown email and wrong password look the same.
    assert_eq!(first_error_code(&unknown), "UNAUTHENTICATED");
    assert_eq!(first_error_code(&wrong_pw), "UNAUTHENTICATED");
    assert_eq!(
        unknown["errors"][0]["message"],
        wrong_pw["errors"][0]["message"]
    );
    for _ in 0..4 {
        let body = login(&app, "lock@example.com", "wrong password").await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
    }
    // Locked: even the right password is refused until the window passes.
    let body = login(&app, "lock@example.com", "correct horse battery").await;
    assert_eq!(first_error_code(&body), "RATE_LIMITED");
    let retry = body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");

    // The window is kept in MongoDB: age the failures past 15 minutes and it unlocks.
    let failures = app
        .db
        .db
        .collection::<mongodb::bson::Document>("login_failures");
    let old = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 16 * 60 * 1000,
    );
    let mut cursor = failures.find(doc! {}).await.unwrap();
    let mut aged = Vec::new();
    while cursor.advance().await.unwrap() {
        let mut d = cursor.deserialize_current().unwrap();
        d.insert("at", old);
        aged.push(d);
    }
    assert_eq!(aged.len(), 6);
    for d in aged {
        let id = d.get_str("_id").unwrap().to_string();
        failures.replace_one(doc! { "_id": id }, d).await.unwrap();
    }
    let body = login(&app, "lock@example.com", "correct horse battery").await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["login"]["accessToken"].is_string(), "{body}");
}

#[tokio::test]
async fn entities_resolve_in_order_and_only_for_their_owner() {
    let app = start().await;
    let a = register(&app, "alice", "alice@example.com").await;
    let b = register(&app, "bob", "bob@example.com").await;
    let a_id = a["user"]["id"].as_str().unwrap();
    let b_id = b["user"]["id"].as_str().unwrap();
    let token = a["accessToken"].as_str().unwrap();
    const ENTITIES: &str =
        r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id username } } }"#;
    let reps = json!({ "r": [
        { "__typename": "User", "id": a_id },
        { "__typename": "User", "id": "0190f000-0000-7000-8000-000000000000" },
        { "__typename": "User", "id": b_id },
        { "__typename": "User", "id": a_id },
    ] });
    let data = app.gql.ok(ENTITIES, reps.clone(), Some(token)).await;
    assert_eq!(
        data["_entities"],
        json!([{ "id": a_id, "username": "alice" }, null, null, { "id": a_id, "username": "alice" }])
    );
    // Anonymous entity resolution is refused.
    let body = app.gql.request(ENTITIES, reps, None).await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn malformed_oversized_and_mistyped_requests_get_coded_errors_and_write_nothing() {
    let app = start().await;
    let http = &app.gql.http;
    let url = &app.gql.url;

    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(first_error_code(&body), "BAD_REQUEST");

    let huge = format!(
        "{{\"query\": \"{{ me {{ id }} }}\", \"x\": \"{}\"}}",
        "a".repeat(1024 * 1024 + 10)
    );
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(first_error_code(&body), "PAYLOAD_TOO_LARGE");

    let resp = http
        .post(url)
        .header("content-type", "text/plain")
        .body("{ me { id } }")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    // Wrong type for a field, and an unknown input field.
    let body = app
        .gql
        .request(
            REGISTER,
            json!({ "input": { "username": 42, "email": "a@example.com", "password": "long enough" } }),
            None,
        )
        .await;
    assert_eq!(
        first_error_code(&body),
        "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
    let body = app
        .gql
        .request(
            REGISTER,
            json!({ "input": { "username": "okname", "email": "a@example.com", "password": "long enough", "isAdmin": true } }),
            None,
        )
        .await;
    assert_eq!(
        first_error_code(&body),
        "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
    let body = app.gql.request("{ me { id ", json!({}), None).await;
    assert_eq!(first_error_code(&body), "GRAPHQL_PARSE_FAILED", "{body}");
    assert_eq!(user_count(&app).await, 0);

    // Mutations are refused over GET.
    let resp = http
        .get(url)
        .query(&[("query", "mutation { logout(refreshToken: \"x\") }")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn sdl_matches_committed_file() {
    let config = test_config(users::SERVICE);
    // Building the schema needs no database connection.
    let schema = users::schema(&config, &kit::db::unconnected("unused"));
    assert_sdl_matches_committed(users::SERVICE, &kit::federation_sdl(&schema));
}
