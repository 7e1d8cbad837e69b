//! Starting the expenses subgraph for tests: a real server on port 0 over a unique
//! database, with a stand-in users subgraph (profiles) and a stand-in event consumer.

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use kit::clock::Clock;
use kit::events::{Consumer, DispatchSettings, Event};
use kit::testing::{
    CommandLog, EventSink, FakeUsers, Gql, TEST_SERVICE_TOKEN, TestDb, TestServer, test_config,
    test_user, wait_until,
};
use serde_json::{Value, json};

pub struct Stack {
    pub gql: Gql,
    pub server: TestServer,
    pub service: expenses::Service,
    pub db: TestDb,
    /// The commands the service sent to its database.
    pub log: CommandLog,
    pub users: FakeUsers,
    pub users_server: TestServer,
    pub sink: EventSink,
    pub sink_server: TestServer,
    pub clock: Clock,
    pub settings: expenses::Settings,
}

pub fn settings(
    config: kit::config::ServiceConfig,
    users_url: String,
    consumers: Vec<Consumer>,
    clock: Clock,
) -> expenses::Settings {
    let mut s = expenses::Settings::from_vars(&[("EVENT_CONSUMERS", "")], config).unwrap();
    s.users.url = users_url;
    s.users.ttl = Duration::from_millis(200);
    s.consumers = consumers;
    s.dispatch = DispatchSettings::fast();
    s.recurrence_interval = Duration::from_millis(100);
    s.clock = clock;
    s
}

/// The service started with `settings` over `db`, on a real server.
pub async fn serve(
    settings: &expenses::Settings,
    db: &TestDb,
) -> (expenses::Service, TestServer, Gql) {
    let service = kit::bootstrap::start::<expenses::service::Expenses>(settings, db.db.clone())
        .await
        .unwrap();
    let server = TestServer::start(service.router.clone()).await;
    let gql = Gql::new(server.url("/graphql"));
    (service, server, gql)
}

pub async fn start_at(now: Option<DateTime<Utc>>) -> Stack {
    let config = test_config(expenses::SERVICE);
    let (db, log) = TestDb::logged(&config).await;
    let (users, users_server) = FakeUsers::start().await;
    let (sink, sink_server) = EventSink::start(TEST_SERVICE_TOKEN).await;
    let clock = now.map(Clock::fixed).unwrap_or_else(Clock::system);
    let settings = settings(
        config,
        users_server.url("/graphql"),
        vec![Consumer {
            name: "budgets".into(),
            url: sink_server.url(""),
        }],
        clock.clone(),
    );
    let (service, server, gql) = serve(&settings, &db).await;
    Stack {
        gql,
        server,
        service,
        db,
        log,
        users,
        users_server,
        sink,
        sink_server,
        clock,
        settings,
    }
}

pub async fn start() -> Stack {
    start_at(None).await
}

pub const CREATE: &str = r#"mutation($input: CreateExpenseInput!, $key: String) {
  createExpense(input: $input, idempotencyKey: $key) {
    id type amount currency category description date paymentMethod tags
    recurrence { frequency endDate } createdAt updatedAt user { id }
  }
}"#;

pub const LIST: &str = r#"query($filter: ExpenseFilter, $first: Int, $after: String) {
  expenses(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id amount category date description } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}"#;

impl Stack {
    pub fn user(&self) -> (String, String) {
        test_user()
    }

    pub async fn create(&self, token: &str, input: Value) -> Value {
        self.gql
            .ok(CREATE, json!({ "input": input }), Some(token))
            .await["createExpense"]
            .clone()
    }

    pub async fn create_error(&self, token: &str, input: Value) -> Value {
        let body = self
            .gql
            .request(CREATE, json!({ "input": input }), Some(token))
            .await;
        body["errors"][0].clone()
    }

    pub async fn list(&self, token: &str, vars: Value) -> Value {
        self.gql.ok(LIST, vars, Some(token)).await["expenses"].clone()
    }

    /// How many of the user's expenses match `search`.
    pub async fn search_count(&self, token: &str, search: &str) -> i64 {
        self.list(
            token,
            json!({ "filter": { "search": search }, "first": 100 }),
        )
        .await["totalCount"]
            .as_i64()
            .unwrap()
    }

    /// Waits until the consumer has `n` events, gives a late duplicate the chance to
    /// arrive, and returns them: exactly `n`, in arrival order.
    pub async fn settled_events(&self, n: usize) -> Vec<Event> {
        let arrived = wait_until(Duration::from_secs(10), || async {
            self.sink.events().len() >= n
        })
        .await;
        assert!(arrived, "{:#?}", self.sink.events());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = self.sink.events();
        assert_eq!(events.len(), n, "{events:#?}");
        events
    }

    pub async fn stored_count(&self) -> u64 {
        self.db
            .db
            .collection::<mongodb::bson::Document>("expenses")
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap()
    }
}

/// The expense ids the events carry, in order.
pub fn expense_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.data["expenseId"].as_str().unwrap().to_string())
        .collect()
}
