//! The whole alert path on real servers: expenses -> budgets -> notifications, each
//! over its own database, events over HTTP, a stand-in users subgraph for profiles.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kit::events::{Consumer, DispatchSettings};
use kit::testing::{FakeUsers, Gql, TestDb, TestServer, test_config};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Chain {
    pub users: FakeUsers,
    pub users_server: TestServer,
    pub notifications: notifications::Service,
    pub notifications_server: TestServer,
    pub budgets: budgets::Service,
    pub budgets_server: TestServer,
    pub expenses: expenses::Service,
    pub expenses_server: TestServer,
    pub dbs: Vec<TestDb>,
    pub budgets_gql: Gql,
    pub expenses_gql: Gql,
    pub notifications_gql: Gql,
}

/// `fast`: test timings; otherwise the services' defaults (from the environment).
pub async fn start_chain(fast: bool) -> Chain {
    let (users, users_server) = FakeUsers::start().await;
    let dispatch = if fast {
        DispatchSettings::fast()
    } else {
        DispatchSettings::from_vars(&kit::config::Env).unwrap()
    };

    let config = test_config(notifications::SERVICE);
    let ndb = TestDb::new(&config).await;
    let mut ns = notifications::Settings::from_vars(&kit::config::Env, config).unwrap();
    ns.users.url = users_server.url("/graphql");
    if fast {
        ns.delivery = notifications::service::DeliverySettings::fast();
    }
    let notifications =
        kit::bootstrap::start::<notifications::service::Notifications>(&ns, ndb.db.clone())
            .await
            .unwrap();
    let notifications_server = TestServer::start(notifications.router.clone()).await;

    let config = test_config(budgets::SERVICE);
    let bdb = TestDb::new(&config).await;
    let mut bs = budgets::Settings::from_vars(&[("X", "")], config).unwrap();
    bs.users.url = users_server.url("/graphql");
    bs.consumers = vec![Consumer {
        name: "notifications".into(),
        url: notifications_server.url(""),
    }];
    bs.dispatch = dispatch.clone();
    let budgets = kit::bootstrap::start::<budgets::service::Budgets>(&bs, bdb.db.clone())
        .await
        .unwrap();
    let budgets_server = TestServer::start(budgets.router.clone()).await;

    let config = test_config(expenses::SERVICE);
    let edb = TestDb::new(&config).await;
    let mut es = expenses::Settings::from_vars(&[("X", "")], config).unwrap();
    es.users.url = users_server.url("/graphql");
    es.consumers = vec![Consumer {
        name: "budgets".into(),
        url: budgets_server.url(""),
    }];
    es.dispatch = dispatch;
    let expenses = kit::bootstrap::start::<expenses::service::Expenses>(&es, edb.db.clone())
        .await
        .unwrap();
    let expenses_server = TestServer::start(expenses.router.clone()).await;

    Chain {
        budgets_gql: Gql::new(budgets_server.url("/graphql")),
        expenses_gql: Gql::new(expenses_server.url("/graphql")),
        notifications_gql: Gql::new(notifications_server.url("/graphql")),
        users,
        users_server,
        notifications,
        notifications_server,
        budgets,
        budgets_server,
        expenses,
        expenses_server,
        dbs: vec![ndb, bdb, edb],
    }
}

impl Chain {
    pub async fn create_budget(&self, token: &str, amount: &str, thresholds: &[i64]) -> Value {
        self.budgets_gql
            .ok(
                "mutation($i: CreateBudgetInput!) { createBudget(input: $i) { id } }",
                json!({ "i": { "category": "food", "amount": amount, "alertThresholds": thresholds } }),
                Some(token),
            )
            .await["createBudget"]
            .clone()
    }

    pub async fn spend(&self, token: &str, amount: &str) -> Value {
        self.expenses_gql
            .ok(
                "mutation($i: CreateExpenseInput!) { createExpense(input: $i) { id } }",
                json!({ "i": { "amount": amount, "category": "food", "description": "groceries" } }),
                Some(token),
            )
            .await["createExpense"]
            .clone()
    }

    /// A `graphql-transport-ws` connection to the notifications subgraph with
    /// `query` subscribed as id "1".
    pub async fn subscribe(&self, token: &str, query: &str) -> Ws {
        let url = format!("ws://{}/graphql", self.notifications_server.addr);
        subscribe_at(&url, token, query).await
    }
}

pub async fn subscribe_at(url: &str, token: &str, query: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await.unwrap();
    let ack = next_message(&mut ws, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let sub = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    ws.send(Message::text(sub.to_string())).await.unwrap();
    ws
}

/// The next JSON message other than keep-alives, or None after `wait`.
pub async fn next_message(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ka" || v["type"] == "ping" {
                    continue;
                }
                return Some(v);
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Asserts that nothing but keep-alives arrives within `wait` while the socket stays
/// open (a closed or broken socket is not silence).
pub async fn assert_silent(ws: &mut Ws, wait: Duration) {
    let got = tokio::time::timeout(wait, next_message(ws, Duration::from_secs(3600))).await;
    assert!(
        got.is_err(),
        "expected silence on an open socket, got {got:?}"
    );
}
