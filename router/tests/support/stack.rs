//! The whole product on loopback for tests: the five real subgraphs (each over its own
//! throwaway MongoDB database, `MONGODB_URI`) wired to one another by their real URLs,
//! and the router over the committed `schema/supergraph.graphql` in front of them.
//!
//! ```ignore
//! let stack = ProductStack::start().await;
//! let alice = stack.register("alice").await;          // through the router
//! let data = stack.gql().ok("{ me { username } }", json!({}), Some(&alice.token)).await;
//! let mut ws = stack.ws(&alice.token).await;           // graphql-transport-ws, acked
//! ws.subscribe("1", "subscription { notificationAdded { id } }").await;
//! let next = ws.next(Duration::from_secs(5)).await;    // the next `next` payload
//! ```
//!
//! Everything (servers, background tasks, databases) lives until the stack is dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kit::config::ServiceConfig;
use kit::server::Background;
use kit::testing::{Gql, TEST_JWT_SECRET, TestDb, TestServer, test_config};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The subgraphs, in the order they are started.
pub const SUBGRAPHS: [&str; 5] = ["users", "expenses", "budgets", "analytics", "notifications"];

/// The five subgraphs and the router, running until dropped.
pub struct ProductStack {
    router_addr: std::net::SocketAddr,
    subgraph_urls: BTreeMap<&'static str, String>,
    router_stop: Option<tokio::sync::oneshot::Sender<()>>,
    // Dropped in this order: servers, their background tasks, then the databases.
    _servers: Vec<TestServer>,
    _background: Vec<Background>,
    _dbs: Vec<TestDb>,
}

/// A registered user: the access token and the user's id.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user_id: String,
    pub username: String,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Settings variables shared by the services in tests: fast event delivery and polling.
const FAST_EVENTS: [(&str, &str); 5] = [
    ("EVENT_POLL_MS", "50"),
    ("EVENT_RETRY_BASE_MS", "50"),
    ("EVENT_RETRY_MAX_MS", "400"),
    ("EVENT_LEASE_MS", "5000"),
    ("EVENT_HTTP_TIMEOUT_MS", "5000"),
];

/// How often the services look for work they were not woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timings {
    /// Tests: event delivery and the notification tail poll every 50 ms.
    Fast,
    /// The services' own defaults, as `make run` starts them (benchmarks).
    Product,
}

fn vars(timings: Timings, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let fast: &[(&str, &str)] = match timings {
        Timings::Fast => &FAST_EVENTS,
        Timings::Product => &[],
    };
    fast.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
        .collect()
}

fn as_pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl ProductStack {
    /// Starts the five subgraphs and the router. Every listener is bound first, so each
    /// service is configured with the real URLs of the others.
    pub async fn start() -> ProductStack {
        Self::start_with(|_| {}).await
    }

    /// Like [`ProductStack::start`], with the router's configuration changed by
    /// `tweak` (after the subgraph URLs are set, so it may point one elsewhere).
    pub async fn start_with(tweak: impl FnOnce(&mut router::Config)) -> ProductStack {
        Self::start_timed(Timings::Fast, tweak).await
    }

    /// Like [`ProductStack::start_with`], with the services' polling `timings`.
    pub async fn start_timed(
        timings: Timings,
        tweak: impl FnOnce(&mut router::Config),
    ) -> ProductStack {
        let mut listeners = BTreeMap::new();
        for name in SUBGRAPHS {
            listeners.insert(name, bind().await);
        }
        let router_listener = bind().await;
        let router_addr = router_listener.local_addr().expect("router addr");
        let base: BTreeMap<&'static str, String> = listeners
            .iter()
            .map(|(name, l)| {
                let addr = l.local_addr().expect("subgraph addr");
                (*name, format!("http://{addr}"))
            })
            .collect();
        let graphql = |name: &str| format!("{}/graphql", base[name]);
        let users_url = ("USERS_URL", graphql("users"));
        let notify = (
            "EVENT_CONSUMERS",
            format!("notifications={}", base["notifications"]),
        );

        let mut servers = Vec::new();
        let mut background = Vec::new();
        let mut dbs = Vec::new();
        let mut take = |name: &str| listeners.remove(name).expect("a listener per subgraph");

        // users
        let config = test_config("users");
        let db = TestDb::new(&config).await;
        let app = users::app(&config, db.db.clone()).await.expect("users app");
        servers.push(TestServer::start_on(take("users"), app));
        dbs.push(db);

        // expenses
        let v = vars(
            timings,
            &[
                users_url.clone(),
                (
                    "EVENT_CONSUMERS",
                    format!(
                        "budgets={},analytics={}",
                        base["budgets"], base["analytics"]
                    ),
                ),
            ],
        );
        let (config, db) = service_config("expenses").await;
        let settings =
            expenses::Settings::from_vars(&as_pairs(&v)[..], config).expect("expenses settings");
        let service =
            kit::bootstrap::start::<expenses::service::Expenses>(&settings, db.db.clone())
                .await
                .expect("expenses starts");
        servers.push(TestServer::start_on(take("expenses"), service.router));
        background.push(service.background);
        dbs.push(db);

        // budgets
        let v = vars(timings, &[users_url.clone(), notify.clone()]);
        let (config, db) = service_config("budgets").await;
        let settings =
            budgets::Settings::from_vars(&as_pairs(&v)[..], config).expect("budgets settings");
        let service = kit::bootstrap::start::<budgets::service::Budgets>(&settings, db.db.clone())
            .await
            .expect("budgets starts");
        servers.push(TestServer::start_on(take("budgets"), service.router));
        background.push(service.background);
        dbs.push(db);

        // analytics
        let v = vars(
            timings,
            &[
                users_url.clone(),
                notify.clone(),
                ("BUDGETS_URL", graphql("budgets")),
            ],
        );
        let (config, db) = service_config("analytics").await;
        let settings =
            analytics::Settings::from_vars(&as_pairs(&v)[..], config).expect("analytics settings");
        let service =
            kit::bootstrap::start::<analytics::service::Analytics>(&settings, db.db.clone())
                .await
                .expect("analytics starts");
        servers.push(TestServer::start_on(take("analytics"), service.router));
        background.push(service.background);
        dbs.push(db);

        // notifications
        let mut v = vars(timings, std::slice::from_ref(&users_url));
        if timings == Timings::Fast {
            v.push(("NOTIFY_TAIL_POLL_MS".to_owned(), "50".to_owned()));
            v.push(("NOTIFY_DELIVERY_POLL_MS".to_owned(), "100".to_owned()));
        }
        let (config, db) = service_config("notifications").await;
        let settings = notifications::Settings::from_vars(&as_pairs(&v)[..], config)
            .expect("notifications settings");
        let service = kit::bootstrap::start::<notifications::service::Notifications>(
            &settings,
            db.db.clone(),
        )
        .await
        .expect("notifications starts");
        servers.push(TestServer::start_on(take("notifications"), service.router));
        background.push(service.background);
        dbs.push(db);

        // the router
        let mut config = router::Config {
            supergraph: kit::testing::workspace_root()
                .join("schema")
                .join("supergraph.graphql"),
            ..router::Config::default()
        };
        config.auth.jwt_secret = Some(TEST_JWT_SECRET.to_owned());
        // Debug builds on a busy machine: a 10,000-row CSV import alone takes 8-15 s.
        for name in SUBGRAPHS {
            config.subgraphs.insert(
                name.to_owned(),
                router::config::SubgraphConfig {
                    url: Some(graphql(name)),
                    timeout_ms: Some(60_000),
                },
            );
        }
        tweak(&mut config);
        let state = router::build_state(config)
            .await
            .expect("the router loads the committed supergraph");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = router::serve(state, router_listener, shutdown).await {
                eprintln!("router stopped: {e:#}");
            }
        });

        let subgraph_urls = SUBGRAPHS
            .iter()
            .map(|name| (*name, graphql(name)))
            .collect();
        ProductStack {
            router_addr,
            subgraph_urls,
            router_stop: Some(stop),
            _servers: servers,
            _background: background,
            _dbs: dbs,
        }
    }

    /// The router's base URL joined with `path` (e.g. `/graphql`, `/health`, `/api/expenses`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.router_addr, path)
    }

    /// The router's GraphQL endpoint.
    pub fn router_url(&self) -> String {
        self.url("/graphql")
    }

    /// A subgraph's own GraphQL endpoint (bypassing the router), by name.
    pub fn subgraph_url(&self, name: &str) -> &str {
        &self.subgraph_urls[name]
    }

    /// A GraphQL client for the router.
    pub fn gql(&self) -> Gql {
        Gql::new(self.router_url())
    }

    /// Registers `username` (email `<username>@example.com`, currency USD) through the
    /// router and returns the session.
    pub async fn register(&self, username: &str) -> Session {
        let data = self
            .gql()
            .ok(
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id username } } }",
                json!({ "input": {
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "password": "correct horse battery staple",
                    "currency": "USD",
                } }),
                None,
            )
            .await;
        Session {
            token: data["register"]["accessToken"]
                .as_str()
                .expect("an access token")
                .to_owned(),
            user_id: data["register"]["user"]["id"]
                .as_str()
                .expect("a user id")
                .to_owned(),
            username: username.to_owned(),
        }
    }

    /// Opens a `graphql-transport-ws` connection to the router with `token` in the
    /// `connection_init` payload, and waits for `connection_ack`.
    pub async fn ws(&self, token: &str) -> WsClient {
        self.ws_with(json!({ "Authorization": format!("Bearer {token}") }))
            .await
    }

    /// Like [`ProductStack::ws`], with `payload` as the `connection_init` payload.
    pub async fn ws_with(&self, payload: Value) -> WsClient {
        let url = self.router_url().replace("http://", "ws://");
        let mut req = url.into_client_request().expect("a websocket request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("the router accepts the websocket");
        let mut ws = WsClient { socket };
        ws.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = ws.recv(Duration::from_secs(20)).await;
        assert_eq!(
            ack.as_ref().and_then(|m| m["type"].as_str()),
            Some("connection_ack"),
            "expected connection_ack, got {ack:?}"
        );
        ws
    }
}

impl Drop for ProductStack {
    fn drop(&mut self) {
        if let Some(stop) = self.router_stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn service_config(name: &str) -> (ServiceConfig, TestDb) {
    let config = test_config(name);
    let db = TestDb::new(&config).await;
    (config, db)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` client connected to the router.
pub struct WsClient {
    socket: Socket,
}

impl WsClient {
    /// Sends one protocol message.
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("websocket send");
    }

    /// Starts a subscription with the given operation id.
    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } }))
            .await;
    }

    /// The next protocol message other than ping/pong (pings are answered), a
    /// `{"closed": code}` on close, or None when nothing arrives within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match msg {
                None | Some(Err(_)) => return Some(json!({ "closed": null })),
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(text.as_str()).expect("a JSON message");
                    match v["type"].as_str() {
                        Some("ping") => self.send(json!({ "type": "pong" })).await,
                        Some("pong") => {}
                        _ => return Some(v),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(json!({ "closed": frame.map(|f| u16::from(f.code)) }));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The payload of the next `next` message, or None within `timeout`. Any other
    /// message (error, complete, close) fails the test.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let msg = self.recv(timeout).await?;
        assert_eq!(
            msg["type"], "next",
            "expected a `next` message, got {msg:#}"
        );
        Some(msg["payload"].clone())
    }
}
