//! Subscriptions through the router: real async-graphql subgraphs, real websockets.

mod common;

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

    #[derive(Clone)]
    pub struct Bus(pub broadcast::Sender<(String, String)>);

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
        ) -> impl Stream<Item = Notification> + use<> {
            let viewer = ctx.data_opt::<Viewer>().and_then(|v| v.0.clone());
            let rx = ctx.data_unchecked::<Bus>().0.subscribe();
            let events = futures::stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(item) => return Some((item, rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            events.filter_map(move |item| {
                let viewer = viewer.clone();
                async move {
                    let (user, message) = item;
                    (Some(&user) == viewer.as_ref()).then(|| Notification {
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
    bus: broadcast::Sender<(String, String)>,
    kill: broadcast::Sender<()>,
    connections: Arc<AtomicUsize>,
    /// When set, new websocket upgrades are refused (the subgraph is "down").
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

async fn start_notifications() -> NotificationsSubgraph {
    let (bus, _) = broadcast::channel(64);
    let (kill, _) = broadcast::channel::<()>(4);
    let schema: notifications::S = Schema::build(
        notifications::Query,
        EmptyMutation,
        notifications::Subscription,
    )
    .data(notifications::Bus(bus.clone()))
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
    let stack = common::start_router(supergraph, config, vec![users], sdl).await;
    (stack, notif)
}

fn token(sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": sub, "exp": now + 600, "iat": now, "jti": "j"});
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
        let _ = notif.bus.send((user.to_owned(), message.to_owned()));
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
async fn an_upstream_that_stays_down_ends_the_subscription_with_an_error() {
    let (stack, notif) = start().await;
    let mut ws = connect_as(&stack, "1").await;
    subscribe(&mut ws, "s", "subscribe").await;
    publish_until_seen(&notif, &mut ws, "1", "first").await;
    notif.refuse.store(true, Ordering::SeqCst);
    notif.kill.send(()).expect("kill upstream sockets");
    let mut got = recv(&mut ws).await.expect("a message after the drop");
    while got["type"] == "next" {
        got = recv(&mut ws).await.expect("a message after the drop");
    }
    assert_eq!(got["type"], "error", "{got}");
    assert_eq!(got["id"], "s");
    assert_eq!(
        got["payload"][0]["extensions"]["code"],
        "SUBGRAPH_UNAVAILABLE"
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
