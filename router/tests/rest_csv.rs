//! CSV through the REST shim over the real product: export format (header, ISO dates,
//! dot decimals, currency and id columns, formula guard), all-or-nothing import with a
//! report per bad row and column, 10,000 rows in one request, idempotent re-import.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::rest::Rest;

const HEADER: &str = "id,date,type,amount,currency,category,description,paymentMethod,tags";

#[tokio::test]
async fn ten_thousand_rows_import_in_one_request_and_again_changes_nothing() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let mut csv = String::from(HEADER);
    let mut cents_total: i64 = 0;
    for i in 0..10_000 {
        let cents = 100 + (i % 997) as i64;
        cents_total += cents;
        let day = 1 + i % 28;
        csv.push_str(&format!(
            "\nrow-{i},2025-03-{day:02},EXPENSE,{}.{:02},USD,food,lunch {i},card,",
            cents / 100,
            cents % 100
        ));
    }
    let report = rest.import_csv(&ada.token, &csv).await.expect(200);
    assert_eq!(
        report.body,
        json!({"rows": 10_000, "created": 10_000, "alreadyPresent": 0})
    );

    let summary = rest
        .get(
            "/api/expenses/summary?startDate=2025-03-01&endDate=2025-03-31",
            &ada.token,
        )
        .await
        .expect(200);
    let want = format!("{}.{:02}", cents_total / 100, cents_total % 100);
    assert_eq!(summary.raw_at("/totalExpenses"), want);

    let report = rest.import_csv(&ada.token, &csv).await.expect(200);
    assert_eq!(
        report.body,
        json!({"rows": 10_000, "created": 0, "alreadyPresent": 10_000})
    );
}

#[tokio::test]
async fn a_file_with_bad_rows_imports_nothing_and_names_each_row_and_column() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let csv = format!(
        "{HEADER}\n\
         a1,2025-03-01,EXPENSE,12.50,USD,food,fine,card,\n\
         a2,2025-03-02,EXPENSE,12.5.0,USD,food,bad amount,card,\n\
         a3,2025-02-30,EXPENSE,3,USD,food,bad date,card,\n\
         a4,2025-03-04,EXPENSE,4,USD,food,fine too,card,\n"
    );
    let reply = rest.import_csv(&ada.token, &csv).await.expect(400);
    let body = reply.body;
    assert_eq!(body["code"], "VALIDATION_FAILED", "{body}");
    let details = body["details"].as_array().unwrap();
    let columns: Vec<&str> = details
        .iter()
        .map(|d| d["column"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["amount", "date"], "{body}");
    assert_eq!(details[0]["row"], 2, "{body}");
    assert_eq!(details[1]["row"], 3, "{body}");

    let list = rest.get("/api/expenses", &ada.token).await.expect(200);
    assert_eq!(list.body["expenses"], json!([]), "nothing was imported");
}

#[tokio::test]
async fn the_export_is_rfc4180_with_guarded_text_cells() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let created = rest
        .post(
            "/api/expenses",
            &ada.token,
            json!({"amount": "1234.50", "description": "=HYPERLINK(\"http://x\"), \"quoted\"",
                   "category": "food", "date": "2025-03-05", "tags": ["a", "b"]}),
        )
        .await
        .expect(201)
        .body;

    let export = rest
        .get(
            "/api/expenses/export.csv?startDate=2025-03-01&endDate=2025-03-31",
            &ada.token,
        )
        .await
        .expect(200);
    let content_type = export.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let mut lines = export.raw.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!(
            "{},2025-03-05,EXPENSE,1234.50,USD,food,",
            created["id"].as_str().unwrap()
        )),
        "{row}"
    );
    // The formula is defused with a leading quote, and the cell is quoted per RFC 4180.
    assert!(
        row.contains(r#""'=HYPERLINK(""http://x""), ""quoted""""#),
        "{row}"
    );
    assert_eq!(lines.next(), None);
}
