#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The analytics subgraph over HTTP on a real database: events arrive on
//! `/internal/events` (from the real expenses subgraph in the end-to-end test, posted
//! directly elsewhere), queries are answered for the user's timezone and currency.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kit::clock::Clock;
use kit::events::{Consumer, DispatchSettings, Event};
use kit::testing::{
    EventSink, FakeUsers, Gql, TEST_SERVICE_TOKEN, TestDb, TestServer,
    assert_sdl_matches_committed, post_event, test_config, test_user, wait_until,
};
use serde_json::{Value, json};

struct Stack {
    gql: Gql,
    server: TestServer,
    service: analytics::Service,
    db: TestDb,
    users: FakeUsers,
    _users_server: TestServer,
    http: reqwest::Client,
}

async fn start_at(now: DateTime<Utc>) -> Stack {
    start_with(now, |_| {}).await
}

/// Starts the service at a fixed `now`; `tune` changes the test settings first.
async fn start_with(now: DateTime<Utc>, tune: impl FnOnce(&mut analytics::Settings)) -> Stack {
    let config = test_config(analytics::SERVICE);
    let db = TestDb::new(&config).await;
    let (users, users_server) = FakeUsers::start().await;
    let mut settings = analytics::Settings::from_vars(&[("X", "")], config).unwrap();
    settings.users.url = users_server.url("/graphql");
    settings.users.ttl = Duration::from_millis(1);
    settings.clock = Clock::fixed(now);
    settings.consumers = Vec::new();
    // Nothing listens on port 9: the pace insight is left out unless a test sets it.
    settings.budgets_url = "http://127.0.0.1:9/graphql".into();
    // This instance never makes weekly summaries (the tests of the job start their own).
    settings.weekly.catch_up = Duration::ZERO;
    tune(&mut settings);
    let service = kit::bootstrap::start::<analytics::service::Analytics>(&settings, db.db.clone())
        .await
        .unwrap();
    let server = TestServer::start(service.router.clone()).await;
    Stack {
        gql: Gql::new(server.url("/graphql")),
        server,
        service,
        db,
        users,
        _users_server: users_server,
        http: reqwest::Client::new(),
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn snapshot(kind: &str, minor: i64, category: &str, date: &str) -> Value {
    json!({ "type": kind, "amountMinor": minor, "currency": "USD", "category": category,
            "categoryKey": category.to_lowercase(), "date": date })
}

/// An `expense.<change>` event for version `version` of expense `id`.
fn expense_event(
    change: &str,
    user: &str,
    id: &str,
    version: i64,
    before: Value,
    after: Value,
) -> Event {
    Event::new(
        &format!("expense.{change}"),
        user,
        Utc::now(),
        json!({ "expenseId": id, "version": version, "before": before, "after": after }),
    )
}

/// Settings for another instance over the same database whose weekly summaries go to
/// `sink`, on the first instance's clock.
fn weekly_settings(s: &Stack, sink: &TestServer) -> analytics::Settings {
    let mut settings = analytics::Settings::from_vars(&[("X", "")], test_config("x")).unwrap();
    settings.consumers = vec![Consumer {
        name: "notifications".into(),
        url: sink.url(""),
    }];
    settings.dispatch = DispatchSettings::fast();
    settings.clock = s.service.clock.clone();
    settings
}

impl Stack {
    async fn post(&self, event: &Event) -> reqwest::StatusCode {
        post_event(&self.server, TEST_SERVICE_TOKEN, event).await
    }

    /// Sends an `expense.created` event and returns (event, expense id).
    async fn created(&self, user: &str, kind: &str, minor: i64, cat: &str, date: &str) -> String {
        let id = kit::ids::new_id();
        let after = snapshot(kind, minor, cat, date);
        let e = expense_event("created", user, &id, 1, Value::Null, after);
        assert_eq!(self.post(&e).await, 200);
        id
    }

    async fn spend(&self, user: &str, minor: i64, cat: &str, date: &str) -> String {
        self.created(user, "EXPENSE", minor, cat, date).await
    }

    async fn q(&self, token: &str, query: &str) -> Value {
        self.gql.ok(query, json!({}), Some(token)).await
    }
}

#[tokio::test]
async fn poison_events_are_parked_and_the_users_next_event_is_applied_at_once() {
    let s = start_at(at(2024, 3, 15, 12, 0)).await;
    let (u, token) = test_user();
    let after = snapshot("EXPENSE", 1250, "food", "2024-03-02");
    let valid = expense_event("created", &u, &kit::ids::new_id(), 1, Value::Null, after);
    let parked = kit::testing::assert_poison_events_are_parked(&s.server, &valid).await;
    assert_eq!(s.post(&valid).await, 200);
    let q = "{ monthlySummary(year: 2024, month: 3) { totalSpent transactionCount } }";
    let d = s.q(&token, q).await;
    assert_eq!(d["monthlySummary"]["totalSpent"], "12.50", "{d}");
    assert_eq!(d["monthlySummary"]["transactionCount"], 1);
    // An expense of someone else's cannot be applied to this user: parked, not applied.
    let (other, _) = test_user();
    let stolen = expense_event(
        "updated",
        &other,
        valid.data["expenseId"].as_str().unwrap(),
        2,
        Value::Null,
        snapshot("EXPENSE", 99_00, "food", "2024-03-03"),
    );
    assert_eq!(s.post(&stolen).await, 200);
    let dead = kit::testing::dead_letters(&s.server).await;
    assert!(
        dead["deadLetters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == stolen.id.as_str() && d["reason"] == "rejected"),
        "{dead}"
    );
    // A re-drive of an event that still cannot be read keeps it parked and changes nothing.
    let (status, out) = kit::testing::redrive(&s.server, &parked[0].0).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("PARKED")),
        "{out}"
    );
    assert_eq!(out["reason"], parked[0].1);
    assert_eq!(s.q(&token, q).await, d);
}

#[test]
fn sdl_matches_committed_file() {
    assert_sdl_matches_committed(
        analytics::SERVICE,
        &kit::federation_sdl(&analytics::schema()),
    );
}

#[tokio::test]
async fn health_and_ready_answer_when_the_database_is_up() {
    let s = start_at(Utc::now()).await;
    for path in ["/health", "/ready"] {
        let resp = s.http.get(s.server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_current_month_follows_the_users_timezone_and_the_last_day_counts_in_full() {
    // 2024-02-01 04:30 UTC is still 2024-01-31 23:30 in New York.
    let s = start_at(at(2024, 2, 1, 4, 30)).await;
    let (ny, ny_token) = test_user();
    s.users.set(&ny, "USD", "America/New_York");
    let (utc, utc_token) = test_user();
    s.spend(&ny, 1250, "food", "2024-01-31").await;
    s.spend(&ny, 500, "food", "2024-01-01").await;
    s.spend(&ny, 9999, "food", "2024-02-01").await;
    s.created(&ny, "INCOME", 100_000, "salary", "2024-01-15")
        .await;
    s.spend(&utc, 300, "transport", "2024-02-01").await;

    let q = "{ spendingTrends(months: 1) { month totalSpent totalIncome transactionCount } \
               monthlySummary(year: 2024, month: 1) { period totalSpent totalIncome transactionCount averagePerTransaction categoryBreakdown { category total count } } }";
    let d = s.q(&ny_token, q).await;
    assert_eq!(
        d["spendingTrends"],
        json!([{ "month": "2024-01", "totalSpent": "17.50", "totalIncome": "1000.00", "transactionCount": 2 }])
    );
    assert_eq!(d["monthlySummary"]["totalSpent"], "17.50");
    assert_eq!(d["monthlySummary"]["averagePerTransaction"], "8.75");
    assert_eq!(
        d["monthlySummary"]["categoryBreakdown"],
        json!([{ "category": "food", "total": "17.50", "count": 2 }])
    );
    let d = s
        .q(
            &utc_token,
            "{ spendingTrends(months: 1) { month totalSpent } }",
        )
        .await;
    assert_eq!(
        d["spendingTrends"],
        json!([{ "month": "2024-02", "totalSpent": "3.00" }])
    );
}

#[tokio::test]
async fn trends_list_every_month_oldest_first_with_zero_for_months_without_spending() {
    let s = start_at(at(2024, 1, 20, 12, 0)).await;
    let (u, token) = test_user();
    s.spend(&u, 1000, "food", "2023-11-03").await;
    s.spend(&u, 250, "food", "2024-01-02").await;
    s.spend(&u, 7777, "food", "2023-09-30").await; // before the window
    let d = s
        .q(
            &token,
            "{ spendingTrends(months: 4) { month totalSpent transactionCount } }",
        )
        .await;
    assert_eq!(
        d["spendingTrends"],
        json!([
            { "month": "2023-10", "totalSpent": "0.00", "transactionCount": 0 },
            { "month": "2023-11", "totalSpent": "10.00", "transactionCount": 1 },
            { "month": "2023-12", "totalSpent": "0.00", "transactionCount": 0 },
            { "month": "2024-01", "totalSpent": "2.50", "transactionCount": 1 },
        ])
    );
}

#[tokio::test]
async fn bad_arguments_are_refused_with_a_code_and_anonymous_callers_are_unauthenticated() {
    let s = start_at(Utc::now()).await;
    let (_, token) = test_user();
    for (q, field) in [
        ("{ spendingTrends(months: 0) { month } }", "months"),
        ("{ spendingTrends(months: 37) { month } }", "months"),
        (
            "{ monthlySummary(year: 2024, month: 13) { period } }",
            "month",
        ),
        ("{ dailyPattern(days: 0) { from } }", "days"),
        ("{ topExpenses(limit: 0) { id } }", "limit"),
    ] {
        let body = s.gql.request(q, json!({}), Some(&token)).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
            "{q}"
        );
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{q}");
    }
    let code = s
        .gql
        .error_code("{ spendingTrends { month } }", json!({}), None)
        .await;
    assert_eq!(code, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_redelivered_event_is_counted_once_and_updates_and_deletes_move_the_totals() {
    let s = start_at(at(2024, 3, 15, 12, 0)).await;
    let (u, token) = test_user();
    let id = kit::ids::new_id();
    let march_food = snapshot("EXPENSE", 1000, "food", "2024-03-01");
    let feb_rent = snapshot("EXPENSE", 2500, "rent", "2024-02-29");
    let created = expense_event("created", &u, &id, 1, Value::Null, march_food.clone());
    assert_eq!(s.post(&created).await, 200);
    assert_eq!(s.post(&created).await, 200);
    let total = |d: &Value| d["monthlySummary"]["totalSpent"].clone();
    let q = "{ monthlySummary(year: 2024, month: 3) { totalSpent transactionCount categoryBreakdown { category total } } }";
    assert_eq!(total(&s.q(&token, q).await), "10.00");

    // Moved to another category and month, then deleted; a stale re-delivery of the
    // creation (an older version) changes nothing.
    let updated = expense_event("updated", &u, &id, 2, march_food.clone(), feb_rent.clone());
    assert_eq!(s.post(&updated).await, 200);
    let stale = expense_event("created", &u, &id, 1, Value::Null, march_food);
    assert_eq!(s.post(&stale).await, 200);
    assert_eq!(total(&s.q(&token, q).await), "0.00");
    let feb = "{ monthlySummary(year: 2024, month: 2) { totalSpent categoryBreakdown { category total } } }";
    let d = s.q(&token, feb).await;
    assert_eq!(d["monthlySummary"]["totalSpent"], "25.00");
    assert_eq!(
        d["monthlySummary"]["categoryBreakdown"][0]["category"],
        "rent"
    );

    let deleted = expense_event("deleted", &u, &id, 3, feb_rent, Value::Null);
    assert_eq!(s.post(&deleted).await, 200);
    assert_eq!(
        s.q(&token, feb).await["monthlySummary"]["totalSpent"],
        "0.00"
    );
}

#[tokio::test]
async fn events_without_the_service_credential_are_refused() {
    let s = start_at(Utc::now()).await;
    let e = Event::new("expense.created", "u", Utc::now(), json!({}));
    assert_eq!(post_event(&s.server, "wrong", &e).await, 401);
}

#[tokio::test]
async fn the_rebuild_command_replays_the_event_log_into_the_same_read_models() {
    let s = start_at(at(2024, 3, 15, 12, 0)).await;
    let (u, token) = test_user();
    for (minor, cat, date) in [(1000, "food", "2024-03-01"), (333, "fun", "2024-03-02")] {
        s.spend(&u, minor, cat, date).await;
    }
    let q = "{ monthlySummary(year: 2024, month: 3) { totalSpent transactionCount categoryBreakdown { category total count } } }";
    let before = s.q(&token, q).await;
    // Lose the read models entirely, then rebuild from the log.
    s.db.db
        .collection::<mongodb::bson::Document>("daily")
        .drop()
        .await
        .unwrap();
    s.db.db
        .collection::<mongodb::bson::Document>("expenses")
        .drop()
        .await
        .unwrap();
    assert_eq!(s.q(&token, q).await["monthlySummary"]["totalSpent"], "0.00");
    let replayed = s.service.rebuild().await.unwrap();
    assert_eq!(replayed, 2);
    assert_eq!(s.q(&token, q).await, before);
}

#[tokio::test]
async fn daily_pattern_averages_over_every_calendar_day_and_income_is_not_spending() {
    let s = start_at(at(2024, 3, 10, 12, 0)).await;
    let (u, token) = test_user();
    s.spend(&u, 700, "food", "2024-03-10").await;
    s.spend(&u, 300, "food", "2024-03-04").await;
    s.created(&u, "INCOME", 50_000, "salary", "2024-03-05")
        .await;
    let d = s
        .q(&token, "{ dailyPattern(days: 7) { from to daily { date amount } averageDailySpending averageOver } }")
        .await["dailyPattern"]
        .clone();
    assert_eq!(d["from"], "2024-03-04");
    assert_eq!(d["to"], "2024-03-10");
    assert_eq!(d["daily"].as_array().unwrap().len(), 7);
    assert_eq!(
        d["daily"][0],
        json!({ "date": "2024-03-04", "amount": "3.00" })
    );
    assert_eq!(d["daily"][1]["amount"], "0.00");
    // 10.00 over 7 calendar days (not over the 2 days with spending).
    assert_eq!(d["averageDailySpending"], "1.43");
    assert_eq!(d["averageOver"], "CALENDAR_DAY");
}

#[tokio::test]
async fn category_analysis_and_top_expenses_cover_the_current_period_largest_first() {
    let s = start_at(at(2024, 3, 15, 12, 0)).await;
    let (u, token) = test_user();
    let big = s.spend(&u, 9000, "rent", "2024-03-01").await;
    let mid = s.spend(&u, 600, "food", "2024-03-02").await;
    s.spend(&u, 400, "food", "2024-03-03").await;
    s.spend(&u, 99_999, "food", "2024-02-28").await; // last month
    s.created(&u, "INCOME", 1_000_000, "salary", "2024-03-01")
        .await;
    let d = s
        .q(&token, "{ categoryAnalysis(period: MONTH) { from to totalSpent topCategory categories { category totalSpent count average percentage } } topExpenses(limit: 2) { id } }")
        .await;
    let a = &d["categoryAnalysis"];
    assert_eq!(a["from"], "2024-03-01");
    assert_eq!(a["to"], "2024-03-31");
    assert_eq!(a["totalSpent"], "100.00");
    assert_eq!(a["topCategory"], "rent");
    assert_eq!(
        a["categories"][1],
        json!({ "category": "food", "totalSpent": "10.00", "count": 2, "average": "5.00", "percentage": 10.0 })
    );
    assert_eq!(d["topExpenses"], json!([{ "id": big }, { "id": mid }]));
}

#[tokio::test]
async fn every_report_of_the_largest_amounts_is_exact_to_the_last_digit() {
    let s = start_at(at(2024, 3, 15, 12, 0)).await;
    let (u, token) = test_user();
    // 9,999,999,999,999.99 USD: the largest amount an expense may have.
    const MAX: i64 = 999_999_999_999_999;
    for _ in 0..5 {
        s.spend(&u, MAX, "food", "2024-03-10").await;
    }
    s.spend(&u, MAX, "rent", "2024-03-11").await;
    s.spend(&u, MAX, "food", "2024-02-10").await;
    s.created(&u, "INCOME", MAX, "salary", "2024-03-01").await;
    let q = "{ monthlySummary(year: 2024, month: 3) { totalSpent totalIncome transactionCount averagePerTransaction categoryBreakdown { category total count } } \
               categoryAnalysis(period: MONTH) { totalSpent topCategory categories { category totalSpent count average percentage } } \
               dailyPattern(days: 30) { daily { date amount } averageDailySpending } \
               spendingTrends(months: 2) { month totalSpent totalIncome transactionCount } \
               insights { kind figures { name value } } }";
    let d = s.q(&token, q).await;
    assert_eq!(
        d["monthlySummary"],
        json!({ "totalSpent": "59999999999999.94", "totalIncome": "9999999999999.99",
                "transactionCount": 6, "averagePerTransaction": "9999999999999.99",
                "categoryBreakdown": [
                    { "category": "food", "total": "49999999999999.95", "count": 5 },
                    { "category": "rent", "total": "9999999999999.99", "count": 1 } ] })
    );
    assert_eq!(
        d["categoryAnalysis"],
        json!({ "totalSpent": "59999999999999.94", "topCategory": "food", "categories": [
            { "category": "food", "totalSpent": "49999999999999.95", "count": 5,
              "average": "9999999999999.99", "percentage": 83.33 },
            { "category": "rent", "totalSpent": "9999999999999.99", "count": 1,
              "average": "9999999999999.99", "percentage": 16.67 } ] })
    );
    let daily = &d["dailyPattern"];
    let day = |date: &str| {
        daily["daily"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["date"] == date)
            .unwrap()["amount"]
            .clone()
    };
    assert_eq!(day("2024-03-10"), "49999999999999.95");
    assert_eq!(day("2024-03-11"), "9999999999999.99");
    // 59,999,999,999,999.94 over 30 calendar days, to the cent.
    assert_eq!(daily["averageDailySpending"], "2000000000000.00");
    assert_eq!(
        d["spendingTrends"],
        json!([
            { "month": "2024-02", "totalSpent": "9999999999999.99", "totalIncome": "0.00", "transactionCount": 1 },
            { "month": "2024-03", "totalSpent": "59999999999999.94", "totalIncome": "9999999999999.99", "transactionCount": 6 },
        ])
    );
    let top = d["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "TOP_CATEGORY")
        .unwrap_or_else(|| panic!("{d:#}"));
    assert_eq!(
        top["figures"],
        json!([
            { "name": "category", "value": "food" },
            { "name": "categoryTotal", "value": "49999999999999.95" },
            { "name": "monthTotal", "value": "59999999999999.94" },
            { "name": "share", "value": "83.33" },
            { "name": "expenses", "value": "5" },
        ])
    );
}

#[tokio::test]
async fn weeks_and_years_follow_the_calendar_and_only_the_users_currency_is_added() {
    // Wednesday 2024-03-13; the user keeps their books in EUR.
    let s = start_at(at(2024, 3, 13, 12, 0)).await;
    let (u, token) = test_user();
    s.users.set(&u, "EUR", "UTC");
    let spend = |minor: i64, currency: &str, date: &str| {
        let mut after = snapshot("EXPENSE", minor, "food", date);
        after["currency"] = json!(currency);
        expense_event("created", &u, &kit::ids::new_id(), 1, Value::Null, after)
    };
    for (minor, currency, date) in [
        (1000, "EUR", "2024-03-11"), // Monday of this week
        (500, "USD", "2024-03-12"),  // another currency: never added
        (300, "EUR", "2024-03-10"),  // Sunday of last week
        (200, "EUR", "2024-01-01"),
        (900, "EUR", "2023-12-31"), // last year
    ] {
        assert_eq!(s.post(&spend(minor, currency, date)).await, 200);
    }
    let q = "{ week: categoryAnalysis(period: WEEK) { from to currency totalSpent } \
               year: categoryAnalysis(period: YEAR) { from to currency totalSpent } \
               monthlySummary(year: 2024, month: 3) { currency totalSpent transactionCount } }";
    let d = s.q(&token, q).await;
    assert_eq!(
        d["week"],
        json!({ "from": "2024-03-11", "to": "2024-03-17", "currency": "EUR", "totalSpent": "10.00" })
    );
    assert_eq!(
        d["year"],
        json!({ "from": "2024-01-01", "to": "2024-12-31", "currency": "EUR", "totalSpent": "15.00" })
    );
    assert_eq!(
        d["monthlySummary"],
        json!({ "currency": "EUR", "totalSpent": "13.00", "transactionCount": 2 })
    );
}

async fn insight_kinds(s: &Stack, token: &str) -> Vec<String> {
    let d = s
        .q(
            token,
            "{ insights { kind title message severity figures { name value } expense { id } } }",
        )
        .await;
    d["insights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn no_insight_comes_from_too_little_data_and_each_appears_at_its_threshold() {
    // Friday 2024-03-29.
    let s = start_at(at(2024, 3, 29, 12, 0)).await;
    let (u, token) = test_user();
    // Four expenses this month: below every threshold.
    for day in ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"] {
        s.spend(&u, 1000, "food", day).await;
    }
    assert!(insight_kinds(&s, &token).await.is_empty());

    // The fifth: the top category appears (5 expenses this month).
    s.spend(&u, 1000, "food", "2024-03-08").await;
    assert_eq!(insight_kinds(&s, &token).await, ["TOP_CATEGORY"]);

    // A food expense far above 3x the median (10.00) of the last 90 days.
    let large = s.spend(&u, 3001, "food", "2024-03-09").await;
    let d = s
        .q(
            &token,
            "{ insights { kind expense { id } figures { name value } } }",
        )
        .await;
    let li = d["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "LARGE_EXPENSE")
        .expect("large expense insight")
        .clone();
    assert_eq!(li["expense"]["id"], json!(large));
    assert!(
        li["figures"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "median", "value": "10.00" }))
    );

    // Month over month: food last month too, and this month is up by far more than 20%.
    s.spend(&u, 2000, "food", "2024-02-10").await;
    let kinds = insight_kinds(&s, &token).await;
    assert!(kinds.contains(&"MONTH_OVER_MONTH".to_string()), "{kinds:?}");
    assert!(
        !kinds.contains(&"WEEKEND_VS_WEEKDAY".to_string()),
        "{kinds:?}"
    );

    // Ten expenses in the last 28 days: the weekend comparison appears.
    for day in ["2024-03-16", "2024-03-17", "2024-03-23", "2024-03-24"] {
        s.spend(&u, 500, "fun", day).await;
    }
    let d = s
        .q(&token, "{ insights { kind figures { name value } } }")
        .await;
    let w = d["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "WEEKEND_VS_WEEKDAY")
        .expect("weekend insight")
        .clone();
    // 28 calendar days from Saturday 2024-03-02: 8 weekend days hold 30.01 (Sat 03-09)
    // + 20.00 = 50.01, i.e. 6.25 per weekend day; 20 weekdays hold 50.00, i.e. 2.50.
    assert!(
        w["figures"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "weekendAveragePerDay", "value": "6.25" })),
        "{w}"
    );
    assert!(
        w["figures"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "weekdayAveragePerDay", "value": "2.50" })),
        "{w}"
    );
}

#[tokio::test]
async fn expenses_written_in_the_expenses_subgraph_reach_the_analytics_read_models() {
    let now = Utc::now();
    let s = start_at(now).await;
    let config = test_config(expenses::SERVICE);
    let exp_db = TestDb::new(&config).await;
    let mut es = expenses::Settings::from_vars(&[("X", "")], config).unwrap();
    es.users.url = s._users_server.url("/graphql");
    es.consumers = vec![Consumer {
        name: "analytics".into(),
        url: s.server.url(""),
    }];
    es.dispatch = DispatchSettings::fast();
    let exp = kit::bootstrap::start::<expenses::service::Expenses>(&es, exp_db.db.clone())
        .await
        .unwrap();
    let exp_server = TestServer::start(exp.router.clone()).await;
    let exp_gql = Gql::new(exp_server.url("/graphql"));
    let (_, token) = test_user();
    for amount in ["12.34", "0.66"] {
        exp_gql
            .ok(
                "mutation($i: CreateExpenseInput!) { createExpense(input: $i) { id } }",
                json!({ "i": { "amount": amount, "category": "food", "description": "lunch" } }),
                Some(&token),
            )
            .await;
    }
    let q = "{ spendingTrends(months: 1) { totalSpent transactionCount } }";
    let arrived = wait_until(Duration::from_secs(15), || async {
        s.q(&token, q).await["spendingTrends"][0]["totalSpent"] == "13.00"
    })
    .await;
    assert!(arrived, "{}", s.q(&token, q).await);
    drop(exp);
}

#[tokio::test]
async fn the_weekly_summary_is_made_once_per_user_and_week_at_the_local_hour_even_with_two_instances()
 {
    // Sunday 2024-03-10 17:30 in New York (EDT, UTC-4): before the 18:00 run.
    let s = start_at(at(2024, 3, 10, 21, 30)).await;
    let (u, token) = test_user();
    s.users.set(&u, "USD", "America/New_York");
    s.spend(&u, 2000, "food", "2024-03-04").await;
    s.spend(&u, 1000, "fun", "2024-03-10").await;
    s.spend(&u, 5000, "rent", "2024-03-03").await; // the week before
    // Using analytics once lets the job know the user's timezone.
    s.q(&token, "{ spendingTrends(months: 1) { month } }").await;

    let (sink, sink_server) = EventSink::start(TEST_SERVICE_TOKEN).await;
    let mut settings = weekly_settings(&s, &sink_server);
    settings.weekly.interval = Duration::from_secs(3600);
    let clock = settings.clock.clone();
    let a = kit::bootstrap::start::<analytics::service::Analytics>(&settings, s.db.db.clone())
        .await
        .unwrap();
    let b = kit::bootstrap::start::<analytics::service::Analytics>(&settings, s.db.db.clone())
        .await
        .unwrap();
    let weekly = settings.weekly.clone();
    assert_eq!(a.run_weekly(&weekly, &a.events).await.unwrap(), 0);

    // 18:30 local: due. Both instances try, twice.
    clock.set(at(2024, 3, 10, 22, 30));
    let (ra, rb) = tokio::join!(
        a.run_weekly(&weekly, &a.events),
        b.run_weekly(&weekly, &b.events)
    );
    // (The instances' own background passes may have made it first.)
    assert!(ra.unwrap() + rb.unwrap() <= 1);
    assert_eq!(b.run_weekly(&weekly, &b.events).await.unwrap(), 0);
    // After a day of downtime, still only once.
    clock.set(at(2024, 3, 11, 22, 30));
    assert_eq!(a.run_weekly(&weekly, &a.events).await.unwrap(), 0);

    assert!(
        wait_until(Duration::from_secs(10), || async {
            !sink.events().is_empty()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = sink.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.kind, "weekly.summary");
    assert_eq!(e.user_id, u);
    assert_eq!(e.data["week"], "2024-W10");
    assert_eq!(e.data["spentMinor"], 3000);
    assert_eq!(
        e.data["message"],
        "You spent 30.00 USD this week; top category food (20.00 USD)."
    );
}

#[tokio::test]
async fn a_weekly_summary_missed_during_downtime_is_made_when_the_job_runs_again() {
    // The run was due Sunday 18:00 UTC; the job only looks again on Monday 09:00.
    let s = start_at(at(2024, 3, 11, 9, 0)).await;
    let (u, _) = test_user();
    s.spend(&u, 1234, "food", "2024-03-05").await;
    let (sink, sink_server) = EventSink::start(TEST_SERVICE_TOKEN).await;
    let settings = weekly_settings(&s, &sink_server);
    // Starting the service again is enough: its job looks at once.
    let a = kit::bootstrap::start::<analytics::service::Analytics>(&settings, s.db.db.clone())
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            sink.events().len() == 1
        })
        .await
    );
    let again = a.run_weekly(&settings.weekly, &a.events).await;
    assert_eq!(again.unwrap(), 0);
    // Give a second summary the chance to arrive: there is none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = sink.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["week"], "2024-W10");
    assert_eq!(events[0].data["spentMinor"], 1234);
}

/// A stand-in for the budgets subgraph's `budgets` query: answers for one user's token.
async fn fake_budgets(token: &str, budgets: Value) -> TestServer {
    let expected = format!("Bearer {token}");
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let ok = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == expected);
            let budgets = budgets.clone();
            async move {
                if ok {
                    axum::Json(json!({ "data": { "budgets": budgets } }))
                } else {
                    axum::Json(json!({ "data": null, "errors": [{ "message": "no" }] }))
                }
            }
        }),
    );
    TestServer::start(app).await
}

#[tokio::test]
async fn the_budget_pace_insight_names_the_day_a_budget_runs_out_from_the_budgets_subgraph() {
    let (_, token) = test_user();
    let budgets = fake_budgets(
        &token,
        json!([
            { "category": "food", "amount": "300.00", "currency": "USD", "periodStart": "2024-11-01",
              "periodEnd": "2024-11-30", "spent": "100.00" },
            { "category": "fun", "amount": "300.00", "currency": "USD", "periodStart": "2024-11-01",
              "periodEnd": "2024-11-30", "spent": "10.00" },
            { "category": "rent", "amount": "300.00", "currency": "EUR", "periodStart": "2024-11-01",
              "periodEnd": "2024-11-30", "spent": "299.00" },
        ]),
    )
    .await;
    let s = start_with(at(2024, 11, 8, 12, 0), |st| {
        st.budgets_url = budgets.url("/graphql");
    })
    .await;
    let d = s
        .gql
        .ok(
            "{ insights { kind message severity figures { name value } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let pace: Vec<&Value> = d["insights"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "BUDGET_PACE")
        .collect();
    assert_eq!(pace.len(), 1, "{d}");
    // 100.00 in 8 days is 12.50 a day: 300.00 is reached on the 24th.
    assert!(
        pace[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("At this pace your food budget runs out on Nov 24"),
        "{}",
        pace[0]
    );
    assert!(
        pace[0]["figures"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "dailyPace", "value": "12.50" }))
    );
    // Another user's token gets nothing from the budgets subgraph, so no pace insight.
    let (_, other) = test_user();
    let d = s
        .gql
        .ok("{ insights { kind } }", json!({}), Some(&other))
        .await;
    assert_eq!(d["insights"], json!([]));
}

#[tokio::test]
async fn no_weekly_summary_is_made_for_a_week_without_spending() {
    // Monday morning: last week's summary is due, but this user's first expense is
    // today (a new account), so last week has nothing to say.
    let s = start_at(at(2024, 3, 11, 9, 0)).await;
    let (u, _) = test_user();
    s.spend(&u, 1234, "food", "2024-03-11").await;
    let (sink, sink_server) = EventSink::start(TEST_SERVICE_TOKEN).await;
    let settings = weekly_settings(&s, &sink_server);
    let a = kit::bootstrap::start::<analytics::service::Analytics>(&settings, s.db.db.clone())
        .await
        .unwrap();
    assert_eq!(a.run_weekly(&settings.weekly, &a.events).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.events().is_empty(), "{:?}", sink.events());
}
