#![allow(clippy::unwrap_used, clippy::expect_used)]

//! CSV export and import end to end: a real server on port 0, real HTTP, the real
//! database.

mod support;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use kit::testing::{first_error_code, wait_until};
use serde_json::{Value, json};
use support::{Stack, start_at};

const EXPORT: &str = r#"query($from: Date, $to: Date) {
  exportExpensesCsv(from: $from, to: $to) { csv rowCount }
}"#;

const IMPORT: &str = r#"mutation($csv: String!) {
  importExpensesCsv(csv: $csv) { rows created alreadyPresent }
}"#;

const HEADER: &str = "id,date,type,amount,currency,category,description,paymentMethod,tags";

async fn stack() -> Stack {
    start_at(Some(Utc.with_ymd_and_hms(2024, 6, 15, 12, 0, 0).unwrap())).await
}

async fn export(s: &Stack, token: &str, vars: Value) -> (String, i64) {
    let data = s.gql.ok(EXPORT, vars, Some(token)).await;
    let e = &data["exportExpensesCsv"];
    (
        e["csv"].as_str().unwrap().to_string(),
        e["rowCount"].as_i64().unwrap(),
    )
}

async fn import(s: &Stack, token: &str, csv: &str) -> Value {
    s.gql.ok(IMPORT, json!({ "csv": csv }), Some(token)).await["importExpensesCsv"].clone()
}

async fn import_error(s: &Stack, token: &str, csv: &str) -> Value {
    let body = s
        .gql
        .request(IMPORT, json!({ "csv": csv }), Some(token))
        .await;
    assert_eq!(first_error_code(&body), "VALIDATION_FAILED", "{body:#}");
    assert!(body["data"].is_null(), "{body:#}");
    body["errors"][0]["extensions"].clone()
}

/// All of a user's expenses, oldest first, without ids and timestamps.
async fn contents(s: &Stack, token: &str) -> Vec<Value> {
    let q = r#"{ expenses(first: 100) { edges { node {
        id type amount currency category description date paymentMethod tags } } } }"#;
    let data = s.gql.ok(q, json!({}), Some(token)).await;
    let mut out: Vec<Value> = data["expenses"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    out.reverse();
    out
}

fn without_ids(v: &[Value]) -> Vec<Value> {
    v.iter()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("id");
            e
        })
        .collect()
}

fn rows(csv: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv.as_bytes());
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn an_export_imported_into_another_account_creates_that_users_own_copies_once() {
    let s = stack().await;
    let (_, alice) = s.user();
    let (bob_id, bob) = s.user();
    s.create(&alice, json!({ "amount": "12.5", "category": "food", "description": "Lunch, with \"friends\"\nand more", "date": "2024-06-01", "paymentMethod": "card", "tags": ["team", "a;b"] })).await;
    s.create(&alice, json!({ "type": "INCOME", "amount": "2000", "category": "salary", "description": "June pay", "date": "2024-06-01" })).await;
    s.create(&alice, json!({ "amount": "1500", "currency": "JPY", "description": "Ramen", "date": "2024-05-31" })).await;
    let original = contents(&s, &alice).await;

    let (csv, count) = export(&s, &alice, json!({})).await;
    assert_eq!(count, 3);
    assert!(csv.starts_with(&format!("{HEADER}\r\n")), "{csv}");
    assert!(csv.ends_with("\r\n"));
    // Ordered by date then id; exact currency digits.
    let r = rows(&csv);
    assert_eq!(r[1][1], "2024-05-31");
    assert_eq!(r[1][3], "1500");
    assert_eq!(r[1][4], "JPY");
    assert_eq!(r[2][1], "2024-06-01");
    assert!(r[2][0] < r[3][0], "same date: ordered by id");

    let report = import(&s, &bob, &csv).await;
    assert_eq!(
        report,
        json!({ "rows": 3, "created": 3, "alreadyPresent": 0 })
    );
    let copied = contents(&s, &bob).await;
    assert_eq!(without_ids(&copied), without_ids(&original));
    for (c, o) in copied.iter().zip(&original) {
        assert_ne!(c["id"], o["id"], "bob's copies have their own ids");
    }
    assert_eq!(copied[1]["tags"], json!(["team", "a;b"]));

    // The same file again creates nothing.
    let again = import(&s, &bob, &csv).await;
    assert_eq!(
        again,
        json!({ "rows": 3, "created": 0, "alreadyPresent": 3 })
    );
    assert_eq!(contents(&s, &bob).await.len(), 3);
    // Alice importing her own export creates nothing either.
    let own = import(&s, &alice, &csv).await;
    assert_eq!(own["created"], 0);
    assert_eq!(s.stored_count().await, 6);

    // Each imported expense announced itself like createExpense does.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            s.sink
                .events()
                .iter()
                .filter(|e| e.kind == "expense.created" && e.user_id == bob_id)
                .count()
                == 3
        })
        .await
    );
}

#[tokio::test]
async fn each_user_exports_only_their_own_expenses_within_the_inclusive_range() {
    let s = stack().await;
    let (_, alice) = s.user();
    let (_, bob) = s.user();
    for d in ["2024-05-31", "2024-06-01", "2024-06-10", "2024-06-11"] {
        s.create(
            &alice,
            json!({ "amount": "1", "description": format!("alice {d}"), "date": d }),
        )
        .await;
    }
    s.create(
        &bob,
        json!({ "amount": "1", "description": "bob", "date": "2024-06-05" }),
    )
    .await;
    let (csv, n) = export(
        &s,
        &alice,
        json!({ "from": "2024-06-01", "to": "2024-06-10" }),
    )
    .await;
    assert_eq!(n, 2);
    assert!(csv.contains("alice 2024-06-01") && csv.contains("alice 2024-06-10"));
    assert!(!csv.contains("2024-05-31") && !csv.contains("2024-06-11"));
    assert!(!csv.contains("bob"));
    let (csv, n) = export(&s, &bob, json!({})).await;
    assert_eq!(n, 1);
    assert!(!csv.contains("alice"));
    // Nobody: UNAUTHENTICATED.
    let body = s.gql.request(EXPORT, json!({}), None).await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn cells_that_look_like_formulas_are_exported_as_text_and_import_back_unchanged() {
    let s = stack().await;
    let (_, alice) = s.user();
    let (_, bob) = s.user();
    s.create(&alice, json!({ "amount": "3", "description": "=HYPERLINK(\"http://x\")", "date": "2024-06-01", "tags": ["+1", "@home"] })).await;
    s.create(
        &alice,
        json!({ "amount": "4", "description": "-5 refund", "date": "2024-06-02" }),
    )
    .await;
    s.create(
        &alice,
        json!({ "amount": "5", "description": "'quoted", "date": "2024-06-03" }),
    )
    .await;
    let (csv, _) = export(&s, &alice, json!({})).await;
    let r = rows(&csv);
    assert_eq!(r[1][6], "'=HYPERLINK(\"http://x\")");
    assert_eq!(r[1][8], "'+1;@home");
    assert_eq!(r[2][6], "'-5 refund");
    assert_eq!(r[2][3], "4.00", "amounts are not guarded");
    assert_eq!(r[3][6], "''quoted");
    import(&s, &bob, &csv).await;
    let got = contents(&s, &bob).await;
    assert_eq!(got[0]["description"], "=HYPERLINK(\"http://x\")");
    assert_eq!(got[0]["tags"], json!(["+1", "@home"]));
    assert_eq!(got[1]["description"], "-5 refund");
    assert_eq!(got[2]["description"], "'quoted");
}

#[tokio::test]
async fn descriptions_with_commas_quotes_and_newlines_are_quoted_per_rfc_4180() {
    let s = stack().await;
    let (_, alice) = s.user();
    s.create(
        &alice,
        json!({ "amount": "1", "description": "a, \"b\"\r\nc", "date": "2024-06-01" }),
    )
    .await;
    let (csv, _) = export(&s, &alice, json!({})).await;
    assert!(csv.contains(",\"a, \"\"b\"\"\r\nc\","), "{csv}");
    assert_eq!(rows(&csv)[1][6], "a, \"b\"\r\nc");
}

#[tokio::test]
async fn a_file_with_two_bad_rows_imports_nothing_and_names_both_rows_and_columns() {
    let s = stack().await;
    let (_, bob) = s.user();
    let csv = format!(
        "{HEADER}\r\n\
         r1,2024-06-01,EXPENSE,10.00,USD,food,fine,,\r\n\
         r2,2024-06-02,EXPENSE,1.234,USD,food,too many digits,,\r\n\
         r3,2024-06-03,EXPENSE,5.00,USD,food,fine too,,\r\n\
         r4,2026-01-01,EXPENSE,5.00,USD,salary,bad date and category,cheque,\r\n"
    );
    let ext = import_error(&s, &bob, &csv).await;
    assert_eq!(ext["field"], "csv");
    let found: Vec<(i64, String)> = ext["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["column"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (2, "amount".to_string()),
            (4, "category".to_string()),
            (4, "date".to_string()),
            (4, "paymentMethod".to_string()),
        ]
    );
    assert_eq!(ext["errors"][0]["line"], 3);
    assert_eq!(s.stored_count().await, 0, "nothing was imported");
}

#[tokio::test]
async fn unknown_repeated_or_missing_header_columns_are_refused() {
    let s = stack().await;
    let (_, bob) = s.user();
    let ext = import_error(
        &s,
        &bob,
        "id,date,amount,description,colour\r\nx,2024-06-01,1,a,red\r\n",
    )
    .await;
    assert_eq!(ext["errors"][0]["column"], "colour");
    assert!(ext["errors"][0]["row"].is_null());
    let ext = import_error(&s, &bob, "id,amount,amount\r\nx,1,1\r\n").await;
    let columns: Vec<&str> = ext["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["column"].as_str().unwrap())
        .collect();
    assert_eq!(columns, vec!["amount", "date", "description"]);
    let ext = import_error(&s, &bob, "").await;
    assert_eq!(ext["errors"][0]["column"], "csv");
    // A row with the wrong number of fields, and one without an id.
    let ext = import_error(
        &s,
        &bob,
        "id,date,amount,description\r\nx,2024-06-01,1\r\n,2024-06-01,1,a\r\n",
    )
    .await;
    assert_eq!(ext["errors"][0]["row"], 1);
    assert_eq!(ext["errors"][0]["column"], "csv");
    assert_eq!(s.stored_count().await, 0);
}

#[tokio::test]
async fn columns_are_matched_by_name_in_any_order_with_defaults_for_optional_ones() {
    let s = stack().await;
    let (bob_id, bob) = s.user();
    s.users.set(&bob_id, "EUR", "UTC");
    let csv = "Description,amount,DATE,id\r\nBread,2.5,2024-06-01,b1\r\n";
    assert_eq!(import(&s, &bob, csv).await["created"], 1);
    let got = contents(&s, &bob).await;
    assert_eq!(got[0]["amount"], "2.50");
    assert_eq!(got[0]["currency"], "EUR");
    assert_eq!(got[0]["category"], "other");
    assert_eq!(got[0]["type"], "EXPENSE");
    // The same row id with different content is refused, not silently skipped.
    let ext = import_error(
        &s,
        &bob,
        "id,date,amount,description\r\nb1,2024-06-01,3,Bread\r\n",
    )
    .await;
    assert_eq!(ext["errors"][0]["column"], "id");
    // Duplicate row ids within one file are refused.
    let ext = import_error(
        &s,
        &bob,
        "id,date,amount,description\r\nz,2024-06-01,3,a\r\nz,2024-06-01,3,a\r\n",
    )
    .await;
    assert_eq!(ext["errors"][0]["row"], 2);
}

#[tokio::test]
async fn more_than_ten_thousand_rows_are_refused() {
    let s = stack().await;
    let (_, bob) = s.user();
    let mut csv = String::from("id,date,amount,description\r\n");
    for i in 0..10_001 {
        csv.push_str(&format!("r{i},2024-06-01,1,x\r\n"));
    }
    let ext = import_error(&s, &bob, &csv).await;
    assert!(
        ext["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("10000"),
        "{ext}"
    );
    assert_eq!(s.stored_count().await, 0);
}

#[tokio::test]
async fn ten_thousand_rows_import_in_one_request_and_again_create_nothing() {
    let s = stack().await;
    let (_, bob) = s.user();
    let mut csv = format!("{HEADER}\r\n");
    for i in 0..10_000 {
        csv.push_str(&format!(
            "row-{i:05},2024-0{}-{:02},EXPENSE,{}.{:02},USD,food,\"Groceries, week {i}\",card,weekly;food\r\n",
            1 + i % 6,
            1 + i % 28,
            1 + i % 97,
            i % 100
        ));
    }
    let started = Instant::now();
    let report = import(&s, &bob, &csv).await;
    let first = started.elapsed();
    assert_eq!(
        report,
        json!({ "rows": 10000, "created": 10000, "alreadyPresent": 0 })
    );
    let started = Instant::now();
    let again = import(&s, &bob, &csv).await;
    let second = started.elapsed();
    assert_eq!(again["created"], 0);
    assert_eq!(again["alreadyPresent"], 10000);
    eprintln!(
        "10,000-row import: {first:?}; re-import: {second:?}; csv {} bytes",
        csv.len()
    );
    let (exported, n) = export(&s, &bob, json!({})).await;
    assert_eq!(n, 10_000);
    assert_eq!(rows(&exported).len(), 10_001);
}

#[tokio::test]
async fn csv_text_above_five_mib_is_refused_without_a_server_error() {
    let s = stack().await;
    let (_, bob) = s.user();
    let mut csv = String::from("id,date,amount,description\r\n");
    let line = format!("r,2024-06-01,1,{}\r\n", "x".repeat(400));
    while csv.len() <= 5 * 1024 * 1024 {
        csv.push_str(&line);
    }
    let ext = import_error(&s, &bob, &csv).await;
    assert_eq!(ext["errors"][0]["column"], "csv");
    assert!(
        ext["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("5 MiB"),
        "{ext}"
    );
    assert_eq!(s.stored_count().await, 0);
}
