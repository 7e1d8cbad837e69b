#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The expenses subgraph reading the caller's currency and timezone from the real
//! users subgraph (`USERS_URL`), with the caller's own token.

mod support;

use std::time::Duration;

use kit::clock::Clock;
use kit::testing::{Gql, TestDb, TestServer, test_config};
use serde_json::json;

/// The real users subgraph over its own database.
async fn start_users() -> (TestDb, TestServer, Gql) {
    let config = test_config(users::SERVICE);
    let db = TestDb::new(&config).await;
    let server = TestServer::start(users::app(&config, db.db.clone()).await.unwrap()).await;
    let gql = Gql::new(server.url("/graphql"));
    (db, server, gql)
}

#[tokio::test]
async fn defaults_come_from_the_profile_in_the_users_subgraph() {
    let (_users_db, users_server, users_gql) = start_users().await;
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
    let (_service, _server, gql) = support::serve(&settings, &db).await;
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

/// A recurring expense shared with a household: its occurrences are shared while its
/// owner is a member who may add to the household, and personal once they are removed.
#[tokio::test]
async fn occurrences_of_a_shared_series_stop_being_shared_when_the_owner_is_removed() {
    use chrono::TimeZone;

    let (_users_db, users_server, users_gql) = start_users().await;
    let mut people = Vec::new();
    for name in ["rec_owner", "rec_member"] {
        let reg = users_gql
            .ok(
                "mutation($u: String!, $e: String!) { register(input: { username: $u, email: $e,
                    password: \"correct horse battery\" }) { accessToken user { id } } }",
                json!({ "u": name, "e": format!("{name}@example.com") }),
                None,
            )
            .await;
        people.push((
            reg["register"]["accessToken"].as_str().unwrap().to_string(),
            reg["register"]["user"]["id"].as_str().unwrap().to_string(),
        ));
    }
    let (owner, (member, member_id)) = (people[0].0.clone(), people[1].clone());
    let h = users_gql
        .ok(
            "mutation { createHousehold(input: { name: \"Flat\", currency: \"USD\" }) { id } }",
            json!({}),
            Some(&owner),
        )
        .await["createHousehold"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let inv = users_gql
        .ok(
            "mutation($h: ID!) { inviteToHousehold(householdId: $h, user: \"rec_member\") { id } }",
            json!({ "h": h }),
            Some(&owner),
        )
        .await["inviteToHousehold"]["id"]
        .clone();
    users_gql
        .ok(
            "mutation($i: ID!) { acceptHouseholdInvitation(id: $i) { id } }",
            json!({ "i": inv }),
            Some(&member),
        )
        .await;

    let clock = Clock::fixed(chrono::Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap());
    let config = test_config(expenses::SERVICE);
    let db = TestDb::new(&config).await;
    let settings = support::settings(
        config,
        users_server.url("/graphql"),
        Vec::new(),
        clock.clone(),
    );
    let (_service, _server, gql) = support::serve(&settings, &db).await;
    gql.ok(
        "mutation($h: ID) { createExpense(input: { amount: \"20\", category: \"utilities\",
            description: \"internet\", date: \"2024-01-08\", householdId: $h,
            recurrence: { frequency: DAILY } }) { id } }",
        json!({ "h": h }),
        Some(&member),
    )
    .await;
    let shared_days = || async {
        let list = gql
            .ok(
                "{ expenses(first: 50) { edges { node { date household { id } } } } }",
                json!({}),
                Some(&member),
            )
            .await;
        list["expenses"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["node"]["date"].as_str().unwrap().to_string(),
                    !e["node"]["household"].is_null(),
                )
            })
            .collect::<Vec<_>>()
    };
    // The 8th (the expense), the 9th and the 10th: all shared.
    assert!(
        kit::testing::wait_until(Duration::from_secs(5), || async {
            shared_days().await.len() == 3
        })
        .await
    );
    assert!(shared_days().await.iter().all(|(_, shared)| *shared));

    users_gql
        .ok(
            "mutation($h: ID!, $u: ID!) { removeHouseholdMember(householdId: $h, userId: $u) { id } }",
            json!({ "h": h, "u": member_id }),
            Some(&owner),
        )
        .await;
    clock.set(chrono::Utc.with_ymd_and_hms(2024, 1, 12, 12, 0, 0).unwrap());
    assert!(
        kit::testing::wait_until(Duration::from_secs(5), || async {
            shared_days().await.len() == 5
        })
        .await
    );
    let days = shared_days().await;
    assert_eq!(
        days,
        [
            ("2024-01-12".to_string(), false),
            ("2024-01-11".to_string(), false),
            ("2024-01-10".to_string(), true),
            ("2024-01-09".to_string(), true),
            ("2024-01-08".to_string(), true),
        ],
        "after the removal, new occurrences are the former member's own"
    );
}
