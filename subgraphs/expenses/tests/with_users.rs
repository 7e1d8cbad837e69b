#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The expenses subgraph reading the caller's currency and timezone from the real
//! users subgraph (`USERS_URL`), with the caller's own token.

mod support;

use std::time::Duration;

use kit::clock::Clock;
use kit::testing::{Gql, TestDb, TestServer, test_config};
use serde_json::json;

#[tokio::test]
async fn defaults_come_from_the_profile_in_the_users_subgraph() {
    let users_config = test_config(users::SERVICE);
    let users_db = TestDb::new(&users_config).await;
    let users_server = TestServer::start(
        users::app(&users_config, users_db.db.clone())
            .await
            .unwrap(),
    )
    .await;
    let users_gql = Gql::new(users_server.url("/graphql"));
    let reg = users_gql
        .ok(
            r#"mutation { register(input: { username: "kenji", email: "k@example.jp",
                password: "correct horse battery", currency: "JPY", timezone: "Asia/Tokyo" })
                { accessToken user { id } } }"#,
            json!({}),
            None,
        )
        .await;
    let token = reg["register"]["accessToken"].as_str().unwrap().to_string();

    let config = test_config(expenses::SERVICE);
    let db = TestDb::new(&config).await;
    let mut settings = support::settings(
        config,
        users_server.url("/graphql"),
        Vec::new(),
        Clock::system(),
    );
    settings.users.ttl = Duration::from_secs(60);
    let service = kit::bootstrap::start::<expenses::service::Expenses>(&settings, db.db.clone())
        .await
        .unwrap();
    let server = TestServer::start(service.router.clone()).await;
    let gql = Gql::new(server.url("/graphql"));
    let e = gql
        .ok(
            r#"mutation { createExpense(input: { amount: "1200", description: "sushi" })
                { currency date amount user { id } } }"#,
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(e["createExpense"]["currency"], "JPY");
    assert_eq!(e["createExpense"]["amount"], "1200");
    assert_eq!(
        e["createExpense"]["user"]["id"],
        reg["register"]["user"]["id"]
    );
    let tokyo_today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
        .to_string();
    assert_eq!(e["createExpense"]["date"], tokyo_today);
    // JPY has no minor unit: a fractional amount is refused.
    let code = gql
        .error_code(
            r#"mutation { createExpense(input: { amount: "1.5", description: "x" }) { id } }"#,
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(code, "VALIDATION_FAILED");
}
