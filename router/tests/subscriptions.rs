//! Subscriptions through the router: real async-graphql subgraphs, real websockets.

mod common;
#[path = "support/streams.rs"]
mod streams;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::{
    ComplexObject, Context, EmptyMutation, ID, Object, Schema, SimpleObject, Subscription,
};
use async_graphql_axum::{GraphQL, GraphQLProtocol, GraphQLWebSocket};
use futures::{SinkExt, Stream, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use router::compose::{SubgraphSdl, compose_supergraph};
use router::supergraph::Supergraph;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "subscription-test-secret";

mod notifications {
    use super::*;

    #[derive(Clone)]
    pub struct Viewer(pub Option<String>);

    /// Published notifications: a live channel and the history (`after` replays it).
    #[derive(Clone)]
    pub struct Bus {
        pub live: broadcast::Sender<(u64, String, String)>,
        pub history: Arc<std::sync::Mutex<Vec<(u64, String, String)>>>,
    }

    impl Bus {
        pub fn publish(&self, user: &str, message: &str) {
            let mut history = self.history.lock().expect("history");
            let item = (
                history.len() as u64 + 1,
                user.to_owned(),
                message.to_owned(),
            );
            history.push(item.clone());
            let _ = self.live.send(item);
        }
    }

    pub struct User {
        pub id: ID,
    }

    #[Object]
    impl User {
        async fn id(&self) -> &ID {
            &self.id
        }
    }

    #[derive(SimpleObject)]
    #[graphql(complex)]
    pub struct Notification {
        pub id: ID,
        pub message: String,
        pub user: User,
    }

    #[ComplexObject]
    impl Notification {
        /// Always fails: an event that comes with an error.
        async fn urgent(&self) -> async_graphql::Result<Option<bool>> {
            Err("urgency unknown".into())
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn ping(&self) -> bool {
            true
        }
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> User {
            User { id }
        }
    }

    pub struct Subscription;

    #[Subscription]
    impl Subscription {
        async fn notification_added(
            &self,
            ctx: &Context<'_>,
            after: Option<ID>,
        ) -> impl Stream<Item = Notification> + use<> {
            let viewer = ctx.data_opt::<Viewer>().and_then(|v| v.0.clone());
            let bus = ctx.data_unchecked::<Bus>();
            let rx = bus.live.subscribe();
            let after: u64 = after.and_then(|a| a.parse().ok()).unwrap_or(0);
            let replay: Vec<(u64, String, String)> = match after {
                0 => Vec::new(),
                _ => bus
                    .history
                    .lock()
                    .expect("history")
                    .iter()
                    .filter(|(id, _, _)| *id > after)
                    .cloned()
                    .collect(),
            };
            let replayed = replay.last().map_or(after, |(id, _, _)| *id);
            let live = futures::stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(item) => return Some((item, rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .filter(move |(id, _, _)| futures::future::ready(*id > replayed));
            futures::stream::iter(replay)
                .chain(live)
                .filter_map(move |item| {
                    let viewer = viewer.clone();
                    async move {
                        let (id, user, message) = item;
                        (Some(&user) == viewer.as_ref()).then(|| Notification {
                            id: ID(id.to_string()),
                            message,
                            user: User { id: user.into() },
                        })
                    }
                })
        }
    }

    pub type S = Schema<Query, EmptyMutation, Subscription>;
}

/// The `sub` claim of a bearer token (the test subgraph trusts the router's check).
fn user_of(authorization: &str) -> Option<String> {
    use base64::Engine;
    let token = authorization.trim_start_matches("Bearer ");
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_owned)
}

struct NotificationsSubgraph {
    url: String,
    sdl: String,
    bus: notifications::Bus,
    kill: broadcast::Sender<()>,
    connections: Arc<AtomicUsize>,
    /// When set, new websocket upgrades are refused (the subgraph is "down").
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

async fn start_notifications() -> NotificationsSubgraph {
    let bus = notifications::Bus {
        live: broadcast::channel(1024).0,
        history: Arc::default(),
    };
    let (kill, _) = broadcast::channel::<()>(4);
    let schema: notifications::S = Schema::build(
        notifications::Query,
        EmptyMutation,
        notifications::Subscription,
    )
    .data(bus.clone())
    .enable_federation()
    .enable_subscription_in_federation()
    .finish();
    let sdl = schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    let connections = Arc::new(AtomicUsize::new(0));
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ws_refuse = refuse.clone();
    let ws_schema = schema.clone();
    let ws_kill = kill.clone();
    let ws_connections = connections.clone();
    let ws = move |protocol: GraphQLProtocol, upgrade: axum::extract::ws::WebSocketUpgrade| {
        let schema = ws_schema.clone();
        let mut killed = ws_kill.subscribe();
        let refused = ws_refuse.load(Ordering::SeqCst);
        if !refused {
            ws_connections.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            use axum::response::IntoResponse;
            if refused {
                return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            upgrade
                .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
                .on_upgrade(move |socket| async move {
                    let serve = GraphQLWebSocket::new(socket, schema, protocol)
                        .on_connection_init(|payload: Value| async move {
                            let auth = payload["Authorization"].as_str().map(str::to_owned);
                            let mut data = async_graphql::Data::default();
                            data.insert(notifications::Viewer(auth.as_deref().and_then(user_of)));
                            Ok(data)
                        })
                        .serve();
                    tokio::select! {
                        _ = serve => {}
                        _ = killed.recv() => {}
                    }
                })
                .into_response()
        }
    };
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post_service(GraphQL::new(schema)).get(ws),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    NotificationsSubgraph {
        url: format!("http://{addr}/graphql"),
        sdl,
        bus,
        kill,
        connections,
        refuse,
    }
}

async fn start() -> (common::Stack, NotificationsSubgraph) {
    start_with(|_| {}).await
}

async fn start_with(
    tweak: impl FnOnce(&mut router::Config),
) -> (common::Stack, NotificationsSubgraph) {
    let users = common::serve_schema("users", common::subgraphs::users::schema(), 0).await;
    let notif = start_notifications().await;
    let sdl = compose_supergraph(&[
        SubgraphSdl {
            name: "users".into(),
            url: users.url.clone(),
            sdl: users.sdl.clone(),
        },
        SubgraphSdl {
            name: "notifications".into(),
            url: notif.url.clone(),
            sdl: notif.sdl.clone(),
        },
    ])
    .expect("composes");
    if std::env::var("PRINT_SUPERGRAPH").is_ok() {
        println!("{sdl}");
    }
    let supergraph = Arc::new(Supergraph::parse(&sdl).expect("loads"));
    let mut config = router::Config::default();
    config.auth.jwt_secret = Some(SECRET.into());
    tweak(&mut config);
    let stack = common::start_router(supergraph, config, vec![users], sdl).await;
    (stack, notif)
}

fn token(sub: &str) -> String {
    token_for(sub, 600)
}

/// A token of `sub` that expires in `secs` seconds.
fn token_for(sub: &str, secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": sub, "exp": now + secs, "iat": now, "jti": "j"});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(stack: &common::Stack, protocol: &str, init: Value) -> Ws {
    let url = stack.router_url.replace("http://", "ws://");
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connects");
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": init}).to_string(),
    ))
    .await
    .expect("send init");
    ws
}

/// A graphql-transport-ws connection of user `sub`, acknowledged by the router.
async fn connect_as(stack: &common::Stack, sub: &str) -> Ws {
    let mut ws = connect(
        stack,
        "graphql-transport-ws",
        json!({"Authorization": format!("Bearer {}", token(sub))}),
    )
    .await;
    assert_eq!(recv(&mut ws).await.expect("ack")["type"], "connection_ack");
    ws
}

/// Sends one protocol message (`subscribe`, `start`, ...) for `SUBSCRIPTION`.
async fn subscribe(ws: &mut Ws, id: &str, kind: &str) {
    let message = json!({"id": id, "type": kind, "payload": {"query": SUBSCRIPTION}});
    ws.send(Message::text(message.to_string()))
        .await
        .expect("subscribe");
}

/// The next protocol message that is not a keep-alive, or None on close/timeout.
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
            .ok()?;
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json message");
                if !matches!(v["type"].as_str(), Some("ping" | "pong" | "ka")) {
                    return Some(v);
                }
            }
            Message::Close(frame) => {
                return Some(json!({"closed": frame.map(|f| u16::from(f.code))}));
            }
            _ => {}
        }
    }
}

const SUBSCRIPTION: &str = "subscription { notificationAdded { message user { id name } } }";

async fn publish_until_seen(
    notif: &NotificationsSubgraph,
    ws: &mut Ws,
    user: &str,
    message: &str,
) -> Value {
    // The upstream subscription may not be registered yet: publish until it arrives.
    for _ in 0..50 {
        notif.bus.publish(user, message);
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(100), recv(ws)).await {
            return v;
        }
    }
    panic!("no event for {user}");
}

#[tokio::test]
async fn two_users_each_receive_only_their_events_with_fields_from_other_subgraphs() {
    let (stack, notif) = start().await;
    let mut alice = connect_as(&stack, "1").await;
    let mut bob = connect(&stack, "graphql-ws", json!({"token": token("2")})).await;
    assert_eq!(recv(&mut bob).await.expect("ack")["type"], "connection_ack");
    subscribe(&mut alice, "a1", "subscribe").await;
    subscribe(&mut bob, "b1", "start").await;

    let got = publish_until_seen(&notif, &mut alice, "1", "hello ada").await;
    assert_eq!(got["type"], "next", "{got}");
    assert_eq!(got["id"], "a1");
    assert_eq!(
        got["payload"]["data"],
        json!({"notificationAdded": {"message": "hello ada", "user": {"id": "1", "name": "Ada Lovelace"}}})
    );
    let got = publish_until_seen(&notif, &mut bob, "2", "hello alan").await;
    assert_eq!(got["type"], "data", "legacy protocol message type");
    assert_eq!(
        got["payload"]["data"]["notificationAdded"]["user"]["name"],
        "Alan Turing"
    );
    // Alice saw only her own events (possibly several copies of "hello ada").
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(200), recv(&mut alice)).await
    {
        assert_eq!(
            v["payload"]["data"]["notificationAdded"]["message"], "hello ada",
            "{v}"
        );
    }

    // A second subscription on Alice's connection shares the upstream socket.
    let before = notif.connections.load(Ordering::SeqCst);
    subscribe(&mut alice, "a2", "subscribe").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(notif.connections.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn an_invalid_token_in_connection_init_closes_with_4403() {
    let (stack, notif) = start().await;
    let mut ws = connect(
        &stack,
        "graphql-transport-ws",
        json!({"authorization": "Bearer not-a-token"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await.expect("close"), json!({"closed": 4403}));
    assert_eq!(
        notif.connections.load(Ordering::SeqCst),
        0,
        "no upstream connection was opened"
    );
}

#[tokio::test]
async fn an_upstream_drop_is_resumed_on_a_new_socket() {
    let (stack, notif) = start().await;
    let mut ws = connect_as(&stack, "1").await;
    subscribe(&mut ws, "s", "subscribe").await;
    publish_until_seen(&notif, &mut ws, "1", "before").await;
    let connections = notif.connections.load(Ordering::SeqCst);
    notif.kill.send(()).expect("kill upstream sockets");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = publish_until_seen(&notif, &mut ws, "1", "after").await;
    while got["payload"]["data"]["notificationAdded"]["message"] == "before" {
        got = recv(&mut ws).await.expect("more events");
    }
    assert_eq!(got["type"], "next", "{got}");
    assert_eq!(
        got["payload"]["data"]["notificationAdded"]["message"],
        "after"
    );
    assert_eq!(
        got["payload"]["data"]["notificationAdded"]["user"]["name"],
        "Ada Lovelace"
    );
    assert_eq!(
        notif.connections.load(Ordering::SeqCst),
        connections + 1,
        "one new upstream socket"
    );
}

#[tokio::test]
async fn an_upstream_that_stays_down_is_retried_and_the_client_is_told_it_is_degraded() {
    let (stack, notif) = start().await;
    let mut ws = connect_as(&stack, "1").await;
    subscribe(&mut ws, "s", "subscribe").await;
    publish_until_seen(&notif, &mut ws, "1", "first").await;
    notif.refuse.store(true, Ordering::SeqCst);
    notif.kill.send(()).expect("kill upstream sockets");
    // A non-fatal `next` with the error; the subscription stays open.
    let mut got = recv(&mut ws).await.expect("a message after the drop");
    while got["payload"].get("data").is_some_and(|d| !d.is_null()) {
        got = recv(&mut ws).await.expect("a message after the drop");
    }
    assert_eq!(got["type"], "next", "{got}");
    assert_eq!(got["id"], "s");
    let error = &got["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "SUBGRAPH_UNAVAILABLE", "{got}");
    assert_eq!(error["extensions"]["degraded"], true, "{got}");
    // Still down well past the old three attempts: no end of the subscription.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Back: events flow again on the same subscription.
    notif.refuse.store(false, Ordering::SeqCst);
    let mut got = publish_until_seen(&notif, &mut ws, "1", "again").await;
    for _ in 0..100 {
        if got["payload"]["data"]["notificationAdded"]["message"] == "again" {
            break;
        }
        notif.bus.publish("1", "again");
        got = recv(&mut ws)
            .await
            .expect("events after the subgraph returns");
    }
    assert_eq!(got["type"], "next", "{got}");
    assert_eq!(got["id"], "s");
    assert_eq!(
        got["payload"]["data"]["notificationAdded"]["message"], "again",
        "{got}"
    );
}

#[tokio::test]
async fn an_event_that_comes_with_errors_keeps_them_in_the_payload() {
    let (stack, notif) = start().await;
    let mut ws = connect_as(&stack, "1").await;
    let query = "subscription { notificationAdded { message urgent user { name } } }";
    let message = json!({"id": "u", "type": "subscribe", "payload": {"query": query}});
    ws.send(Message::text(message.to_string()))
        .await
        .expect("subscribe");
    let got = publish_until_seen(&notif, &mut ws, "1", "with an error").await;
    assert_eq!(got["type"], "next", "{got}");
    assert_eq!(
        got["payload"]["data"],
        json!({"notificationAdded": {"message": "with an error", "urgent": null, "user": {"name": "Ada Lovelace"}}}),
        "{got}"
    );
    let errors = got["payload"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{got}");
    assert_eq!(errors[0]["message"], "urgency unknown", "{got}");
}

/// Sends one raw text frame.
async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}

/// Runs `{ ping }` as operation `id` over the socket and returns the first answer.
async fn ping_over(ws: &mut Ws, id: &str) -> Value {
    let message = json!({"id": id, "type": "subscribe", "payload": {"query": "{ ping }"}});
    send_text(ws, &message.to_string()).await;
    recv(ws).await.expect("an answer")
}

#[tokio::test]
async fn websocket_operations_pass_the_same_rate_limit_as_http() {
    let (stack, _notif) = start_with(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 2;
    })
    .await;
    let mut ws = connect_as(&stack, "1").await;
    for id in ["q1", "q2"] {
        let answer = ping_over(&mut ws, id).await;
        assert_eq!(answer["type"], "next", "{answer}");
        assert_eq!(recv(&mut ws).await.expect("complete")["type"], "complete");
    }
    let refused = ping_over(&mut ws, "q3").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    // The same user over HTTP shares the bucket.
    let bearer = format!("Bearer {}", token("1"));
    let (status, _) = common::post_json(
        &stack.router_url,
        json!({"query": "{ ping }"}),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn websocket_operations_pass_the_same_safelist_as_http() {
    use sha2::Digest;
    let dir = std::env::temp_dir().join(format!("safelist-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifest = dir.join("manifest.json");
    let hash = hex::encode(sha2::Sha256::digest(SUBSCRIPTION.as_bytes()));
    std::fs::write(
        &manifest,
        json!({"operations": {hash: SUBSCRIPTION}}).to_string(),
    )
    .expect("manifest");
    let (stack, notif) = start_with(|c| {
        c.persisted_queries.safelist_path = Some(manifest.clone());
        c.persisted_queries.safelist_enforce = true;
    })
    .await;
    let mut ws = connect_as(&stack, "1").await;
    let refused = ping_over(&mut ws, "q1").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "OPERATION_NOT_IN_SAFELIST"
    );
    subscribe(&mut ws, "s1", "subscribe").await;
    let got = publish_until_seen(&notif, &mut ws, "1", "allowed").await;
    assert_eq!(got["type"], "next", "{got}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_connection_is_closed_with_4403_when_its_token_expires() {
    let (stack, _notif) = start().await;
    let mut ws = connect(
        &stack,
        "graphql-transport-ws",
        json!({"Authorization": format!("Bearer {}", token_for("1", 2))}),
    )
    .await;
    assert_eq!(recv(&mut ws).await.expect("ack")["type"], "connection_ack");
    subscribe(&mut ws, "s1", "subscribe").await;
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match recv(&mut ws).await {
                Some(v) if v.get("closed").is_some() => return v,
                Some(_) => continue,
                None => return Value::Null,
            }
        }
    })
    .await
    .expect("closed when the token expires");
    assert_eq!(closed, json!({"closed": 4403}));
}

#[tokio::test]
async fn protocol_errors_close_the_connection_with_their_codes() {
    let (stack, _notif) = start().await;
    let bearer = json!({"Authorization": format!("Bearer {}", token("1"))});
    let init = json!({"type": "connection_init", "payload": bearer}).to_string();
    for (what, text, code) in [
        ("a second connection_init", init.as_str(), 4429),
        ("invalid JSON", "{not json", 4400),
        ("an unknown message type", r#"{"type":"teleport"}"#, 4400),
        (
            "a subscribe without an id",
            r#"{"type":"subscribe","payload":{"query":"{ ping }"}}"#,
            4400,
        ),
    ] {
        let mut ws = connect_as(&stack, "1").await;
        send_text(&mut ws, text).await;
        assert_eq!(recv(&mut ws).await, Some(json!({"closed": code})), "{what}");
    }
    // A subscribe before connection_init is unauthorised.
    let url = stack.router_url.replace("http://", "ws://");
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    subscribe(&mut ws, "s1", "subscribe").await;
    assert_eq!(recv(&mut ws).await, Some(json!({"closed": 4401})));
}

#[tokio::test]
async fn operations_past_the_cap_get_an_error_and_the_connection_stays_open() {
    let (stack, notif) = start_with(|c| c.websocket.max_operations = 3).await;
    let mut ws = connect_as(&stack, "1").await;
    for id in ["s1", "s2", "s3"] {
        subscribe(&mut ws, id, "subscribe").await;
    }
    subscribe(&mut ws, "s4", "subscribe").await;
    let refused = recv(&mut ws).await.expect("an error");
    assert_eq!(refused["id"], "s4", "{refused}");
    assert_eq!(refused["type"], "error");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "TOO_MANY_OPERATIONS"
    );
    // Ending one makes room again, and the others still receive events.
    send_text(&mut ws, r#"{"id":"s1","type":"complete"}"#).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    subscribe(&mut ws, "s5", "subscribe").await;
    let got = publish_until_seen(&notif, &mut ws, "1", "still here").await;
    assert_eq!(got["type"], "next", "{got}");
    assert_ne!(got["id"], "s1");
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected() {
    let (stack, notif) = start_with(|c| {
        c.websocket.outgoing_queue = 4;
        c.websocket.write_timeout_ms = 300;
    })
    .await;
    let mut ws = connect_as(&stack, "1").await;
    subscribe(&mut ws, "s1", "subscribe").await;
    // Make sure the subscription is live, then stop reading.
    publish_until_seen(&notif, &mut ws, "1", "first").await;
    let big = "x".repeat(256 * 1024);
    for _ in 0..200 {
        notif.bus.publish("1", &big);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Now read what reached us: the router gave up on this client, so the stream ends
    // (closed or reset) before all 200 events arrive.
    let mut received = 0;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Text(_)) {
                received += 1;
            }
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was not ended");
    assert!(received < 200, "all {received} events were delivered");
}

#[tokio::test]
async fn events_published_while_the_upstream_is_down_arrive_once_after_it_returns() {
    let (stack, notif) = start().await;
    let mut ws = connect_as(&stack, "1").await;
    subscribe(&mut ws, "s", "subscribe").await;
    let first = publish_until_seen(&notif, &mut ws, "1", "before").await;
    assert_eq!(
        first["payload"]["data"]["notificationAdded"]["message"],
        "before"
    );
    // Drain repeats of "before" sent while the subscription was being set up.
    while tokio::time::timeout(Duration::from_millis(300), recv(&mut ws))
        .await
        .is_ok_and(|m| m.is_some())
    {}
    notif.refuse.store(true, Ordering::SeqCst);
    notif.kill.send(()).expect("kill upstream sockets");
    // While the router cannot reach the subgraph, two events are published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    notif.bus.publish("1", "while down 1");
    notif.bus.publish("1", "while down 2");
    notif.refuse.store(false, Ordering::SeqCst);
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let got = recv(&mut ws).await.expect("the missed events");
        assert_eq!(got["type"], "next", "{got}");
        if let Some(m) = got["payload"]["data"]["notificationAdded"]["message"].as_str() {
            messages.push(m.to_owned());
        }
    }
    assert_eq!(messages, ["while down 1", "while down 2"]);
    // Nothing twice, and the router's resume key never reaches the client.
    let more = tokio::time::timeout(Duration::from_millis(500), recv(&mut ws)).await;
    assert!(
        more.is_err() || more.as_ref().is_ok_and(Option::is_none),
        "{more:?}"
    );
}

#[tokio::test]
async fn an_operation_that_falls_behind_resumes_from_its_cursor_and_misses_nothing() {
    // The client reads slowly through a one-message queue, so the router's per-operation
    // event queue fills, the operation is resubscribed, and it resumes after the last
    // event it forwarded.
    let (stack, notif) = start_with(|c| c.websocket.outgoing_queue = 1).await;
    let mut ws = connect_as(&stack, "1").await;
    subscribe(&mut ws, "s", "subscribe").await;
    publish_until_seen(&notif, &mut ws, "1", "warm-up").await;
    while tokio::time::timeout(Duration::from_millis(300), recv(&mut ws))
        .await
        .is_ok_and(|m| m.is_some())
    {}
    for i in 0..300 {
        notif.bus.publish("1", &format!("m{i}"));
    }
    let mut got = Vec::new();
    while got.len() < 300 {
        let msg = recv(&mut ws).await.expect("every event arrives");
        if let Some(m) = msg["payload"]["data"]["notificationAdded"]["message"].as_str() {
            got.push(m.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let expected: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "in order, once each");
}

// ---- subscriptions over HTTP: Server-Sent Events and multipart -------------------

const SSE: &str = "text/event-stream";
const APOLLO_MULTIPART: &str = "multipart/mixed;subscriptionSpec=\"1.0\", application/json";

/// Publishes for `user` until the stream shows an event (the upstream subscription
/// may not be registered yet); returns the event's data.
async fn publish_until_event(
    notif: &NotificationsSubgraph,
    s: &mut streams::HttpStream,
    user: &str,
    message: &str,
) -> (String, Value) {
    for _ in 0..50 {
        notif.bus.publish(user, message);
        if let Some((event, data)) = s.next_event(Duration::from_millis(100)).await {
            return (event, serde_json::from_str(&data).expect("JSON data"));
        }
    }
    panic!("no SSE event for {user}");
}

async fn publish_until_part(
    notif: &NotificationsSubgraph,
    s: &mut streams::HttpStream,
    user: &str,
    message: &str,
) -> Value {
    for _ in 0..50 {
        notif.bus.publish(user, message);
        if let Some(part) = s.next_payload(Duration::from_millis(100)).await {
            return part;
        }
    }
    panic!("no multipart part for {user}");
}

#[tokio::test]
async fn a_subscription_over_sse_gets_each_event_with_fields_from_other_subgraphs() {
    let (stack, notif) = start().await;
    let ada = token("1");
    let mut s = streams::open(&stack.router_url, SSE, Some(&ada), SUBSCRIPTION, json!({})).await;
    assert_eq!(s.status, 200);
    assert!(
        s.content_type.starts_with("text/event-stream"),
        "{}",
        s.content_type
    );
    let (event, data) = publish_until_event(&notif, &mut s, "1", "over sse").await;
    assert_eq!(event, "next");
    assert_eq!(
        data,
        json!({"data": {"notificationAdded": {"message": "over sse",
            "user": {"id": "1", "name": "Ada Lovelace"}}}})
    );
    // Another user's events never reach this stream.
    notif.bus.publish("2", "not for ada");
    notif.bus.publish("1", "second");
    let (_, data) = s
        .next_event(Duration::from_secs(5))
        .await
        .expect("next event");
    let message =
        serde_json::from_str::<Value>(&data).unwrap()["data"]["notificationAdded"]["message"]
            .clone();
    assert!(message == "second" || message == "over sse", "{message}");
}

#[tokio::test]
async fn a_client_that_leaves_an_sse_stream_ends_its_upstream_subscription() {
    let (stack, notif) = start().await;
    let mut s = streams::open(
        &stack.router_url,
        SSE,
        Some(&token("1")),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    publish_until_event(&notif, &mut s, "1", "hello").await;
    assert_eq!(notif.connections.load(Ordering::SeqCst), 1);
    drop(s);
    // The router notices the closed stream and closes its upstream socket.
    for _ in 0..100 {
        if notif.bus.live.receiver_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the upstream subscription outlived the client");
}

#[tokio::test]
async fn a_multipart_subscription_gets_payload_parts_and_heartbeats() {
    let (stack, notif) = start().await;
    let mut s = streams::open(
        &stack.router_url,
        APOLLO_MULTIPART,
        Some(&token("2")),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    assert_eq!(s.status, 200);
    assert!(
        s.content_type.contains("subscriptionSpec=\"1.0\""),
        "{}",
        s.content_type
    );
    let part = publish_until_part(&notif, &mut s, "2", "multipart").await;
    assert_eq!(
        part,
        json!({"payload": {"data": {"notificationAdded": {"message": "multipart",
            "user": {"id": "2", "name": "Alan Turing"}}}}})
    );
    // Idle: a heartbeat `{}` within the heartbeat interval.
    let beat = s
        .next_part(Duration::from_secs(8))
        .await
        .expect("heartbeat");
    assert!(
        beat == json!({}) || beat["payload"]["data"].is_object(),
        "{beat}"
    );
}

#[tokio::test]
async fn a_subscription_over_incremental_multipart_has_next_on_every_part() {
    let (stack, notif) = start().await;
    let mut s = streams::open(
        &stack.router_url,
        "multipart/mixed",
        Some(&token("1")),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    let part = publish_until_part(&notif, &mut s, "1", "incremental").await;
    assert_eq!(part["hasNext"], true, "{part}");
    assert_eq!(part["data"]["notificationAdded"]["message"], "incremental");
}

#[tokio::test]
async fn http_subscriptions_pass_the_same_token_check_rate_limit_and_safelist() {
    // An invalid token: 401 before any stream opens.
    let (stack, _notif) = start_with(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 1;
    })
    .await;
    let s = streams::open(
        &stack.router_url,
        SSE,
        Some("not-a-token"),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    assert_eq!(s.status, 401);
    // The bucket is shared with every other door: the second request is refused.
    let first = streams::open(
        &stack.router_url,
        SSE,
        Some(&token("1")),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    assert_eq!(first.status, 200);
    let second = streams::open(
        &stack.router_url,
        APOLLO_MULTIPART,
        Some(&token("1")),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    assert_eq!(second.status, 429);

    use sha2::Digest;
    let dir = std::env::temp_dir().join(format!("safelist-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifest = dir.join("manifest.json");
    let hash = hex::encode(sha2::Sha256::digest(SUBSCRIPTION.as_bytes()));
    std::fs::write(
        &manifest,
        json!({"operations": {hash: SUBSCRIPTION}}).to_string(),
    )
    .expect("manifest");
    let (stack, notif) = start_with(|c| {
        c.persisted_queries.safelist_path = Some(manifest.clone());
        c.persisted_queries.safelist_enforce = true;
    })
    .await;
    let other = "subscription { notificationAdded { message } }";
    let mut refused =
        streams::open(&stack.router_url, SSE, Some(&token("1")), other, json!({})).await;
    let body = refused.rest(Duration::from_secs(5)).await;
    assert!(body.contains("OPERATION_NOT_IN_SAFELIST"), "{body}");
    let mut s = streams::open(
        &stack.router_url,
        SSE,
        Some(&token("1")),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    let (event, _) = publish_until_event(&notif, &mut s, "1", "allowed").await;
    assert_eq!(event, "next");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_sse_subscription_ends_with_unauthenticated_when_its_token_expires() {
    let (stack, _notif) = start().await;
    let mut s = streams::open(
        &stack.router_url,
        SSE,
        Some(&token_for("1", 2)),
        SUBSCRIPTION,
        json!({}),
    )
    .await;
    assert_eq!(s.status, 200);
    let (event, data) = s
        .next_event(Duration::from_secs(8))
        .await
        .expect("an event at expiry");
    assert_eq!(event, "next");
    assert!(data.contains("UNAUTHENTICATED"), "{data}");
    assert_eq!(
        s.next_event(Duration::from_secs(2))
            .await
            .expect("complete")
            .0,
        "complete"
    );
}

#[tokio::test]
async fn queries_and_bad_requests_over_sse_are_next_events_then_complete() {
    let (stack, _notif) = start().await;
    let mut s = streams::open(&stack.router_url, SSE, None, "{ ping }", json!({})).await;
    let (event, data) = s.next_event(Duration::from_secs(5)).await.expect("result");
    assert_eq!(
        (event.as_str(), data.as_str()),
        ("next", r#"{"data":{"ping":true}}"#)
    );
    assert_eq!(
        s.next_event(Duration::from_secs(5)).await.expect("end").0,
        "complete"
    );
    for bad in [
        "subscription { nope }",
        "{",
        "subscription($a: ID!) { notificationAdded(after: $a) { id } }",
    ] {
        let mut s = streams::open(&stack.router_url, SSE, None, bad, json!({})).await;
        assert_eq!(s.status, 200, "{bad}");
        let (event, data) = s
            .next_event(Duration::from_secs(5))
            .await
            .expect("error event");
        assert_eq!(event, "next", "{bad}");
        let v: Value = serde_json::from_str(&data).expect("JSON");
        assert!(
            v["errors"][0]["extensions"]["code"].is_string(),
            "{bad}: {v}"
        );
        assert_eq!(
            s.next_event(Duration::from_secs(5)).await.expect("end").0,
            "complete"
        );
    }
    // Over JSON only, a subscription is refused with a pointer to the streams.
    let (status, v) =
        common::post_json(&stack.router_url, json!({"query": SUBSCRIPTION}), &[]).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("text/event-stream"),
        "{v}"
    );
}
