#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The budgets subgraph end to end: the real expenses subgraph sends its events over
//! HTTP to the real budgets subgraph, which sends alert events to a stand-in for the
//! notifications subgraph. Each service has its own database on the real server.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kit::clock::Clock;
use kit::events::{Consumer, DispatchSettings, Event, SERVICE_TOKEN_HEADER};
use kit::testing::{
    CommandLog, EventSink, FakeUsers, Gql, TEST_SERVICE_TOKEN, TestDb, TestServer,
    assert_sdl_matches_committed, first_error_code, test_config, test_user, wait_until,
};
use serde_json::{Value, json};

struct Budgets {
    service: budgets::Service,
    server: TestServer,
}

struct Stack {
    users: FakeUsers,
    _users_server: TestServer,
    notifications: EventSink,
    _notifications_server: TestServer,
    budgets_settings: budgets::Settings,
    budgets_db: TestDb,
    /// The commands the budgets service sent to its database.
    budgets_log: CommandLog,
    budgets: Option<Budgets>,
    budgets_port: u16,
    budgets_gql: Gql,
    _expenses: expenses::Service,
    _expenses_server: TestServer,
    _expenses_db: TestDb,
    expenses_gql: Gql,
}

const TIMEOUT: Duration = Duration::from_secs(15);

async fn start_at(now: Option<DateTime<Utc>>) -> Stack {
    let clock = now.map(Clock::fixed).unwrap_or_else(Clock::system);
    let (users, users_server) = FakeUsers::start().await;
    let (notifications, notifications_server) = EventSink::start(TEST_SERVICE_TOKEN).await;

    let config = test_config(budgets::SERVICE);
    let (budgets_db, budgets_log) = TestDb::logged(&config).await;
    let mut budgets_settings = budgets::Settings::from_vars(&[("X", "")], config).unwrap();
    budgets_settings.users.url = users_server.url("/graphql");
    budgets_settings.users.ttl = Duration::from_millis(200);
    budgets_settings.consumers = vec![Consumer {
        name: "notifications".into(),
        url: notifications_server.url(""),
    }];
    budgets_settings.dispatch = DispatchSettings::fast();
    budgets_settings.clock = clock.clone();
    let service = kit::bootstrap::start::<budgets::service::Budgets>(
        &budgets_settings,
        budgets_db.db.clone(),
    )
    .await
    .unwrap();
    let server = TestServer::start(service.router.clone()).await;
    let budgets_port = server.addr.port();
    let budgets_gql = Gql::new(server.url("/graphql"));

    let config = test_config(expenses::SERVICE);
    let expenses_db = TestDb::new(&config).await;
    let mut s = expenses::Settings::from_vars(&[("X", "")], config).unwrap();
    s.users.url = users_server.url("/graphql");
    s.consumers = vec![Consumer {
        name: "budgets".into(),
        url: server.url(""),
    }];
    s.dispatch = DispatchSettings::fast();
    s.clock = clock;
    let expenses_service =
        kit::bootstrap::start::<expenses::service::Expenses>(&s, expenses_db.db.clone())
            .await
            .unwrap();
    let expenses_server = TestServer::start(expenses_service.router.clone()).await;
    Stack {
        users,
        _users_server: users_server,
        notifications,
        _notifications_server: notifications_server,
        budgets_settings,
        budgets_db,
        budgets_log,
        budgets: Some(Budgets { service, server }),
        budgets_port,
        budgets_gql,
        _expenses: expenses_service,
        expenses_gql: Gql::new(expenses_server.url("/graphql")),
        _expenses_server: expenses_server,
        _expenses_db: expenses_db,
    }
}

async fn start() -> Stack {
    start_at(None).await
}

const BUDGET_FIELDS: &str = "id category amount currency period alertThresholds periodStart periodEnd spent remaining percentUsed uncountedExpenses alerts { id threshold percentUsed severity message periodStart read }";

impl Stack {
    async fn stop_budgets(&mut self) {
        let b = self.budgets.take().unwrap();
        b.server.stop().await;
        drop(b.service);
    }

    async fn restart_budgets(&mut self) {
        let service = kit::bootstrap::start::<budgets::service::Budgets>(
            &self.budgets_settings,
            self.budgets_db.db.clone(),
        )
        .await
        .unwrap();
        let server = TestServer::start_on_port(self.budgets_port, service.router.clone()).await;
        self.budgets = Some(Budgets { service, server });
    }

    async fn create_budget(&self, token: &str, input: Value) -> Value {
        let q = format!(
            "mutation($input: CreateBudgetInput!) {{ createBudget(input: $input) {{ {BUDGET_FIELDS} }} }}"
        );
        self.budgets_gql
            .ok(&q, json!({ "input": input }), Some(token))
            .await["createBudget"]
            .clone()
    }

    async fn budget(&self, token: &str, id: &Value) -> Value {
        let q = format!("query($id: ID!) {{ budget(id: $id) {{ {BUDGET_FIELDS} }} }}");
        self.budgets_gql
            .ok(&q, json!({ "id": id }), Some(token))
            .await["budget"]
            .clone()
    }

    async fn spend(&self, token: &str, input: Value) -> Value {
        let q =
            "mutation($input: CreateExpenseInput!) { createExpense(input: $input) { id date } }";
        self.expenses_gql
            .ok(q, json!({ "input": input }), Some(token))
            .await["createExpense"]
            .clone()
    }

    /// Waits until the budget's `spent` is `want`, gives a duplicate delivery, a late
    /// event or a late alert the chance to show up, and returns the budget, whose
    /// `spent` must still be `want`.
    async fn wait_spent(&self, token: &str, id: &Value, want: &str) -> Value {
        let ok = wait_until(TIMEOUT, || async {
            self.budget(token, id).await["spent"] == want
        })
        .await;
        let b = self.budget(token, id).await;
        assert!(ok, "spent never reached {want}: {b:#}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let b = self.budget(token, id).await;
        assert_eq!(b["spent"], want, "spent moved on from {want}: {b:#}");
        b
    }

    async fn update_expense(&self, token: &str, id: &Value, input: Value) {
        let q = "mutation($id: ID!, $input: UpdateExpenseInput!) { updateExpense(id: $id, input: $input) { id } }";
        self.expenses_gql
            .ok(q, json!({ "id": id, "input": input }), Some(token))
            .await;
    }

    async fn delete_expense(&self, token: &str, id: &Value) {
        let q = "mutation($id: ID!) { deleteExpense(id: $id) }";
        let d = self
            .expenses_gql
            .ok(q, json!({ "id": id }), Some(token))
            .await;
        assert_eq!(d["deleteExpense"], true);
    }

    /// The error code of a budgets operation done with `token`.
    async fn budgets_error(&self, query: &str, vars: Value, token: &str) -> String {
        self.budgets_gql.error_code(query, vars, Some(token)).await
    }

    /// Posts `body` to the budgets subgraph's event endpoint with one credential header.
    async fn post_event(&self, header: (&str, &str), body: &Event) -> reqwest::StatusCode {
        let url = self
            .budgets
            .as_ref()
            .unwrap()
            .server
            .url("/internal/events");
        reqwest::Client::new()
            .post(url)
            .header(header.0, header.1)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    fn alert_events(&self) -> Vec<Event> {
        self.notifications
            .events()
            .into_iter()
            .filter(|e| e.kind == "budget.alert")
            .collect()
    }

    /// Waits for `n` alert events, gives a duplicate the chance to show up, and
    /// returns them: exactly `n`.
    async fn settled_alert_events(&self, n: usize) -> Vec<Event> {
        let arrived = wait_until(TIMEOUT, || async { self.alert_events().len() >= n }).await;
        assert!(arrived, "{:#?}", self.alert_events());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = self.alert_events();
        assert_eq!(events.len(), n, "{events:#?}");
        events
    }

    /// How many documents of the expenses database still wait to reach `consumer`.
    async fn expenses_pending_for(&self, consumer: &str) -> u64 {
        self._expenses_db
            .db
            .collection::<mongodb::bson::Document>("expenses")
            .count_documents(mongodb::bson::doc! { "outboxPending.c": consumer })
            .await
            .unwrap()
    }
}

const SERVICE_TOKEN: (&str, &str) = (SERVICE_TOKEN_HEADER, TEST_SERVICE_TOKEN);

/// The thresholds of the default alerts once both are crossed.
fn warning_and_critical() -> [(i64, String); 2] {
    [(80, "WARNING".into()), (100, "CRITICAL".into())]
}

fn thresholds_of(budget: &Value) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = budget["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["threshold"].as_i64().unwrap(),
                a["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn sdl_matches_committed_file() {
    assert_sdl_matches_committed(
        budgets::SERVICE,
        &kit::bootstrap::sdl::<budgets::service::Budgets>().unwrap(),
    );
}

#[tokio::test]
async fn the_original_example_alerts_at_85_percent_then_critical_at_105() {
    let s = start().await;
    let (_, token) = test_user();
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    assert_eq!(b["alertThresholds"], json!([80, 100]));
    assert_eq!(b["period"], "MONTHLY");
    assert_eq!(b["spent"], "0.00");
    let id = &b["id"];
    s.spend(
        &token,
        json!({ "amount": "50", "category": "food", "description": "groceries" }),
    )
    .await;
    s.spend(
        &token,
        json!({ "amount": "35", "category": "food", "description": "dinner" }),
    )
    .await;
    let b = s.wait_spent(&token, id, "85.00").await;
    assert_eq!(b["percentUsed"], 85.0);
    assert_eq!(b["remaining"], "15.00");
    assert_eq!(thresholds_of(&b), [(80, "WARNING".to_string())]);
    assert_eq!(b["alerts"][0]["percentUsed"], 85.0);
    assert!(b["alerts"][0]["message"].as_str().unwrap().contains("85%"));

    s.spend(
        &token,
        json!({ "amount": "20", "category": "food", "description": "snacks" }),
    )
    .await;
    let b = s.wait_spent(&token, id, "105.00").await;
    assert_eq!(b["remaining"], "-5.00");
    assert_eq!(thresholds_of(&b), warning_and_critical());
    let critical = b["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["threshold"] == 100)
        .unwrap()
        .clone();
    assert_eq!(critical["percentUsed"], 105.0);

    // Each alert reaches the notifications subgraph once.
    let events = s.settled_alert_events(2).await;
    assert_eq!(events[0].data["threshold"], 80);
    assert_eq!(events[1].data["threshold"], 100);
    assert_eq!(events[1].data["severity"], "CRITICAL");
}

#[tokio::test]
async fn the_largest_amounts_sum_exactly_and_later_expenses_still_count_and_alert() {
    let s = start().await;
    let (_, token) = test_user();
    let overall = s.create_budget(&token, json!({ "amount": "1000" })).await;
    let food = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    for _ in 0..2 {
        s.spend(
            &token,
            json!({ "amount": "9999999999999.99", "category": "rent", "description": "castle" }),
        )
        .await;
    }
    let b = s
        .wait_spent(&token, &overall["id"], "19999999999999.98")
        .await;
    assert_eq!(b["remaining"], "-19999999998999.98");
    assert_eq!(
        b["percentUsed"], 2_000_000_000_000.0,
        "rounded to two decimals"
    );
    assert_eq!(thresholds_of(&b), warning_and_critical());

    // The user's next, small expense is applied like any other: it moves the overall
    // spending by its exact amount and raises the food budget's alert.
    s.spend(
        &token,
        json!({ "amount": "90", "category": "food", "description": "dinner" }),
    )
    .await;
    s.wait_spent(&token, &overall["id"], "20000000000089.98")
        .await;
    let f = s.wait_spent(&token, &food["id"], "90.00").await;
    assert_eq!(thresholds_of(&f), [(80, "WARNING".to_string())]);
    s.settled_alert_events(3).await;
    let parked = kit::testing::dead_letters(&s.budgets.as_ref().unwrap().server).await;
    assert_eq!(parked["total"], 0, "no event was parked: {parked:#}");
}

#[tokio::test]
async fn income_and_other_categories_do_not_count_and_moves_and_deletes_follow_the_expense() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let (_, token) = test_user();
    let food = s
        .create_budget(&token, json!({ "category": "Food", "amount": "100" }))
        .await;
    let all = s
        .create_budget(&token, json!({ "amount": "1000", "alertThresholds": [90] }))
        .await;
    assert_eq!(all["category"], Value::Null);
    s.spend(
        &token,
        json!({ "amount": "10", "category": "food", "description": "a" }),
    )
    .await;
    s.spend(
        &token,
        json!({ "amount": "500", "type": "INCOME", "category": "salary", "description": "pay" }),
    )
    .await;
    let rent = s
        .spend(
            &token,
            json!({ "amount": "300", "category": "rent", "description": "rent" }),
        )
        .await;
    // Last month does not count in this month's budget.
    s.spend(
        &token,
        json!({ "amount": "7", "category": "food", "description": "old", "date": "2024-02-29" }),
    )
    .await;
    // A currency without a rate is not added, but shown as uncounted.
    s.spend(
        &token,
        json!({ "amount": "5", "currency": "KWD", "category": "food", "description": "kwd" }),
    )
    .await;
    s.wait_spent(&token, &all["id"], "310.00").await;
    let f = s.wait_spent(&token, &food["id"], "10.00").await;
    assert_eq!(f["uncountedExpenses"], 1);

    // Moving the rent expense into food moves its amount; deleting removes it.
    s.update_expense(&token, &rent["id"], json!({ "category": "food" }))
        .await;
    s.wait_spent(&token, &food["id"], "310.00").await;
    let b = s.budget(&token, &food["id"]).await;
    assert_eq!(thresholds_of(&b), warning_and_critical());
    // Moving it to another month takes it out of this period.
    s.update_expense(&token, &rent["id"], json!({ "date": "2024-01-15" }))
        .await;
    s.wait_spent(&token, &food["id"], "10.00").await;
    s.delete_expense(&token, &rent["id"]).await;
    let a = s.wait_spent(&token, &all["id"], "10.00").await;
    assert_eq!(a["alerts"], json!([]));
}

/// An `expense.created` (or, with `deleted`, `expense.deleted`) event of `user`.
fn expense_event(user: &str, id: &str, minor: i64, category: &str, deleted: bool) -> Event {
    let snapshot = json!({ "type": "EXPENSE", "amountMinor": minor, "currency": "USD",
        "category": category, "categoryKey": category, "date": "2024-03-02" });
    let (kind, data) = if deleted {
        (
            "expense.deleted",
            json!({ "expenseId": id, "version": 2, "before": snapshot, "after": null }),
        )
    } else {
        (
            "expense.created",
            json!({ "expenseId": id, "version": 1, "before": null, "after": snapshot }),
        )
    };
    Event::new(kind, user, Utc::now(), data)
}

#[tokio::test]
async fn poison_events_are_parked_and_huge_spending_is_applied_not_parked() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let server = &s.budgets.as_ref().unwrap().server;
    let (user, token) = test_user();
    let food = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    let rent = s
        .create_budget(&token, json!({ "category": "rent", "amount": "100" }))
        .await;
    let valid = expense_event(&user, &kit::ids::new_id(), 4000, "food", false);
    kit::testing::assert_poison_events_are_parked(server, &valid).await;
    // The same user's next valid event is applied at once.
    assert_eq!(s.post_event(SERVICE_TOKEN, &valid).await, 200);
    assert_eq!(s.budget(&token, &food["id"]).await["spent"], "40.00");

    // Two huge expenses take the period past the largest single amount: both are
    // applied (the spending is an exact 128-bit sum), nothing is parked, and a later
    // event still moves the rent budget.
    let huge = 900_000_000_000_000; // 9,000,000,000,000.00
    let huge_a = expense_event(&user, &kit::ids::new_id(), huge, "food", false);
    let huge_b = expense_event(&user, &kit::ids::new_id(), huge, "food", false);
    let parked_before = kit::testing::dead_letters(server).await["total"].clone();
    assert_eq!(s.post_event(SERVICE_TOKEN, &huge_a).await, 200);
    assert_eq!(s.post_event(SERVICE_TOKEN, &huge_b).await, 200);
    assert_eq!(
        kit::testing::dead_letters(server).await["total"],
        parked_before
    );
    assert_eq!(
        s.budget(&token, &food["id"]).await["spent"],
        "18000000000040.00"
    );
    let small = expense_event(&user, &kit::ids::new_id(), 1000, "rent", false);
    assert_eq!(s.post_event(SERVICE_TOKEN, &small).await, 200);
    assert_eq!(s.budget(&token, &rent["id"]).await["spent"], "10.00");
    // Exactly once: the producer sending an event again does not count it twice.
    assert_eq!(s.post_event(SERVICE_TOKEN, &huge_b).await, 200);
    assert_eq!(
        s.budget(&token, &food["id"]).await["spent"],
        "18000000000040.00"
    );

    // While its cause stands, a re-drive keeps a poison event parked and counts the
    // attempt (the generic re-drive of a fixed cause is kit's test).
    let dead = kit::testing::dead_letters(server).await;
    let poison = dead["deadLetters"][0]["id"].as_str().unwrap().to_owned();
    let (status, out) = kit::testing::redrive(server, &poison).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("PARKED")),
        "{out}"
    );
    let applied =
        kit::testing::metric(server, "events_received_total", &[("outcome", "applied")]).await;
    assert!(applied >= 4.0, "applied events are counted: {applied}");
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing_and_only_the_service_credential_is_accepted() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let (user, token) = test_user();
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    let event = Event::new(
        "expense.created",
        &user,
        Utc::now(),
        json!({ "expenseId": kit::ids::new_id(), "version": 1, "before": null,
                "after": { "type": "EXPENSE", "amountMinor": 4000, "currency": "USD",
                           "category": "food", "categoryKey": "food", "date": "2024-03-02" } }),
    );
    for _ in 0..3 {
        assert_eq!(s.post_event(SERVICE_TOKEN, &event).await, 200);
    }
    // The same change under a new event id (a producer retry) is applied once too.
    let mut again = event.clone();
    again.id = kit::ids::EventId::new();
    assert_eq!(s.post_event(SERVICE_TOKEN, &again).await, 200);
    assert_eq!(s.budget(&token, &b["id"]).await["spent"], "40.00");

    for (header, value) in [
        (SERVICE_TOKEN_HEADER, "wrong"),
        ("authorization", &format!("Bearer {token}")[..]),
    ] {
        let mut other = event.clone();
        other.id = kit::ids::EventId::new();
        other.data["expenseId"] = json!(kit::ids::new_id());
        assert_eq!(s.post_event((header, value), &other).await, 401);
    }
    let r = reqwest::Client::new()
        .post(s.budgets.as_ref().unwrap().server.url("/internal/events"))
        .header(SERVICE_TOKEN.0, SERVICE_TOKEN.1)
        .body("{")
        .send()
        .await
        .unwrap();
    // Not even an envelope: acknowledged (a refusal would be retried forever) and kept
    // as a dead letter with the reason.
    assert_eq!(r.status(), 200);
    let dead = kit::testing::dead_letters(&s.budgets.as_ref().unwrap().server).await;
    assert_eq!(dead["total"], 1, "{dead}");
    assert_eq!(dead["deadLetters"][0]["reason"], "unreadable");
    assert_eq!(dead["deadLetters"][0]["event"], "{");
    assert_eq!(s.budget(&token, &b["id"]).await["spent"], "40.00");
}

#[tokio::test]
async fn one_expense_crossing_several_thresholds_raises_one_alert_each() {
    let s = start().await;
    let (_, token) = test_user();
    let b = s
        .create_budget(
            &token,
            json!({ "category": "shopping", "amount": "200", "alertThresholds": [100, 50, 75] }),
        )
        .await;
    assert_eq!(b["alertThresholds"], json!([50, 75, 100]));
    s.spend(
        &token,
        json!({ "amount": "250", "category": "shopping", "description": "tv" }),
    )
    .await;
    let b = s.wait_spent(&token, &b["id"], "250.00").await;
    assert_eq!(
        thresholds_of(&b),
        [
            (50, "WARNING".into()),
            (75, "WARNING".into()),
            (100, "CRITICAL".into())
        ]
    );
    assert!(
        b["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["percentUsed"] == 125.0)
    );
}

#[tokio::test]
async fn a_new_period_rearms_and_a_deleted_then_readded_expense_does_not_alert_twice() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let (_, token) = test_user();
    let b = s
        .create_budget(
            &token,
            json!({ "category": "food", "amount": "100", "alertThresholds": [80] }),
        )
        .await;
    let e = s
        .spend(
            &token,
            json!({ "amount": "90", "category": "food", "description": "feast" }),
        )
        .await;
    let b1 = s.wait_spent(&token, &b["id"], "90.00").await;
    assert_eq!(b1["alerts"].as_array().unwrap().len(), 1);
    s.delete_expense(&token, &e["id"]).await;
    s.wait_spent(&token, &b["id"], "0.00").await;
    s.spend(
        &token,
        json!({ "amount": "90", "category": "food", "description": "feast again" }),
    )
    .await;
    let b2 = s.wait_spent(&token, &b["id"], "90.00").await;
    assert_eq!(
        b2["alerts"].as_array().unwrap().len(),
        1,
        "same period: no second alert"
    );

    // April: a new period, the threshold alerts again.
    s.spend(
        &token,
        json!({ "amount": "85", "category": "food", "description": "april", "date": "2024-04-02" }),
    )
    .await;
    assert!(
        wait_until(TIMEOUT, || async {
            s.budget(&token, &b["id"]).await["alerts"]
                .as_array()
                .unwrap()
                .len()
                == 2
        })
        .await
    );
    let b3 = s.budget(&token, &b["id"]).await;
    let starts: Vec<&str> = b3["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["periodStart"].as_str().unwrap())
        .collect();
    assert!(
        starts.contains(&"2024-03-01") && starts.contains(&"2024-04-01"),
        "{starts:?}"
    );
}

#[tokio::test]
async fn raising_the_amount_rearms_thresholds_no_longer_reached() {
    let s = start().await;
    let (_, token) = test_user();
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    let id = b["id"].clone();
    s.spend(
        &token,
        json!({ "amount": "90", "category": "food", "description": "a" }),
    )
    .await;
    let b = s.wait_spent(&token, &id, "90.00").await;
    assert_eq!(thresholds_of(&b), [(80, "WARNING".into())]);
    let update = "mutation($id: ID!, $a: Decimal!) { updateBudget(id: $id, input: { amount: $a }) { id percentUsed } }";
    // 90 of 200 = 45 %: the 80 % threshold is armed again.
    s.budgets_gql
        .ok(update, json!({ "id": id, "a": "200" }), Some(&token))
        .await;
    s.spend(
        &token,
        json!({ "amount": "80", "category": "food", "description": "b" }),
    )
    .await;
    let b = s.wait_spent(&token, &id, "170.00").await;
    assert_eq!(
        thresholds_of(&b),
        [(80, "WARNING".into()), (80, "WARNING".into())]
    );
    // Lowering it below what is spent raises the thresholds now reached, once.
    s.budgets_gql
        .ok(update, json!({ "id": id, "a": "150" }), Some(&token))
        .await;
    s.budgets_gql
        .ok(update, json!({ "id": id, "a": "150" }), Some(&token))
        .await;
    let b = s.budget(&token, &id).await;
    assert_eq!(
        thresholds_of(&b),
        [
            (80, "WARNING".into()),
            (80, "WARNING".into()),
            (100, "CRITICAL".into())
        ]
    );
}

#[tokio::test]
async fn an_expense_at_2330_on_the_last_day_of_the_month_counts_in_that_month() {
    // 2024-02-01 04:30 UTC is 2024-01-31 23:30 in New York.
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 2, 1, 4, 30, 0).unwrap())).await;
    let (ny_id, ny) = test_user();
    s.users.set(&ny_id, "USD", "America/New_York");
    let b = s.create_budget(&ny, json!({ "amount": "100" })).await;
    assert_eq!(b["periodStart"], "2024-01-01");
    assert_eq!(b["periodEnd"], "2024-01-31");
    let e = s
        .spend(&ny, json!({ "amount": "30", "description": "late dinner" }))
        .await;
    assert_eq!(e["date"], "2024-01-31");
    s.wait_spent(&ny, &b["id"], "30.00").await;

    // The same instant for a user in UTC is already February.
    let (_, utc) = test_user();
    let b = s.create_budget(&utc, json!({ "amount": "100" })).await;
    assert_eq!(b["periodStart"], "2024-02-01");
    let e = s
        .spend(&utc, json!({ "amount": "30", "description": "breakfast" }))
        .await;
    assert_eq!(e["date"], "2024-02-01");
    s.wait_spent(&utc, &b["id"], "30.00").await;
}

#[tokio::test]
async fn weekly_budgets_run_monday_to_sunday() {
    // Sunday 2024-03-17.
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 17, 12, 0, 0).unwrap())).await;
    let (_, token) = test_user();
    let b = s
        .create_budget(&token, json!({ "amount": "50", "period": "WEEKLY" }))
        .await;
    assert_eq!(b["periodStart"], "2024-03-11");
    assert_eq!(b["periodEnd"], "2024-03-17");
    s.spend(
        &token,
        json!({ "amount": "5", "description": "mon", "date": "2024-03-11" }),
    )
    .await;
    s.spend(
        &token,
        json!({ "amount": "7", "description": "prev sun", "date": "2024-03-10" }),
    )
    .await;
    s.wait_spent(&token, &b["id"], "5.00").await;
}

#[tokio::test]
async fn yearly_budgets_cover_the_calendar_year_in_the_users_timezone() {
    // 2023-12-31 15:30 UTC is already 2024-01-01 00:30 in Tokyo.
    let s = start_at(Some(Utc.with_ymd_and_hms(2023, 12, 31, 15, 30, 0).unwrap())).await;
    let (tokyo_id, tokyo) = test_user();
    s.users.set(&tokyo_id, "USD", "Asia/Tokyo");
    let b = s
        .create_budget(&tokyo, json!({ "amount": "1000", "period": "YEARLY" }))
        .await;
    assert_eq!(b["periodStart"], "2024-01-01");
    assert_eq!(b["periodEnd"], "2024-12-31");
    let e = s
        .spend(&tokyo, json!({ "amount": "10", "description": "new year" }))
        .await;
    assert_eq!(e["date"], "2024-01-01");
    s.spend(
        &tokyo,
        json!({ "amount": "20", "description": "december", "date": "2024-12-31" }),
    )
    .await;
    s.spend(
        &tokyo,
        json!({ "amount": "7", "description": "last year", "date": "2023-12-31" }),
    )
    .await;
    s.wait_spent(&tokyo, &b["id"], "30.00").await;

    // For a user in UTC the same instant is still 2023.
    let (_, utc) = test_user();
    let b = s
        .create_budget(&utc, json!({ "amount": "1000", "period": "YEARLY" }))
        .await;
    assert_eq!(b["periodStart"], "2023-01-01");
    assert_eq!(b["periodEnd"], "2023-12-31");
}

#[tokio::test]
async fn while_budgets_is_down_expenses_wait_and_it_catches_up_with_one_alert_each() {
    let mut s = start().await;
    let (_, token) = test_user();
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    s.stop_budgets().await;
    for amount in ["50", "35", "20"] {
        s.spend(
            &token,
            json!({ "amount": amount, "category": "food", "description": "while down" }),
        )
        .await;
    }
    // The three expenses keep their events while nobody takes them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.expenses_pending_for("budgets").await, 3);
    s.restart_budgets().await;
    let b = s.wait_spent(&token, &b["id"], "105.00").await;
    assert_eq!(thresholds_of(&b), warning_and_critical());
    s.settled_alert_events(2).await;
    assert_eq!(s.expenses_pending_for("budgets").await, 0);
}

#[tokio::test]
async fn while_notifications_is_down_alerts_are_kept_and_delivered_once_it_returns() {
    let s = start().await;
    let (_, token) = test_user();
    s.notifications.refuse(true);
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "10" }))
        .await;
    s.spend(
        &token,
        json!({ "amount": "12", "category": "food", "description": "x" }),
    )
    .await;
    let b = s.wait_spent(&token, &b["id"], "12.00").await;
    assert_eq!(b["alerts"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.alert_events().is_empty());
    let pending = s
        .budgets_db
        .db
        .collection::<mongodb::bson::Document>("alerts")
        .count_documents(mongodb::bson::doc! { "outboxPending.c": "notifications" })
        .await
        .unwrap();
    assert_eq!(pending, 2, "the alert events are stored until delivered");
    s.notifications.refuse(false);
    let events = s.settled_alert_events(2).await;
    assert_ne!(events[0].data["alertId"], events[1].data["alertId"]);
}

#[tokio::test]
async fn fifty_concurrent_expenses_give_the_right_spent_and_one_alert_per_threshold() {
    let s = start().await;
    let (_, token) = test_user();
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "100" }))
        .await;
    let requests = (0..50).map(|i| {
        let gql = s.expenses_gql.clone();
        let token = token.clone();
        async move {
            let q = "mutation($input: CreateExpenseInput!) { createExpense(input: $input) { id } }";
            gql.ok(
                q,
                json!({ "input": { "amount": "3.01", "category": "food", "description": format!("n{i}") } }),
                Some(&token),
            )
            .await
        }
    });
    futures::future::join_all(requests).await;
    let b = s.wait_spent(&token, &b["id"], "150.50").await;
    assert_eq!(thresholds_of(&b), warning_and_critical());
    s.settled_alert_events(2).await;
}

#[tokio::test]
async fn budget_rules_refuse_bad_input_and_other_peoples_budgets() {
    let s = start().await;
    let (_, token) = test_user();
    let q = "mutation($input: CreateBudgetInput!) { createBudget(input: $input) { id } }";
    for (input, field) in [
        (json!({ "amount": "0" }), "amount"),
        (json!({ "amount": "-1" }), "amount"),
        (json!({ "amount": "1.001" }), "amount"),
        (json!({ "amount": "10", "currency": "ZZZ" }), "currency"),
        (
            json!({ "amount": "10", "alertThresholds": [0] }),
            "alertThresholds",
        ),
        (
            json!({ "amount": "10", "alertThresholds": [1001] }),
            "alertThresholds",
        ),
        (
            json!({ "amount": "10", "alertThresholds": [1, 2, 3, 4, 5, 6] }),
            "alertThresholds",
        ),
        (json!({ "amount": "10", "category": "  " }), "category"),
    ] {
        let body = s
            .budgets_gql
            .request(q, json!({ "input": input }), Some(&token))
            .await;
        assert_eq!(first_error_code(&body), "VALIDATION_FAILED", "{input}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{input}");
    }
    let b = s
        .create_budget(&token, json!({ "category": "food", "amount": "10" }))
        .await;
    assert_eq!(
        s.budgets_error(
            q,
            json!({ "input": { "category": "FOOD", "amount": "5" } }),
            &token
        )
        .await,
        "CONFLICT"
    );
    // A weekly food budget is a different budget.
    s.create_budget(
        &token,
        json!({ "category": "food", "amount": "500", "period": "WEEKLY" }),
    )
    .await;

    let (_, other) = test_user();
    assert_eq!(s.budget(&other, &b["id"]).await, Value::Null);
    let upd = "mutation($id: ID!) { updateBudget(id: $id, input: { amount: \"1\" }) { id } }";
    assert_eq!(
        s.budgets_error(upd, json!({ "id": b["id"] }), &other).await,
        "NOT_FOUND"
    );
    let del = "mutation($id: ID!) { deleteBudget(id: $id) }";
    assert_eq!(
        s.budgets_error(del, json!({ "id": b["id"] }), &other).await,
        "NOT_FOUND"
    );
    let all = s
        .budgets_gql
        .ok("{ budgets { id } }", json!({}), Some(&other))
        .await;
    assert_eq!(all["budgets"], json!([]));

    // Alerts: only the owner reads and marks them.
    s.spend(
        &token,
        json!({ "amount": "9", "category": "food", "description": "x" }),
    )
    .await;
    let b = s.wait_spent(&token, &b["id"], "9.00").await;
    let alert_id = b["alerts"][0]["id"].clone();
    let mark = "mutation($id: ID!) { markBudgetAlertRead(id: $id) { id read } }";
    assert_eq!(
        s.budgets_error(mark, json!({ "id": alert_id }), &other)
            .await,
        "NOT_FOUND"
    );
    let unread = "{ budgetAlerts(unreadOnly: true) { id budget { id } } }";
    assert_eq!(
        s.budgets_gql.ok(unread, json!({}), Some(&token)).await["budgetAlerts"][0]["budget"]["id"],
        b["id"]
    );
    assert_eq!(
        s.budgets_gql.ok(unread, json!({}), Some(&other)).await["budgetAlerts"],
        json!([])
    );
    let marked = s
        .budgets_gql
        .ok(mark, json!({ "id": alert_id }), Some(&token))
        .await;
    assert_eq!(marked["markBudgetAlertRead"]["read"], true);
    assert_eq!(
        s.budgets_gql.ok(unread, json!({}), Some(&token)).await["budgetAlerts"],
        json!([])
    );
    let entities = r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on Budget { id } ... on BudgetAlert { id } } }"#;
    let reps = json!({ "r": [{ "__typename": "Budget", "id": b["id"] }, { "__typename": "BudgetAlert", "id": alert_id }] });
    assert_eq!(
        s.budgets_gql.ok(entities, reps.clone(), Some(&other)).await["_entities"],
        json!([null, null])
    );
    assert_eq!(
        s.budgets_gql.ok(entities, reps, Some(&token)).await["_entities"][1]["id"],
        alert_id
    );

    // Deleting frees the (category, period) slot and hides its alerts.
    assert_eq!(
        s.budgets_gql
            .ok(del, json!({ "id": b["id"] }), Some(&token))
            .await["deleteBudget"],
        true
    );
    assert_eq!(
        s.budgets_gql
            .ok("{ budgetAlerts { id } }", json!({}), Some(&token))
            .await["budgetAlerts"],
        json!([])
    );
    s.create_budget(&token, json!({ "category": "food", "amount": "10" }))
        .await;
}

#[tokio::test]
async fn other_currencies_are_converted_with_the_rates_table_which_an_admin_can_change() {
    let s = start().await;
    let (_, token) = test_user();
    let q = "mutation($n: String!) { createCategory(name: $n) { name } }";
    s.expenses_gql
        .ok(q, json!({ "n": "Travel" }), Some(&token))
        .await;
    let b = s
        .create_budget(&token, json!({ "category": "travel", "amount": "100" }))
        .await;
    // 46 EUR at 0.92 per USD is 50 USD; 4500 JPY at 150 per USD is 30 USD.
    s.spend(
        &token,
        json!({ "amount": "46", "currency": "EUR", "category": "other", "description": "x" }),
    )
    .await;
    s.spend(
        &token,
        json!({ "amount": "46", "currency": "EUR", "category": "travel", "description": "hotel" }),
    )
    .await;
    s.spend(&token, json!({ "amount": "4500", "currency": "JPY", "category": "travel", "description": "train" }))
        .await;
    let b1 = s.wait_spent(&token, &b["id"], "80.00").await;
    assert_eq!(b1["uncountedExpenses"], 0);
    assert_eq!(thresholds_of(&b1), [(80, "WARNING".into())]);

    let url = s.budgets.as_ref().unwrap().server.url("/internal/rates");
    let put_rate = |header: (&str, String), body: Value| {
        let req = reqwest::Client::new()
            .put(&url)
            .header(header.0, header.1)
            .json(&body);
        async move { req.send().await.unwrap().status() }
    };
    let service = || (SERVICE_TOKEN.0, SERVICE_TOKEN.1.to_string());
    let body = json!({ "currency": "eur", "perUsd": "0.5" });
    assert_eq!(
        put_rate(("authorization", format!("Bearer {token}")), body.clone()).await,
        401,
        "a user's token is not the service credential"
    );
    for bad in [
        json!({ "currency": "EUR", "perUsd": "0" }),
        json!({ "currency": "XX", "perUsd": "1" }),
    ] {
        assert_eq!(put_rate(service(), bad).await, 400);
    }
    assert_eq!(put_rate(service(), body).await, 200);
    // 46 EUR at 0.5 per USD is 92 USD.
    assert_eq!(s.budget(&token, &b["id"]).await["spent"], "122.00");
}

const ENTITIES: &str = "query($r: [_Any!]!) { _entities(representations: $r) {
    ... on Budget { id category spent }
    ... on BudgetAlert { id threshold budget { id } } } }";

impl Stack {
    /// Records an EXPENSE of `minor` cents in `category` on 2024-03-02 for `user`.
    async fn expense_for(&self, user: &str, minor: i64, category: &str) {
        let event = expense_event(user, &kit::ids::new_id(), minor, category, false);
        assert_eq!(self.post_event(SERVICE_TOKEN, &event).await, 200);
    }

    /// How many `find` commands the budgets service sent on `collection` to answer
    /// (the event dispatcher's reads of pending alert events aside).
    fn finds(&self, collection: &str) -> usize {
        self.budgets_log.count_where("find", collection, |c| {
            c.get_document("filter")
                .is_ok_and(|f| !f.contains_key("outboxPending.c"))
        })
    }

    /// Asserts that the reads since the log was cleared are at most `ledger`, `alerts`
    /// and `budgets` on each collection.
    fn assert_reads_at_most(&self, ledger: usize, alerts: usize, budgets: usize) {
        let got = (
            self.finds("ledger"),
            self.finds("alerts"),
            self.finds("budgets"),
        );
        assert!(
            got.0 <= ledger && got.1 <= alerts && got.2 <= budgets,
            "(ledger, alerts, budgets) reads: {got:?}, at most {:?}",
            (ledger, alerts, budgets)
        );
    }
}

#[tokio::test]
async fn a_page_of_budgets_with_their_alerts_costs_a_bounded_number_of_queries() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let (user, token) = test_user();
    let categories = ["food", "transport", "rent", "fun", "books", "health"];
    for c in categories {
        s.create_budget(&token, json!({ "category": c, "amount": "100" }))
            .await;
    }
    // Every budget at 90% of its amount: one WARNING alert each.
    for c in categories {
        s.expense_for(&user, 9000, c).await;
    }
    // The alerts delivered and the dispatcher's kept leases given back, so its own
    // reads of the alerts fall outside what is counted here.
    s.settled_alert_events(categories.len()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    s.budgets_log.clear();
    let data = s
        .budgets_gql
        .ok(
            "{ budgets { id category spent alerts { threshold budget { id spent } } }
               budgetAlerts { threshold budget { id category spent } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let budgets = data["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), categories.len(), "{data:#}");
    for (b, c) in budgets.iter().zip(categories) {
        assert_eq!(b["category"], c, "{data:#}");
        assert_eq!(b["spent"], "90.00", "{data:#}");
        assert_eq!(
            b["alerts"],
            json!([{ "threshold": 80, "budget": { "id": b["id"], "spent": "90.00" } }]),
            "{data:#}"
        );
    }
    let alerts = data["budgetAlerts"].as_array().unwrap();
    assert_eq!(alerts.len(), categories.len(), "{data:#}");
    for a in alerts {
        assert_eq!(a["budget"]["spent"], "90.00", "{data:#}");
    }
    // One read per kind of data asked for, not one per budget or alert (which would be
    // 6 ledger reads for the list, 6 for the alerts' budgets and 6 more for the page of
    // alerts). Measured: 3 ledger, 2 alerts, 4 budgets reads; room is left for a batch
    // split in two when the caller's profile is fetched again between resolvers.
    s.assert_reads_at_most(5, 3, 6);
}

#[tokio::test]
async fn entities_resolve_in_one_batch_in_order_with_other_peoples_and_unknown_ids_null() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let (user, token) = test_user();
    let (other_user, other_token) = test_user();
    let mut mine = Vec::new();
    for c in ["food", "transport", "rent"] {
        mine.push(
            s.create_budget(&token, json!({ "category": c, "amount": "100" }))
                .await["id"]
                .clone(),
        );
        s.expense_for(&user, 8500, c).await;
    }
    let theirs = s
        .create_budget(&other_token, json!({ "category": "food", "amount": "100" }))
        .await["id"]
        .clone();
    s.expense_for(&other_user, 9000, "food").await;
    let alert_of = |token: &str| {
        let token = token.to_owned();
        let gql = s.budgets_gql.clone();
        async move {
            gql.ok(
                "{ budgetAlerts { id budget { id } } }",
                json!({}),
                Some(&token),
            )
            .await["budgetAlerts"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let my_alerts = alert_of(&token).await;
    assert_eq!(my_alerts.len(), 3);
    let their_alert = alert_of(&other_token).await[0]["id"].clone();

    let budget = |id: &Value| json!({ "__typename": "Budget", "id": id });
    let alert = |id: &Value| json!({ "__typename": "BudgetAlert", "id": id });
    let unknown = json!(contract::ids::BudgetId::new().to_string());
    let reps = json!([
        budget(&mine[2]),
        budget(&unknown),
        budget(&theirs),
        budget(&mine[0]),
        budget(&json!("not an id")),
        budget(&mine[1]),
        alert(&my_alerts[1]["id"]),
        alert(&their_alert),
        alert(&json!(contract::ids::AlertId::new().to_string())),
        alert(&my_alerts[0]["id"]),
    ]);
    s.budgets_log.clear();
    let data = s
        .budgets_gql
        .ok(ENTITIES, json!({ "r": reps }), Some(&token))
        .await;
    let b = |id: &Value, c: &str| json!({ "id": id, "category": c, "spent": "85.00" });
    let a = |v: &Value| json!({ "id": v["id"], "threshold": 80, "budget": { "id": v["budget"]["id"] } });
    assert_eq!(
        data["_entities"],
        json!([
            b(&mine[2], "rent"),
            null,
            null,
            b(&mine[0], "food"),
            null,
            b(&mine[1], "transport"),
            a(&my_alerts[1]),
            null,
            null,
            a(&my_alerts[0]),
        ]),
        "{data:#}"
    );
    // Six budget and four alert representations: a bounded number of reads, not one
    // (plus a ledger read) per representation.
    // Measured: 2 ledger, 1 alerts, 2 budgets reads (before batching: 5, 4 and 7).
    s.assert_reads_at_most(3, 2, 3);
}

#[tokio::test]
async fn an_expense_event_reads_the_ledger_once_for_the_budgets_it_can_move() {
    let s = start_at(Some(Utc.with_ymd_and_hms(2024, 3, 20, 12, 0, 0).unwrap())).await;
    let (user, token) = test_user();
    let mut moved = Vec::new();
    for (category, period) in [
        (json!("food"), "WEEKLY"),
        (json!("food"), "MONTHLY"),
        (json!("food"), "YEARLY"),
        (json!(null), "MONTHLY"),
    ] {
        let b = s
            .create_budget(
                &token,
                json!({ "category": category, "amount": "100", "period": period }),
            )
            .await;
        moved.push(b["id"].as_str().unwrap().to_owned());
    }
    for period in ["MONTHLY", "YEARLY"] {
        s.create_budget(
            &token,
            json!({ "category": "transport", "amount": "100", "period": period }),
        )
        .await;
    }

    s.budgets_log.clear();
    s.expense_for(&user, 9000, "food").await;
    // Each food budget and the overall one reach 90% in the expense's period (the
    // weekly one in the week of 2024-03-02): one alert each; transport none.
    let events = s.settled_alert_events(4).await;
    let mut alerted: Vec<String> = events
        .iter()
        .map(|e| e.data["budgetId"].as_str().unwrap().to_owned())
        .collect();
    alerted.sort();
    moved.sort();
    assert_eq!(alerted, moved);
    // The budgets it can move, read once, and their spending in one ledger read (not
    // one per budget and period).
    assert_eq!(s.finds("ledger"), 1);
    assert_eq!(s.finds("budgets"), 1);
}
