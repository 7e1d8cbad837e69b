#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The standard subgraph app over a tiny schema: websocket subscriptions with the token
//! in `connection_init`, on both protocols, and the HTTP edge cases.

use std::time::Duration;

use async_graphql::{Context, EmptyMutation, Object, Schema, Subscription};
use futures::{SinkExt, Stream, StreamExt};
use kit::auth::{Caller, JwtKeys};
use kit::config::Secret;
use kit::testing::{TEST_JWT_SECRET, TestDb, TestServer, test_config};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Query;

#[Object]
impl Query {
    async fn whoami(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let caller = ctx.data::<Caller>()?;
        Ok(caller.require_user()?.user_id.clone())
    }
}

struct Subscription;

#[Subscription]
impl Subscription {
    /// Counts to three, each event tagged with the caller's id.
    async fn ticks(&self, ctx: &Context<'_>) -> async_graphql::Result<impl Stream<Item = String>> {
        let user = ctx.data::<Caller>()?.require_user()?.user_id.clone();
        Ok(futures::stream::iter(1..=3).map(move |i| format!("{user}:{i}")))
    }
}

async fn start() -> (TestServer, TestDb) {
    let config = test_config("kit");
    let db = TestDb::new(&config).await;
    let schema = Schema::build(Query, EmptyMutation, Subscription).finish();
    let app = kit::server::subgraph_router(
        "kit",
        schema,
        db.db.clone(),
        JwtKeys::hs256(&config.jwt_secret),
        config.max_body_bytes,
    );
    (TestServer::start(app).await, db)
}

fn token(user: &str) -> String {
    JwtKeys::hs256(&Secret::new(TEST_JWT_SECRET))
        .issue(user, Duration::from_secs(60))
        .unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer, protocol: &str) -> Ws {
    let mut req = format!("ws://{}/graphql", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        protocol
    );
    ws
}

/// The next JSON message; a close frame comes back as `{"close": code}`, the end as None.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")?;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            Message::Close(frame) => {
                return Some(json!({ "close": frame.map(|f| u16::from(f.code)) }));
            }
            _ => continue,
        }
    }
}

async fn subscribe(protocol: &str, start_type: &str, init: Value) -> Vec<Value> {
    let (server, _db) = start().await;
    let mut ws = connect(&server, protocol).await;
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": init }).to_string(),
    ))
    .await
    .unwrap();
    let mut seen = Vec::new();
    let Some(ack) = next_json(&mut ws).await else {
        return seen;
    };
    let refused = ack.get("close").is_some();
    seen.push(ack);
    if refused {
        return seen;
    }
    ws.send(Message::text(
        json!({ "id": "1", "type": start_type, "payload": { "query": "subscription { ticks }" } })
            .to_string(),
    ))
    .await
    .unwrap();
    while let Some(msg) = next_json(&mut ws).await {
        let done = msg["type"] == "complete" || msg.get("close").is_some();
        seen.push(msg);
        if done {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn subscriptions_over_graphql_transport_ws_carry_the_callers_identity() {
    let t = token("user-7");
    let msgs = subscribe(
        "graphql-transport-ws",
        "subscribe",
        json!({ "Authorization": format!("Bearer {t}") }),
    )
    .await;
    assert_eq!(msgs[0]["type"], "connection_ack");
    let ticks: Vec<&str> = msgs
        .iter()
        .filter(|m| m["type"] == "next")
        .map(|m| m["payload"]["data"]["ticks"].as_str().unwrap())
        .collect();
    assert_eq!(ticks, ["user-7:1", "user-7:2", "user-7:3"]);
}

#[tokio::test]
async fn subscriptions_over_legacy_graphql_ws_accept_a_token_key() {
    let t = token("user-8");
    let msgs = subscribe("graphql-ws", "start", json!({ "token": t })).await;
    assert_eq!(msgs[0]["type"], "connection_ack");
    let ticks: Vec<&str> = msgs
        .iter()
        .filter(|m| m["type"] == "data")
        .map(|m| m["payload"]["data"]["ticks"].as_str().unwrap())
        .collect();
    assert_eq!(ticks, ["user-8:1", "user-8:2", "user-8:3"]);
}

#[tokio::test]
async fn a_bad_token_in_connection_init_closes_the_socket_with_4403() {
    let msgs = subscribe(
        "graphql-transport-ws",
        "subscribe",
        json!({ "authorization": "Bearer not-a-token" }),
    )
    .await;
    assert_eq!(msgs, vec![json!({ "close": 4403 })]);
}

#[tokio::test]
async fn a_connection_without_a_token_is_closed_with_4401() {
    let msgs = subscribe("graphql-transport-ws", "subscribe", json!({})).await;
    assert_eq!(msgs, vec![json!({ "close": 4401 })]);
}

#[tokio::test]
async fn queries_work_over_get_and_graphiql_is_served_to_browsers() {
    let (server, _db) = start().await;
    let http = reqwest::Client::new();
    let body: Value = http
        .get(server.url("/graphql"))
        .query(&[("query", "{ whoami }")])
        .bearer_auth(token("user-9"))
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["whoami"], "user-9");
    let page = http
        .get(server.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("graphiql"));
}
