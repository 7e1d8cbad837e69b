//! Test helpers: a unique database per test (dropped afterwards), an app started on
//! 127.0.0.1:0, and a small GraphQL client. Real server, real driver, real HTTP.

use std::net::SocketAddr;

use axum::Router;
use mongodb::Database;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::{Secret, ServiceConfig};

/// The JWT secret every test app uses.
pub const TEST_JWT_SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

/// The service credential `test_config` gives every test service.
pub const TEST_SERVICE_TOKEN: &str = "test-service-token";

/// `MONGODB_URI`, or the local default.
pub fn mongodb_uri() -> String {
    std::env::var("MONGODB_URI")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "mongodb://127.0.0.1:27017".to_string())
}

/// A service configuration for tests, pointing at a unique database.
pub fn test_config(service: &str) -> ServiceConfig {
    crate::telemetry::init("test", "warn", crate::config::LogFormat::Text, None);
    let mut c = ServiceConfig::from_vars(&[("JWT_SECRET", TEST_JWT_SECRET)], service, 0)
        .expect("the test configuration is valid");
    c.mongodb_uri = mongodb_uri();
    c.database = unique_db_name(service);
    c.service_token = Secret::new(TEST_SERVICE_TOKEN);
    c
}

pub fn unique_db_name(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // Keep the tail: the random part of a v7 id.
    format!("t_{prefix}_{}", &id[id.len() - 12..])
}

/// A database that is dropped when the value goes out of scope.
pub struct TestDb {
    pub db: Database,
    uri: String,
}

impl TestDb {
    pub async fn new(config: &ServiceConfig) -> TestDb {
        let db = crate::db::connect(&config.mongodb_uri, &config.database)
            .await
            .expect("tests need a MongoDB server: set MONGODB_URI or run `make db-start`");
        TestDb {
            db,
            uri: config.mongodb_uri.clone(),
        }
    }
}

impl TestDb {
    /// A database whose commands are recorded in the returned log, to count the round
    /// trips an operation costs.
    pub async fn logged(config: &ServiceConfig) -> (TestDb, CommandLog) {
        let log = CommandLog::default();
        let sink = log.clone();
        let db = crate::db::connect_with(&config.mongodb_uri, &config.database, |options| {
            options.command_event_handler = Some(mongodb::event::EventHandler::callback(
                move |event: mongodb::event::command::CommandEvent| {
                    if let mongodb::event::command::CommandEvent::Started(started) = event {
                        sink.0.lock().expect("command log").push(started.command);
                    }
                },
            ));
        })
        .await
        .expect("tests need a MongoDB server: set MONGODB_URI or run `make db-start`");
        let uri = config.mongodb_uri.clone();
        (TestDb { db, uri }, log)
    }
}

/// The commands a [`TestDb::logged`] database sent (their documents, in order).
#[derive(Clone, Default)]
pub struct CommandLog(std::sync::Arc<std::sync::Mutex<Vec<mongodb::bson::Document>>>);

impl CommandLog {
    /// How many `command`s (e.g. `find`, `aggregate`) were sent on `collection` since
    /// the last [`CommandLog::clear`].
    pub fn count(&self, command: &str, collection: &str) -> usize {
        self.count_where(command, collection, |_| true)
    }

    /// Like [`CommandLog::count`], only the commands whose document passes `keep` (e.g.
    /// a `find` by `_id`, apart from a background poll of the same collection).
    pub fn count_where(
        &self,
        command: &str,
        collection: &str,
        keep: impl Fn(&mongodb::bson::Document) -> bool,
    ) -> usize {
        self.0
            .lock()
            .expect("command log")
            .iter()
            .filter(|c| c.get_str(command).is_ok_and(|coll| coll == collection) && keep(c))
            .count()
    }

    pub fn clear(&self) {
        self.0.lock().expect("command log").clear();
    }
}

/// Set (`TEST_KEEP_DATABASES=1`, as `make test` does for its throwaway servers): test
/// databases are left for the server's own removal rather than dropped one by one.
/// SecantusDB drops a database key by key under its global lock, so dropping the
/// databases of the 10,000-row tests held every other test up for minutes.
pub const KEEP_DATABASES: &str = "TEST_KEEP_DATABASES";

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DATABASES).is_some_and(|v| !v.is_empty()) {
            return;
        }
        let name = self.db.name().to_string();
        let uri = self.uri.clone();
        // Drop the database from a fresh runtime on its own thread: the test's runtime
        // may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            rt.block_on(async move {
                if let Ok(client) = mongodb::Client::with_uri_str(&uri).await {
                    let _ = client.database(&name).drop().await;
                }
            });
        })
        .join();
    }
}

/// A server running on 127.0.0.1:0 until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(app: Router) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        TestServer::start_on(listener, app)
    }

    pub fn start_on(listener: TcpListener, app: Router) -> TestServer {
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = crate::server::serve(listener, app, async {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            addr,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A GraphQL client for tests.
#[derive(Clone)]
pub struct Gql {
    pub http: reqwest::Client,
    pub url: String,
}

impl Gql {
    pub fn new(url: impl Into<String>) -> Gql {
        Gql {
            http: reqwest::Client::new(),
            url: url.into(),
        }
    }

    /// Sends a query and returns the whole JSON response.
    pub async fn request(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        resp.json().await.expect("a JSON response")
    }

    /// Sends a request body as written (numbers a `serde_json::Value` cannot hold
    /// exactly, such as `12.34999999999999999999`) and returns the whole JSON response.
    pub async fn request_raw(&self, body: &str, token: Option<&str>) -> Value {
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        resp.json().await.expect("a JSON response")
    }

    /// `GET` with the given query-string parameters (`query`, `variables` as JSON
    /// text...) and returns the whole JSON response.
    pub async fn request_get(&self, params: &[(&str, &str)], token: Option<&str>) -> Value {
        let mut req = self.http.get(&self.url).query(params);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        resp.json().await.expect("a JSON response")
    }

    /// Sends a query that must succeed; returns `data`.
    pub async fn ok(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let body = self.request(query, variables, token).await;
        assert!(
            body.get("errors")
                .is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())),
            "unexpected errors: {body:#}"
        );
        body["data"].clone()
    }

    /// Sends a query that must fail; returns the first error's `extensions.code`.
    pub async fn error_code(&self, query: &str, variables: Value, token: Option<&str>) -> String {
        let body = self.request(query, variables, token).await;
        first_error_code(&body)
    }
}

/// The first error's code, or a panic showing the body.
pub fn first_error_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {body:#}"))
        .to_string()
}

/// Compares a subgraph's exported SDL with `schema/<service>.graphql` at the workspace
/// root; with `UPDATE_SCHEMA=1`, rewrites the file instead.
pub fn assert_sdl_matches_committed(service: &str, sdl: &str) {
    let path = workspace_root()
        .join("schema")
        .join(format!("{service}.graphql"));
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("schema dir")).expect("create schema dir");
        std::fs::write(&path, sdl).expect("write schema file");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "{} differs from the code's SDL; run `make schema` and commit the result",
        path.display()
    );
}

/// The workspace root (where the top-level Cargo.toml is).
pub fn workspace_root() -> std::path::PathBuf {
    let mut dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("schema").is_dir() && !dir.join("Cargo.lock").is_file() {
        if !dir.pop() {
            break;
        }
    }
    dir
}

impl TestServer {
    /// Starts on a given loopback port (to restart a server where its peers expect it).
    pub async fn start_on_port(port: u16, app: Router) -> TestServer {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .expect("bind the same port again");
        let listener = socket.listen(1024).expect("listen");
        TestServer::start_on(listener, app)
    }
}

/// Polls `check` every 25 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// A readable `weekly.summary` event of `user` (any consumer can read it; what it makes of
/// it is its handler's business).
pub fn weekly_summary_event(user: &str) -> crate::events::Event {
    crate::events::Event::new(
        "weekly.summary",
        user,
        chrono::Utc::now(),
        json!({ "week": "2026-W48", "from": "2026-11-23", "to": "2026-11-29", "currency": "USD",
            "spentMinor": 100, "expenseCount": 1, "topCategory": null, "topCategoryMinor": null,
            "message": "You spent 1.00 USD this week." }),
    )
}

/// Posts `event` to `server`'s `/internal/events` with `token` as the service
/// credential; returns the status.
pub async fn post_event(
    server: &TestServer,
    token: &str,
    event: &crate::events::Event,
) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(server.url(crate::events::EVENTS_PATH))
        .header(crate::events::SERVICE_TOKEN_HEADER, token)
        .json(event)
        .send()
        .await
        .expect("the event is posted")
        .status()
}

/// Checks that `e` is an `INTERNAL` error whose (logged) cause names each of `needles`.
pub fn assert_internal(e: crate::AppError, needles: &[&str]) {
    assert_eq!(e.code(), crate::ErrorCode::Internal);
    let text = format!("{:#}", anyhow::Error::from(e));
    for n in needles {
        assert!(text.contains(n), "{text:?} should name {n:?}");
    }
}

/// `GET /internal/dead-letters` of a consumer (with the test service credential).
pub async fn dead_letters(server: &TestServer) -> Value {
    let r = reqwest::Client::new()
        .get(server.url("/internal/dead-letters"))
        .header(crate::events::SERVICE_TOKEN_HEADER, TEST_SERVICE_TOKEN)
        .send()
        .await
        .expect("dead letters listed");
    assert_eq!(r.status(), 200, "listing dead letters");
    r.json().await.expect("a JSON list")
}

/// `POST /internal/dead-letters/{id}/redrive`: the status and the answer.
pub async fn redrive(server: &TestServer, id: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url(&format!("/internal/dead-letters/{id}/redrive")))
        .header(crate::events::SERVICE_TOKEN_HEADER, TEST_SERVICE_TOKEN)
        .send()
        .await
        .expect("re-drive sent");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The value of the sample of `metric` whose labels include `labels` on `/metrics`
/// (0 when there is none).
pub async fn metric(server: &TestServer, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| {
            let (n, rest) = name.split_once('{').unwrap_or((name, ""));
            n == metric
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Events a consumer cannot read, made from a valid one, each with the reason it must
/// be parked for: an unknown type, an unknown version, and an invalid payload.
pub fn poison_events(valid: &crate::events::Event) -> Vec<(crate::events::Event, &'static str)> {
    let fresh = || {
        let mut e = valid.clone();
        e.id = crate::ids::EventId::new();
        e
    };
    let mut unknown_type = fresh();
    unknown_type.kind = "expense.teleported".into();
    let mut unknown_version = fresh();
    unknown_version.version = 99;
    let mut invalid = fresh();
    invalid.data = serde_json::json!({ "what": "not the payload of this type" });
    vec![
        (unknown_type, "unknown_type"),
        (unknown_version, "unknown_version"),
        (invalid, "invalid_payload"),
    ]
}

/// Sends each of `poison_events(valid)` to a consumer and checks that each is parked with
/// its reason, listed, and counted on `/metrics`; returns the parked ids by reason.
pub async fn assert_poison_events_are_parked(
    server: &TestServer,
    valid: &crate::events::Event,
) -> Vec<(String, &'static str)> {
    let mut parked = Vec::new();
    for (event, reason) in poison_events(valid) {
        let before = metric(server, "events_parked_total", &[("reason", reason)]).await;
        assert_eq!(
            post_event(server, TEST_SERVICE_TOKEN, &event).await,
            200,
            "a {reason} event is acknowledged, not refused"
        );
        let after = metric(server, "events_parked_total", &[("reason", reason)]).await;
        assert_eq!(after, before + 1.0, "{reason} is counted");
        parked.push((event.id.to_string(), reason));
    }
    let list = dead_letters(server).await;
    for (id, reason) in &parked {
        let found = list["deadLetters"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["id"] == *id.as_str()))
            .unwrap_or_else(|| panic!("{reason} event {id} is listed: {list}"));
        assert_eq!(found["reason"], *reason, "{found}");
        assert!(found["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(found["userId"], valid.user_id.as_str());
    }
    assert!(
        metric(server, "events_dead_letters", &[]).await >= parked.len() as f64,
        "the dead letters are counted"
    );
    parked
}

/// A stand-in for an event consumer: records what it receives on `/internal/events`
/// (checking the service credential), and can be told to refuse deliveries.
#[derive(Clone, Default)]
pub struct EventSink {
    received: std::sync::Arc<std::sync::Mutex<Vec<crate::events::Event>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EventSink {
    pub async fn start(token: &str) -> (EventSink, TestServer) {
        let sink = EventSink::default();
        let s = sink.clone();
        let token = crate::config::Secret::new(token);
        let app = Router::new().route(
            crate::events::EVENTS_PATH,
            axum::routing::post(
                move |headers: axum::http::HeaderMap,
                      axum::Json(ev): axum::Json<crate::events::Event>| {
                    let s = s.clone();
                    let token = token.clone();
                    async move {
                        use std::sync::atomic::Ordering;
                        if !crate::events::has_service_token(&headers, &token) {
                            return axum::http::StatusCode::UNAUTHORIZED;
                        }
                        if s.refuse.load(Ordering::SeqCst) {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        s.received.lock().expect("sink lock").push(ev);
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let server = TestServer::start(app).await;
        (sink, server)
    }

    pub fn refuse(&self, refuse: bool) {
        self.refuse
            .store(refuse, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn events(&self) -> Vec<crate::events::Event> {
        self.received.lock().expect("sink lock").clone()
    }
}

/// A stand-in for the users subgraph's `me`: answers `{ me { id currency timezone } }`
/// for the verified bearer token, from profiles the test sets (default USD / UTC).
#[derive(Clone, Default)]
pub struct FakeUsers {
    profiles: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (String, String)>>>,
}

impl FakeUsers {
    pub async fn start() -> (FakeUsers, TestServer) {
        let users = FakeUsers::default();
        let u = users.clone();
        let keys = crate::auth::JwtKeys::hs256(&Secret::new(TEST_JWT_SECRET));
        let app = Router::new().route(
            "/graphql",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let u = u.clone();
                let keys = keys.clone();
                async move {
                    let auth = headers
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let Ok(crate::auth::Caller::User(user)) = keys.caller_from_header(auth) else {
                        return axum::Json(json!({ "data": { "me": null } }));
                    };
                    let (currency, timezone) = u
                        .profiles
                        .lock()
                        .expect("profiles lock")
                        .get(&user.user_id)
                        .cloned()
                        .unwrap_or_else(|| ("USD".into(), "UTC".into()));
                    axum::Json(json!({ "data": { "me": {
                        "id": user.user_id, "currency": currency, "timezone": timezone } } }))
                }
            }),
        );
        let server = TestServer::start(app).await;
        (users, server)
    }

    pub fn set(&self, user_id: &str, currency: &str, timezone: &str) {
        self.profiles.lock().expect("profiles lock").insert(
            user_id.to_string(),
            (currency.to_string(), timezone.to_string()),
        );
    }
}

/// A fresh user id and an access token for it, signed with the test secret.
pub fn test_user() -> (String, String) {
    let id = crate::ids::new_id();
    let keys = crate::auth::JwtKeys::hs256(&Secret::new(TEST_JWT_SECRET));
    let token = keys
        .issue(&id, std::time::Duration::from_secs(3600))
        .expect("sign a test token");
    (id, token)
}

/// What `docker-compose.yml` gives one service.
#[derive(Debug, Default)]
pub struct ComposeService {
    /// The `environment` map; `${...}` interpolations are replaced by a stand-in value.
    pub environment: std::collections::BTreeMap<String, String>,
    /// Container ports of `ports` (`"host:container"`).
    pub container_ports: Vec<u16>,
    /// Ports named by `http://...:PORT/` URLs in the health check.
    pub health_ports: Vec<u16>,
}

/// A value standing in for `${VAR:?...}` interpolations: long enough for any secret.
const COMPOSE_STAND_IN: &str = "compose-interpolated-value-0123456789abcdef";

/// The value a whole-value interpolation stands for: `${VAR:-default}` gives the
/// default; `${VAR}` and `${VAR:?message}` give a stand-in.
fn compose_interpolation(value: &str) -> String {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return value.to_string();
    };
    match inner.split_once(":-") {
        Some((_, default)) => default.to_string(),
        None => COMPOSE_STAND_IN.to_string(),
    }
}

/// Reads one service of the workspace's `docker-compose.yml`.
pub fn compose_service(name: &str) -> ComposeService {
    use yaml_rust2::{Yaml, YamlLoader};
    let path = workspace_root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).expect("docker-compose.yml is readable");
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is valid YAML");
    let service = &docs[0]["services"][name];
    assert!(
        !service.is_badvalue(),
        "docker-compose.yml has no service {name:?}"
    );
    let scalar = |y: &Yaml| match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("unexpected YAML value {other:?}"),
    };
    let mut out = ComposeService::default();
    if let Some(env) = service["environment"].as_hash() {
        for (k, v) in env {
            let value = scalar(v);
            let value = compose_interpolation(&value);
            out.environment.insert(scalar(k), value);
        }
    }
    for port in service["ports"].as_vec().into_iter().flatten() {
        let text = scalar(port);
        let container = text.rsplit(':').next().unwrap_or(&text);
        out.container_ports
            .push(container.parse().expect("a numeric container port"));
    }
    for part in service["healthcheck"]["test"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let text = scalar(part);
        if let Some(rest) = text.strip_prefix("http://") {
            let authority = rest.split('/').next().unwrap_or("");
            if let Some((_, port)) = authority.rsplit_once(':') {
                out.health_ports
                    .push(port.parse().expect("a numeric health-check port"));
            }
        }
    }
    out
}

/// Checks a service of `docker-compose.yml` against the configuration code: `read`
/// builds the service's whole configuration from the given variables and returns the
/// port it would listen on. Every variable the file sets must be one `read` asked for,
/// and the published and health-checked ports must be that port.
pub fn assert_compose_matches(
    name: &str,
    read: impl FnOnce(&dyn crate::config::Vars) -> Result<u16, crate::config::ConfigError>,
) {
    let compose = compose_service(name);
    let recording = crate::config::Recording::new(&compose.environment);
    let port = read(&recording)
        .unwrap_or_else(|e| panic!("{name}: the compose configuration is refused: {e}"));
    let read_names = recording.names();
    let unknown: Vec<&String> = compose
        .environment
        .keys()
        .filter(|k| !read_names.contains(*k))
        .collect();
    assert!(
        unknown.is_empty(),
        "{name}: docker-compose.yml sets variables the service never reads: {unknown:?}"
    );
    assert!(
        !compose.container_ports.is_empty() && compose.container_ports.iter().all(|p| *p == port),
        "{name}: published ports {:?} differ from the listen port {port}",
        compose.container_ports
    );
    assert!(
        compose.health_ports.iter().all(|p| *p == port),
        "{name}: health check ports {:?} differ from the listen port {port}",
        compose.health_ports
    );
}
