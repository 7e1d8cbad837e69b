#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The expenses subgraph end to end: a real server on port 0, real HTTP, the real
//! database through the official driver.

mod support;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use kit::events::Event;
use kit::testing::{assert_sdl_matches_committed, first_error_code, wait_until};
use serde_json::{Value, json};
use support::{LIST, expense_ids, start, start_at};

#[tokio::test]
async fn sdl_matches_committed_file() {
    assert_sdl_matches_committed(
        expenses::SERVICE,
        &kit::bootstrap::sdl::<expenses::service::Expenses>().unwrap(),
    );
}

#[tokio::test]
async fn health_and_ready_answer_when_the_database_is_up() {
    let s = start().await;
    let http = reqwest::Client::new();
    for path in ["/health", "/ready"] {
        let resp = http.get(s.server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn an_expense_takes_its_defaults_from_the_users_profile() {
    // 2024-02-01 04:30 UTC is 2024-01-31 23:30 in New York.
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 2, 1, 4, 30, 0).unwrap())).await;
    let (id, token) = s.user();
    s.users.set(&id, "JPY", "America/New_York");
    let e = s
        .create(
            &token,
            json!({ "amount": "1500", "description": " Ramen " }),
        )
        .await;
    assert_eq!(e["type"], "EXPENSE");
    assert_eq!(e["amount"], "1500");
    assert_eq!(e["currency"], "JPY");
    assert_eq!(e["category"], "other");
    assert_eq!(e["description"], "Ramen");
    assert_eq!(e["date"], "2024-01-31", "today in the user's timezone");
    assert_eq!(e["tags"], json!([]));
    assert_eq!(e["user"]["id"], id);

    let e = s
        .create(
            &token,
            json!({ "type": "INCOME", "amount": "12.5", "currency": "usd", "category": "Salary",
                    "description": "pay", "date": "2024-01-15", "paymentMethod": "Bank_Transfer",
                    "tags": ["work", " work ", "jan"] }),
        )
        .await;
    assert_eq!(e["amount"], "12.50");
    assert_eq!(e["currency"], "USD");
    assert_eq!(e["category"], "salary");
    assert_eq!(e["paymentMethod"], "bank_transfer");
    assert_eq!(e["tags"], json!(["work", "jan"]));
}

#[tokio::test]
async fn bad_input_is_refused_with_its_field_and_nothing_is_written() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 5, 10, 12, 0, 0).unwrap())).await;
    let (_, token) = s.user();
    let base = json!({ "amount": "10", "description": "x" });
    let with = |k: &str, v: Value| {
        let mut i = base.clone();
        i[k] = v;
        i
    };
    let cases = [
        (with("amount", json!("0")), "amount"),
        (with("amount", json!("-5")), "amount"),
        (with("amount", json!("1.234")), "amount"),
        (with("currency", json!("XYZ")), "currency"),
        (with("category", json!("salary")), "category"),
        (with("category", json!("nonsense")), "category"),
        (with("description", json!("   ")), "description"),
        (with("description", json!("x".repeat(501))), "description"),
        (with("date", json!("2025-05-11")), "date"),
        (with("paymentMethod", json!("cheque")), "paymentMethod"),
        (
            with(
                "tags",
                json!((0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()),
            ),
            "tags",
        ),
        (with("tags", json!(["y".repeat(33)])), "tags"),
        (
            with(
                "recurrence",
                json!({ "frequency": "MONTHLY", "endDate": "2024-05-01" }),
            ),
            "recurrence.endDate",
        ),
    ];
    for (input, field) in cases {
        let err = s.create_error(&token, input.clone()).await;
        assert_eq!(
            err["extensions"]["code"], "VALIDATION_FAILED",
            "{input}: {err}"
        );
        assert_eq!(err["extensions"]["field"], field, "{input}: {err}");
    }
    // Malformed scalars are refused before execution, also with a code.
    for input in [
        with("amount", json!("1e3")),
        with("date", json!("2024-1-5")),
    ] {
        let err = s.create_error(&token, input).await;
        assert!(
            err["extensions"]["code"]
                .as_str()
                .unwrap()
                .contains("VALIDATION"),
            "{err}"
        );
    }
    // A description of exactly 500 characters and a date exactly a year ahead are fine.
    s.create(&token, with("description", json!("é".repeat(500))))
        .await;
    s.create(&token, with("date", json!("2025-05-10"))).await;
    assert_eq!(s.stored_count().await, 2);
    // No token: UNAUTHENTICATED.
    let body = s
        .gql
        .request(support::CREATE, json!({ "input": base }), None)
        .await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn pages_follow_date_then_id_and_stay_stable_under_inserts() {
    let s = start().await;
    let (_, token) = s.user();
    for day in 1..=5 {
        s.create(
            &token,
            json!({ "amount": "1", "description": format!("d{day}"), "date": format!("2024-03-0{day}") }),
        )
        .await;
    }
    let page1 = s.list(&token, json!({ "first": 2 })).await;
    let dates: Vec<&str> = page1["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["2024-03-05", "2024-03-04"]);
    assert_eq!(page1["pageInfo"]["hasNextPage"], true);
    assert_eq!(page1["totalCount"], 5);
    // A newer expense arrives between pages: the next page neither repeats nor skips.
    s.create(
        &token,
        json!({ "amount": "1", "description": "new", "date": "2024-03-06" }),
    )
    .await;
    let page2 = s
        .list(
            &token,
            json!({ "first": 2, "after": page1["pageInfo"]["endCursor"] }),
        )
        .await;
    let dates: Vec<&str> = page2["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["2024-03-03", "2024-03-02"]);
    let page3 = s
        .list(
            &token,
            json!({ "first": 2, "after": page2["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(page3["edges"].as_array().unwrap().len(), 1);
    assert_eq!(page3["pageInfo"]["hasNextPage"], false);
    // Same-day expenses are ordered by id, newest id first.
    let a = s
        .create(
            &token,
            json!({ "amount": "1", "description": "a", "date": "2024-03-06" }),
        )
        .await;
    let all = s.list(&token, json!({ "first": 2 })).await;
    assert_eq!(all["edges"][0]["node"]["id"], a["id"]);

    for (vars, field) in [
        (json!({ "first": 101 }), "first"),
        (json!({ "first": -1 }), "first"),
        (json!({ "after": "garbage" }), "after"),
        (json!({ "after": "MjAyNHxub3QtYW4taWQ" }), "after"),
    ] {
        let body = s.gql.request(LIST, vars, Some(&token)).await;
        assert_eq!(first_error_code(&body), "VALIDATION_FAILED");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(
        s.list(&token, json!({ "first": 100 })).await["edges"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn filters_combine_and_count() {
    let s = start().await;
    let (_, token) = s.user();
    let rows = [
        (
            "EXPENSE",
            "12.00",
            "food",
            "Coffee beans",
            "2024-04-01",
            "card",
            vec!["home"],
        ),
        (
            "EXPENSE",
            "40.00",
            "food",
            "Dinner out",
            "2024-04-10",
            "cash",
            vec!["friends"],
        ),
        (
            "EXPENSE",
            "900.00",
            "rent",
            "April rent",
            "2024-04-01",
            "bank_transfer",
            vec![],
        ),
        (
            "INCOME",
            "3000.00",
            "salary",
            "Salary April",
            "2024-04-30",
            "bank_transfer",
            vec![],
        ),
        (
            "EXPENSE",
            "8.50",
            "transport",
            "Bus to the coffee fair",
            "2024-05-01",
            "mobile",
            vec!["home"],
        ),
    ];
    for (ty, amount, cat, desc, date, pm, tags) in rows {
        s.create(
            &token,
            json!({ "type": ty, "amount": amount, "category": cat, "description": desc,
                    "date": date, "paymentMethod": pm, "tags": tags }),
        )
        .await;
    }
    let count = |filter: Value| {
        let s = &s;
        let token = token.clone();
        async move {
            let r = s
                .list(&token, json!({ "filter": filter, "first": 100 }))
                .await;
            let n = r["edges"].as_array().unwrap().len();
            assert_eq!(r["totalCount"], n, "{r}");
            n
        }
    };
    assert_eq!(count(json!({ "type": "INCOME" })).await, 1);
    assert_eq!(count(json!({ "category": "FOOD" })).await, 2);
    assert_eq!(count(json!({ "categories": ["food", "rent"] })).await, 3);
    assert_eq!(
        count(json!({ "from": "2024-04-01", "to": "2024-04-30" })).await,
        4
    );
    assert_eq!(count(json!({ "from": "2024-04-30" })).await, 2);
    assert_eq!(count(json!({ "to": "2024-04-01" })).await, 2);
    assert_eq!(
        count(json!({ "minAmount": "12", "maxAmount": "40" })).await,
        2
    );
    assert_eq!(count(json!({ "minAmount": "12.01" })).await, 3);
    assert_eq!(count(json!({ "search": "COFFEE" })).await, 2);
    assert_eq!(
        count(json!({ "search": "a.*" })).await,
        0,
        "search text is literal"
    );
    assert_eq!(count(json!({ "tag": "home" })).await, 2);
    assert_eq!(count(json!({ "paymentMethod": "bank_transfer" })).await, 2);
    assert_eq!(
        count(json!({ "type": "EXPENSE", "tag": "home", "from": "2024-04-02", "search": "bus" }))
            .await,
        1
    );
    let body = s
        .gql
        .request(
            LIST,
            json!({ "filter": { "from": "2024-05-01", "to": "2024-04-01" } }),
            Some(&token),
        )
        .await;
    assert_eq!(first_error_code(&body), "VALIDATION_FAILED");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_expense_and_refuses_other_input() {
    let s = start().await;
    let (_, token) = s.user();
    let input = json!({ "amount": "25.5", "category": "food", "description": "Groceries", "date": "2024-06-01" });
    let vars = json!({ "input": input, "key": "k-1" });
    let first =
        s.gql.ok(support::CREATE, vars.clone(), Some(&token)).await["createExpense"].clone();
    // The same input written another way ("25.50") is the same request.
    let mut again = vars.clone();
    again["input"]["amount"] = json!("25.50");
    let second = s.gql.ok(support::CREATE, again, Some(&token)).await["createExpense"].clone();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(s.stored_count().await, 1);

    let mut different = vars.clone();
    different["input"]["amount"] = json!("26");
    assert_eq!(
        s.gql
            .error_code(support::CREATE, different, Some(&token))
            .await,
        "CONFLICT"
    );

    // Ten concurrent requests with one new key create one expense.
    let requests = (0..10).map(|_| {
        let gql = s.gql.clone();
        let token = token.clone();
        let input = input.clone();
        async move {
            gql.ok(
                support::CREATE,
                json!({ "input": input, "key": "k-2" }),
                Some(&token),
            )
            .await["createExpense"]["id"]
                .clone()
        }
    });
    let ids = futures::future::join_all(requests).await;
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(s.stored_count().await, 2);

    // Keys belong to a user: another user's same key is a fresh expense.
    let (_, other) = s.user();
    let o = s.gql.ok(support::CREATE, vars, Some(&other)).await["createExpense"].clone();
    assert_ne!(o["id"], first["id"]);
}

#[tokio::test]
async fn an_idempotency_key_still_replays_more_than_a_day_later() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap())).await;
    let (_, token) = s.user();
    let vars = json!({ "input": { "amount": "5", "description": "kept" }, "key": "day-old" });
    let first =
        s.gql.ok(support::CREATE, vars.clone(), Some(&token)).await["createExpense"].clone();
    // 25 hours later (on the service's clock) the key still answers with the first one.
    s.clock
        .set(Utc.with_ymd_and_hms(2024, 6, 2, 13, 0, 0).unwrap());
    let again = s.gql.ok(support::CREATE, vars, Some(&token)).await["createExpense"].clone();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["date"], "2024-06-01");
    assert_eq!(s.stored_count().await, 1);
}

#[tokio::test]
async fn someone_elses_expense_is_not_found_and_untouched() {
    let s = start().await;
    let (_, alice) = s.user();
    let (bob_id, bob) = s.user();
    let e = s
        .create(&alice, json!({ "amount": "5", "description": "mine" }))
        .await;
    let id = e["id"].as_str().unwrap();

    let get = s
        .gql
        .ok(
            "query($id: ID!) { expense(id: $id) { id } }",
            json!({ "id": id }),
            Some(&bob),
        )
        .await;
    assert_eq!(get["expense"], Value::Null);
    let update =
        "mutation($id: ID!) { updateExpense(id: $id, input: { amount: \"1\" }) { id amount } }";
    assert_eq!(
        s.gql
            .error_code(update, json!({ "id": id }), Some(&bob))
            .await,
        "NOT_FOUND"
    );
    let delete = "mutation($id: ID!) { deleteExpense(id: $id) }";
    assert_eq!(
        s.gql
            .error_code(delete, json!({ "id": id }), Some(&bob))
            .await,
        "NOT_FOUND"
    );
    let entities = r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on Expense { id amount } ... on User { id expenses { totalCount } } } }"#;
    let reps = json!({ "r": [{ "__typename": "Expense", "id": id }, { "__typename": "User", "id": "someone" }] });
    let data = s.gql.ok(entities, reps, Some(&bob)).await;
    assert_eq!(data["_entities"], json!([null, null]));
    assert_eq!(s.list(&bob, json!({})).await["totalCount"], 0);

    // The owner still sees it unchanged, and reaches it through the entities too.
    let reps = json!({ "r": [{ "__typename": "Expense", "id": id }] });
    let data = s.gql.ok(entities, reps, Some(&alice)).await;
    assert_eq!(data["_entities"][0]["amount"], "5.00");
    let reps = json!({ "r": [{ "__typename": "User", "id": bob_id }] });
    let data = s.gql.ok(entities, reps, Some(&bob)).await;
    assert_eq!(data["_entities"][0]["expenses"]["totalCount"], 0);
}

#[tokio::test]
async fn updates_and_deletes_change_only_what_is_asked() {
    let s = start().await;
    let (_, token) = s.user();
    let e = s
        .create(
            &token,
            json!({ "amount": "5", "description": "lunch", "category": "food", "paymentMethod": "card",
                    "date": "2024-01-10", "tags": ["a"] }),
        )
        .await;
    let id = e["id"].as_str().unwrap();
    let update = r#"mutation($id: ID!, $input: UpdateExpenseInput!) {
      updateExpense(id: $id, input: $input) { id amount category description paymentMethod tags date updatedAt } }"#;
    let u = s
        .gql
        .ok(
            update,
            json!({ "id": id, "input": { "amount": "7.25", "paymentMethod": null } }),
            Some(&token),
        )
        .await["updateExpense"]
        .clone();
    assert_eq!(u["amount"], "7.25");
    assert_eq!(u["category"], "food");
    assert_eq!(u["description"], "lunch");
    assert_eq!(u["paymentMethod"], Value::Null);
    assert_eq!(u["tags"], json!(["a"]));
    let err = s
        .gql
        .request(
            update,
            json!({ "id": id, "input": { "category": "bogus" } }),
            Some(&token),
        )
        .await;
    assert_eq!(first_error_code(&err), "VALIDATION_FAILED");
    let delete = "mutation($id: ID!) { deleteExpense(id: $id) }";
    assert_eq!(
        s.gql.ok(delete, json!({ "id": id }), Some(&token)).await["deleteExpense"],
        true
    );
    assert_eq!(
        s.gql
            .error_code(delete, json!({ "id": id }), Some(&token))
            .await,
        "NOT_FOUND"
    );
    assert_eq!(s.list(&token, json!({})).await["totalCount"], 0);
}

#[tokio::test]
async fn every_write_emits_an_event_delivered_in_order_with_before_and_after() {
    let s = start().await;
    let (user, token) = s.user();
    let e = s
        .create(
            &token,
            json!({ "amount": "10", "category": "food", "description": "a", "date": "2024-02-10" }),
        )
        .await;
    let id = e["id"].as_str().unwrap();
    let update = "mutation($id: ID!) { updateExpense(id: $id, input: { category: \"rent\", date: \"2024-03-01\" }) { id } }";
    s.gql.ok(update, json!({ "id": id }), Some(&token)).await;
    s.gql
        .ok(
            "mutation($id: ID!) { deleteExpense(id: $id) }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    let events = s.settled_events(3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["expense.created", "expense.updated", "expense.deleted"]
    );
    assert!(
        events
            .iter()
            .all(|e| e.user_id == user && e.data["expenseId"] == id)
    );
    assert_eq!(events[0].data["before"], Value::Null);
    assert_eq!(events[0].data["after"]["amountMinor"], 1000);
    assert_eq!(events[0].data["after"]["currency"], "USD");
    assert_eq!(events[1].data["before"]["category"], "food");
    assert_eq!(events[1].data["after"]["category"], "rent");
    assert_eq!(events[1].data["after"]["date"], "2024-03-01");
    assert_eq!(events[2].data["after"], Value::Null);
    assert_eq!(events[2].data["version"], 3);
}

#[tokio::test]
async fn a_consumer_that_refuses_events_gets_them_all_in_order_once_it_accepts() {
    let s = start().await;
    let (_, token) = s.user();
    s.sink.refuse(true);
    let mut ids = Vec::new();
    for i in 0..4 {
        let e = s
            .create(
                &token,
                json!({ "amount": "1", "description": format!("e{i}"), "date": "2024-02-10" }),
            )
            .await;
        ids.push(e["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.sink.events().is_empty());
    // Retries back off: the failures are counted and the next attempt is scheduled.
    let leases =
        s.db.db
            .collection::<mongodb::bson::Document>("outbox_leases");
    let number = |lease: &mongodb::bson::Document, k: &str| match lease.get(k) {
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        other => panic!("{k}: {other:?}"),
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let lease = leases
                .find_one(mongodb::bson::doc! {})
                .await
                .unwrap()
                .unwrap();
            number(&lease, "attempts") >= 2 && number(&lease, "retryAt") > 0
        })
        .await,
        "the refusals were not counted with a next attempt scheduled"
    );
    assert!(s.sink.events().is_empty());
    s.sink.refuse(false);
    let got = expense_ids(&s.settled_events(4).await);
    assert_eq!(got, ids, "each event once, in order");
}

#[tokio::test]
async fn the_summary_totals_one_currency_by_category_over_inclusive_dates() {
    let s = start().await;
    let (_, token) = s.user();
    for (ty, amount, cat, date, cur) in [
        ("EXPENSE", "10.10", "food", "2024-01-01", "USD"),
        ("EXPENSE", "0.20", "food", "2024-01-31", "USD"),
        ("EXPENSE", "100", "rent", "2024-01-15", "USD"),
        ("INCOME", "1000", "salary", "2024-01-20", "USD"),
        ("EXPENSE", "5", "food", "2024-02-01", "USD"),
        ("EXPENSE", "7", "food", "2024-01-10", "EUR"),
    ] {
        s.create(
            &token,
            json!({ "type": ty, "amount": amount, "category": cat, "date": date, "currency": cur, "description": "x" }),
        )
        .await;
    }
    let q = r#"query($from: Date, $to: Date) { expenseSummary(from: $from, to: $to) {
        currency totalIncome totalExpenses balance byCategory { type category total count } } }"#;
    let sum = s
        .gql
        .ok(
            q,
            json!({ "from": "2024-01-01", "to": "2024-01-31" }),
            Some(&token),
        )
        .await["expenseSummary"]
        .clone();
    assert_eq!(sum["currency"], "USD");
    assert_eq!(sum["totalExpenses"], "110.30");
    assert_eq!(sum["totalIncome"], "1000.00");
    assert_eq!(sum["balance"], "889.70");
    assert_eq!(
        sum["byCategory"],
        json!([
            { "type": "EXPENSE", "category": "rent", "total": "100.00", "count": 1 },
            { "type": "EXPENSE", "category": "food", "total": "10.30", "count": 2 },
            { "type": "INCOME", "category": "salary", "total": "1000.00", "count": 1 },
        ])
    );
}

#[tokio::test]
async fn the_summary_of_the_largest_amounts_is_exact_to_the_last_digit() {
    let s = start().await;
    let (_, token) = s.user();
    for (ty, cat) in [
        ("EXPENSE", "food"),
        ("EXPENSE", "food"),
        ("EXPENSE", "rent"),
        ("INCOME", "salary"),
    ] {
        s.create(
            &token,
            json!({ "type": ty, "amount": "9999999999999.99", "category": cat,
                    "date": "2024-01-10", "description": "x" }),
        )
        .await;
    }
    let q = r#"{ expenseSummary { totalIncome totalExpenses balance byCategory { type category total count } } }"#;
    let sum = s.gql.ok(q, json!({}), Some(&token)).await["expenseSummary"].clone();
    assert_eq!(sum["totalExpenses"], "29999999999999.97");
    assert_eq!(sum["totalIncome"], "9999999999999.99");
    assert_eq!(sum["balance"], "-19999999999999.98");
    assert_eq!(
        sum["byCategory"],
        json!([
            { "type": "EXPENSE", "category": "food", "total": "19999999999999.98", "count": 2 },
            { "type": "EXPENSE", "category": "rent", "total": "9999999999999.99", "count": 1 },
            { "type": "INCOME", "category": "salary", "total": "9999999999999.99", "count": 1 },
        ])
    );
}

#[tokio::test]
async fn a_summary_past_64_bits_is_still_exact() {
    let s = start().await;
    let (id, token) = s.user();
    // The four-decimal currency has the most minor units per amount: 10^17 at the
    // largest, so 93 of them pass i64::MAX, where a database sum stops being exact.
    s.users.set(&id, "CLF", "UTC");
    for _ in 0..93 {
        s.create(
            &token,
            json!({ "amount": "10000000000000", "category": "rent", "date": "2024-01-10", "description": "x" }),
        )
        .await;
    }
    let q = "{ expenseSummary { currency totalExpenses balance byCategory { total count } } }";
    let sum = s.gql.ok(q, json!({}), Some(&token)).await["expenseSummary"].clone();
    assert_eq!(
        sum,
        json!({ "currency": "CLF", "totalExpenses": "930000000000000.0000",
                "balance": "-930000000000000.0000",
                "byCategory": [{ "total": "930000000000000.0000", "count": 93 }] })
    );
}

/// A `createExpense` body whose amount is the JSON `amount` exactly as written.
fn create_body(amount: &str) -> String {
    format!(
        r#"{{"query": {}, "variables": {{"input": {{"amount": {amount}, "description": "x"}}}}}}"#,
        serde_json::to_string(support::CREATE).unwrap()
    )
}

#[tokio::test]
async fn json_numbers_in_variables_are_read_from_their_exact_text() {
    let s = start().await;
    let (_, token) = s.user();
    // Refused, never rounded to 12.35 or read as 1.2345678901234568e24.
    for (amount, why) in [
        ("12.34999999999999999999", "at most 2 decimal places"),
        ("1234567890123456789012345", "out of range"),
        ("-12.34999999999999999999", "at most 2 decimal places"),
    ] {
        let body = s.gql.request_raw(&create_body(amount), Some(&token)).await;
        assert_eq!(
            first_error_code(&body),
            "VALIDATION_FAILED",
            "{amount}: {body:#}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "amount",
            "{body:#}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(why), "{amount}: {message}");
    }
    assert_eq!(s.stored_count().await, 0, "nothing is stored");
    // A number an f64 carries as written, and a string, are taken.
    for amount in ["12.35", "\"12.35\"", "1234567890123.45"] {
        let body = s.gql.request_raw(&create_body(amount), Some(&token)).await;
        let want = amount.trim_matches(['"', '\\']);
        assert_eq!(body["data"]["createExpense"]["amount"], want, "{body:#}");
    }
    assert_eq!(s.stored_count().await, 3);
    // An `Int` given a number beyond it is refused as a string, not rounded.
    let body = format!(
        r#"{{"query": {}, "variables": {{"first": 12345678901234567890123}}}}"#,
        serde_json::to_string(LIST).unwrap()
    );
    let body = s.gql.request_raw(&body, Some(&token)).await;
    assert!(body["data"].is_null(), "{body:#}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Int"),
        "{body:#}"
    );
    // The same policy over GET (a query: the amount filter).
    let q = "query($f: ExpenseFilter) { expenses(filter: $f) { totalCount } }";
    let body = s
        .gql
        .request_get(
            &[
                ("query", q),
                (
                    "variables",
                    r#"{"f": {"minAmount": 12.34999999999999999999}}"#,
                ),
            ],
            Some(&token),
        )
        .await;
    assert_eq!(first_error_code(&body), "VALIDATION_FAILED", "{body:#}");
}

#[tokio::test]
async fn a_user_can_add_categories_and_use_them() {
    let s = start().await;
    let (_, token) = s.user();
    let create = r#"mutation($n: String!) { createCategory(name: $n) { name type custom } }"#;
    let c = s
        .gql
        .ok(create, json!({ "n": " Pets " }), Some(&token))
        .await;
    assert_eq!(
        c["createCategory"],
        json!({ "name": "Pets", "type": "EXPENSE", "custom": true })
    );
    assert_eq!(
        s.gql
            .error_code(create, json!({ "n": "pets" }), Some(&token))
            .await,
        "CONFLICT"
    );
    assert_eq!(
        s.gql
            .error_code(create, json!({ "n": "Food" }), Some(&token))
            .await,
        "CONFLICT"
    );
    let e = s
        .create(
            &token,
            json!({ "amount": "3", "category": "PETS", "description": "kibble" }),
        )
        .await;
    assert_eq!(e["category"], "Pets");
    let cats = s
        .gql
        .ok(
            "{ categories { name type custom } }",
            json!({}),
            Some(&token),
        )
        .await;
    let cats = cats["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 16);
    // Another user does not have it.
    let (_, other) = s.user();
    let err = s
        .create_error(
            &other,
            json!({ "amount": "3", "category": "pets", "description": "x" }),
        )
        .await;
    assert_eq!(err["extensions"]["field"], "category");
}

#[tokio::test]
async fn recurring_expenses_are_created_once_each_also_after_downtime_and_with_two_instances() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap())).await;
    // A second instance of the service over the same database.
    let second = kit::bootstrap::start::<expenses::service::Expenses>(&s.settings, s.db.db.clone())
        .await
        .unwrap();
    let (_, token) = s.user();
    let e = s
        .create(
            &token,
            json!({ "amount": "9.99", "category": "subscriptions", "description": "Music",
                    "date": "2023-11-15", "recurrence": { "frequency": "MONTHLY", "endDate": "2024-03-31" } }),
        )
        .await;
    assert_eq!(
        e["recurrence"],
        json!({ "frequency": "MONTHLY", "endDate": "2024-03-31" })
    );
    let count = || s.search_count(&token, "music");
    // Nov 15 (the expense) and the missed Dec 15; Jan 15 is not due yet.
    assert!(wait_until(Duration::from_secs(5), || async { count().await == 2 }).await);
    // A few scheduler passes later Jan 15 is still not there (the final list could not
    // tell an early Jan 15 from one made after the clock moves).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count().await, 2);
    // Time passes (as after a downtime): Jan, Feb and Mar 15 are due, nothing after the end.
    s.clock
        .set(Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap());
    assert!(wait_until(Duration::from_secs(5), || async { count().await == 5 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count().await, 5);
    let dates: Vec<String> = s
        .list(&token, json!({ "filter": { "search": "music" } }))
        .await["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["date"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        dates,
        [
            "2024-03-15",
            "2024-02-15",
            "2024-01-15",
            "2023-12-15",
            "2023-11-15"
        ]
    );
    drop(second);
}

#[tokio::test]
async fn a_changed_schedule_continues_after_today_and_a_removed_one_stops() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap())).await;
    let (_, token) = s.user();
    let e = s
        .create(
            &token,
            json!({ "amount": "2", "description": "Daily coffee", "date": "2024-01-08",
                    "recurrence": { "frequency": "DAILY" } }),
        )
        .await;
    let count = || s.search_count(&token, "daily coffee");
    assert!(wait_until(Duration::from_secs(5), || async { count().await == 3 }).await);
    let update = r#"mutation($id: ID!, $r: RecurrenceInput) {
        updateExpense(id: $id, input: { recurrence: $r }) { id recurrence { frequency } } }"#;
    let u = s
        .gql
        .ok(
            update,
            json!({ "id": e["id"], "r": { "frequency": "WEEKLY" } }),
            Some(&token),
        )
        .await;
    assert_eq!(u["updateExpense"]["recurrence"]["frequency"], "WEEKLY");
    // Weekly from Monday 2024-01-08: the next one is 2024-01-15, nothing is backfilled.
    s.clock
        .set(Utc.with_ymd_and_hms(2024, 1, 16, 12, 0, 0).unwrap());
    assert!(wait_until(Duration::from_secs(5), || async { count().await == 4 }).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count().await, 4);
    s.gql
        .ok(update, json!({ "id": e["id"], "r": null }), Some(&token))
        .await;
    // A daily schedule starting 2024-02-18 shows when the scheduler has run at the new
    // time: by then the removed schedule would have made its occurrences too.
    s.create(
        &token,
        json!({ "amount": "1", "description": "Control tea", "date": "2024-02-18",
                "recurrence": { "frequency": "DAILY" } }),
    )
    .await;
    s.clock
        .set(Utc.with_ymd_and_hms(2024, 2, 20, 12, 0, 0).unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || async {
            s.search_count(&token, "control tea").await == 3
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count().await, 4);
}

/// A stored value that does not read back (here an unknown timezone) is an INTERNAL
/// error wherever that expense is read, never a silent default, and the scheduler
/// passes that series by without holding up the others.
#[tokio::test]
async fn an_unreadable_stored_value_is_internal_and_holds_up_no_other_series() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap())).await;
    let (_, token) = s.user();
    let weekly = |description: &str| {
        json!({ "amount": "1", "description": description, "date": "2024-01-08",
                "recurrence": { "frequency": "WEEKLY" } })
    };
    let spoiled = s.create(&token, weekly("Spoiled")).await;
    let spoiled_id = spoiled["id"].as_str().unwrap().to_string();
    s.create(&token, weekly("Healthy")).await;
    let stored = s.db.db.collection::<mongodb::bson::Document>("expenses");
    stored
        .update_one(
            mongodb::bson::doc! { "_id": &spoiled_id },
            mongodb::bson::doc! { "$set": { "recurrence.timezone": "Mars/Olympus" } },
        )
        .await
        .unwrap();
    let one = r#"query($id: ID!) { expense(id: $id) { id recurrence { frequency } } }"#;
    assert_eq!(
        s.gql
            .error_code(one, json!({ "id": &spoiled_id }), Some(&token))
            .await,
        "INTERNAL"
    );
    // A week later the healthy series has its occurrence; the spoiled one has none.
    s.clock
        .set(Utc.with_ymd_and_hms(2024, 1, 16, 12, 0, 0).unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || async {
            s.search_count(&token, "healthy").await == 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let occurrences = stored
        .count_documents(mongodb::bson::doc! { "recurringFrom": &spoiled_id })
        .await
        .unwrap();
    assert_eq!(occurrences, 0);
    // The scheduler reports it, naming the record, the field and the value.
    let err = s.service.run_recurrences().await.unwrap_err();
    assert_eq!(err.code(), kit::ErrorCode::Internal);
    let message = format!("{err:?}");
    for part in [spoiled_id.as_str(), "recurrence.timezone", "Mars/Olympus"] {
        assert!(message.contains(part), "{message}");
    }
}

#[tokio::test]
async fn two_instances_deliver_each_event_once_and_in_order() {
    let s = start().await;
    let second = kit::bootstrap::start::<expenses::service::Expenses>(&s.settings, s.db.db.clone())
        .await
        .unwrap();
    let second_server = kit::testing::TestServer::start(second.router.clone()).await;
    let gqls = [
        s.gql.clone(),
        kit::testing::Gql::new(second_server.url("/graphql")),
    ];
    let (_, token) = s.user();
    let mut ids = Vec::new();
    for i in 0..30 {
        let e = gqls[i % 2]
            .ok(
                support::CREATE,
                json!({ "input": { "amount": "1", "description": format!("n{i}") } }),
                Some(&token),
            )
            .await;
        ids.push(e["createExpense"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(expense_ids(&s.settled_events(30).await), ids);
    second_server.stop().await;
}

#[tokio::test]
async fn events_left_by_a_stopped_instance_are_delivered_by_the_next_one() {
    let mut s = start().await;
    let (_, token) = s.user();
    s.sink.refuse(true);
    let mut ids = Vec::new();
    for i in 0..3 {
        let e = s
            .create(
                &token,
                json!({ "amount": "1", "description": format!("e{i}") }),
            )
            .await;
        ids.push(e["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The instance goes away (its dispatcher with it) before anything was delivered.
    let old = std::mem::replace(
        &mut s.service,
        kit::bootstrap::start::<expenses::service::Expenses>(&s.settings, s.db.db.clone())
            .await
            .unwrap(),
    );
    drop(old);
    s.sink.refuse(false);
    // Delivery is at least once: a request the old instance had on the wire when it
    // stopped may still be taken by the consumer, which then sees that event again from
    // the next instance (consumers skip a repeated event id). So: every event, in order,
    // each id counted once, and nothing repeated beyond that one request.
    let arrived = wait_until(Duration::from_secs(10), || async {
        distinct_by_id(&s.sink.events()).len() >= 3
    })
    .await;
    assert!(arrived, "{:#?}", s.sink.events());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = s.sink.events();
    assert_eq!(expense_ids(&distinct_by_id(&events)), ids, "{events:#?}");
    assert!(events.len() <= 4, "{events:#?}");
}

/// The events with each event id kept at its first arrival.
fn distinct_by_id(events: &[Event]) -> Vec<Event> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| seen.insert(e.id.clone()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn dates_before_2000_are_refused() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap())).await;
    let (_, token) = s.user();
    for date in ["0001-01-01", "1999-12-31"] {
        let q = "mutation($input: CreateExpenseInput!) { createExpense(input: $input) { id } }";
        let input = json!({ "amount": "1", "description": "old", "date": date,
            "recurrence": { "frequency": "DAILY" } });
        let d = s
            .gql
            .request(q, json!({ "input": input }), Some(&token))
            .await;
        assert_eq!(
            d["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
            "{d}"
        );
        assert_eq!(d["errors"][0]["extensions"]["field"], "date", "{d}");
    }
    assert_eq!(s.search_count(&token, "old").await, 0);
}

#[tokio::test]
async fn a_long_backfill_never_starves_another_users_series() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap())).await;
    let (_, heavy) = s.user();
    let (_, light) = s.user();
    // Daily since 2000: almost 9,000 occurrences to create.
    s.create(
        &heavy,
        json!({ "amount": "1", "description": "backfill", "date": "2000-01-01",
                "recurrence": { "frequency": "DAILY" } }),
    )
    .await;
    s.create(
        &light,
        json!({ "amount": "2", "description": "weekday", "date": "2024-05-27",
                "recurrence": { "frequency": "DAILY" } }),
    )
    .await;
    // The short series is complete (27 May to 1 June) within a few passes, while the
    // long one is still far from done.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            s.search_count(&light, "weekday").await == 6
        })
        .await,
        "the short series was starved"
    );
    let done = s.search_count(&heavy, "backfill").await;
    assert!(done < 8_000, "{done} occurrences already");
}

#[tokio::test]
async fn a_deleted_expense_still_resolves_as_an_entity_for_its_owner_only() {
    let s = start().await;
    let (_, token) = s.user();
    let (_, other) = s.user();
    let e = s
        .create(
            &token,
            json!({ "amount": "12.50", "description": "gone soon" }),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_owned();
    s.gql
        .ok(
            "mutation($id: ID!) { deleteExpense(id: $id) }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    let q =
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Expense { id amount } } }";
    let r = json!({ "r": [{ "__typename": "Expense", "id": id }] });
    // A read model that still lists it gets its last state, never a null amount.
    let d = s.gql.ok(q, r.clone(), Some(&token)).await;
    assert_eq!(d["_entities"][0]["amount"], "12.50", "{d}");
    // Someone else still gets nothing, and the plain query no longer finds it.
    let d = s.gql.ok(q, r, Some(&other)).await;
    assert_eq!(d["_entities"][0], Value::Null, "{d}");
    let d = s
        .gql
        .ok(
            "query($id: ID!) { expense(id: $id) { id } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(d["expense"], Value::Null);
}

#[tokio::test]
async fn a_database_with_the_old_descending_indexes_starts_with_ascending_ones_only() {
    use mongodb::bson::{Document, doc};
    let config = kit::testing::test_config(expenses::SERVICE);
    let db = kit::testing::TestDb::new(&config).await;
    let coll = db.db.collection::<Document>("expenses");
    let old = mongodb::IndexModel::builder()
        .keys(doc! { "userId": 1, "deleted": 1, "sortKey": -1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .name("user_sort".to_string())
                .build(),
        )
        .build();
    coll.create_index(old).await.unwrap();

    // Twice: the second start finds nothing to drop.
    for _ in 0..2 {
        expenses::store::Store::new(&db.db)
            .ensure_indexes()
            .await
            .unwrap();
    }
    // Index names are not compared: nx-27017 names indexes after their keys itself.
    let specs = coll.list_indexes().await.unwrap();
    use futures::TryStreamExt;
    let specs: Vec<mongodb::IndexModel> = specs.try_collect().await.unwrap();
    let listing = doc! { "userId": 1, "deleted": 1, "sortKey": 1 };
    assert!(specs.iter().any(|s| s.keys == listing), "{specs:?}");
    for spec in specs {
        let descending = spec.keys.values().any(|v| v.as_i32() == Some(-1));
        assert!(!descending, "a descending index remains: {:?}", spec.keys);
    }
}

#[tokio::test]
async fn a_stopped_series_stops_the_moment_the_stop_is_answered() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap())).await;
    let (_, token) = s.user();
    let series = s
        .create(
            &token,
            json!({ "amount": "1", "description": "stopme", "date": "2000-01-01",
                    "recurrence": { "frequency": "DAILY" } }),
        )
        .await;
    // Stop it in the middle of its backfill (past its first pass of 50), while the
    // scheduler is writing.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            s.search_count(&token, "stopme").await > 60
        })
        .await
    );
    let stopped = s
        .gql
        .ok(
            "mutation($id: ID!) { updateExpense(id: $id, input: { recurrence: null }) { recurrence { frequency } } }",
            json!({ "id": series["id"] }),
            Some(&token),
        )
        .await;
    assert_eq!(
        stopped["updateExpense"]["recurrence"],
        Value::Null,
        "{stopped}"
    );
    let at_stop = s.search_count(&token, "stopme").await;
    // Ten scheduler passes later.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let later = s.search_count(&token, "stopme").await;
    if s.service.transactional {
        // The occurrence and the move of its series commit together, only while the
        // series stands: nothing is created after the stop was answered.
        assert_eq!(later, at_stop, "occurrences created after the stop");
    } else {
        // Without transactions one occurrence may have been in flight.
        assert!(later <= at_stop + 1, "{at_stop} at the stop, {later} later");
    }
    assert!(later < 8_000, "the series ran on: {later}");
}

#[tokio::test]
async fn expense_entities_resolve_in_one_query_in_order_with_other_peoples_and_unknown_ids_null() {
    let s = start().await;
    let (_, alice) = s.user();
    let (_, bob) = s.user();
    let mut mine = Vec::new();
    for amount in ["1.00", "2.00", "3.00", "4.00"] {
        let e = s
            .create(&alice, json!({ "amount": amount, "description": "x" }))
            .await;
        mine.push(e["id"].clone());
    }
    let theirs = s
        .create(&bob, json!({ "amount": "9.00", "description": "y" }))
        .await["id"]
        .clone();
    // A deleted one still resolves (its last state) for its owner.
    let deleted = "mutation($id: ID!) { deleteExpense(id: $id) }";
    s.gql
        .ok(deleted, json!({ "id": mine[3] }), Some(&alice))
        .await;

    let rep = |id: &Value| json!({ "__typename": "Expense", "id": id });
    let reps = json!([
        rep(&mine[2]),
        rep(&theirs),
        rep(&mine[0]),
        rep(&json!(contract::ids::ExpenseId::new().to_string())),
        rep(&json!("not an id")),
        rep(&mine[3]),
        rep(&mine[1]),
    ]);
    let q =
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Expense { id amount } } }";
    s.log.clear();
    let data = s.gql.ok(q, json!({ "r": reps }), Some(&alice)).await;
    let e = |id: &Value, amount: &str| json!({ "id": id, "amount": amount });
    assert_eq!(
        data["_entities"],
        json!([
            e(&mine[2], "3.00"),
            null,
            e(&mine[0], "1.00"),
            null,
            null,
            e(&mine[3], "4.00"),
            e(&mine[1], "2.00"),
        ]),
        "{data:#}"
    );
    // Seven representations, one read by a list of ids (not one per representation; the
    // event dispatcher's own re-read of a single document is not counted).
    let by_id = |c: &mongodb::bson::Document| {
        c.get_document("filter")
            .and_then(|f| f.get_document("_id"))
            .is_ok_and(|id| id.contains_key("$in"))
    };
    assert_eq!(s.log.count_where("find", "expenses", by_id), 1);
}
