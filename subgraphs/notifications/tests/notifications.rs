#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The notifications subgraph over HTTP and websockets on a real database, with a
//! real SMTP dialogue (a small SMTP receiver on 127.0.0.1:0 written here) and a real
//! webhook receiver that checks signatures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use kit::events::Event;
use kit::testing::{
    FakeUsers, Gql, TEST_SERVICE_TOKEN, TestDb, TestServer, assert_sdl_matches_committed,
    post_event, test_config, test_user, wait_until,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WEBHOOK_SECRET: &str = "webhook-test-secret";
const WAIT: Duration = Duration::from_secs(15);

/// Recipients and the raw message of each mail received.
type Mails = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// A minimal SMTP server: enough of RFC 5321 for one client to hand over messages.
#[derive(Clone, Default)]
struct SmtpReceiver {
    messages: Mails,
}

impl SmtpReceiver {
    async fn start() -> (SmtpReceiver, u16) {
        let r = SmtpReceiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let rr = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let rr = rr.clone();
                tokio::spawn(async move {
                    let (read, mut write) = sock.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                    let mut rcpt = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250 test\r\n"
                        } else if upper.starts_with("MAIL FROM") {
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO") {
                            rcpt.push(line[8..].trim().to_string());
                            b"250 OK\r\n"
                        } else if upper == "DATA" {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut body = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                body.push_str(&l);
                                body.push('\n');
                            }
                            rr.messages
                                .lock()
                                .unwrap()
                                .push((std::mem::take(&mut rcpt), body));
                            b"250 queued\r\n"
                        } else if upper == "QUIT" {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        } else {
                            b"250 OK\r\n"
                        };
                        write.write_all(reply).await.unwrap();
                    }
                });
            }
        });
        (r, port)
    }

    fn messages(&self) -> Vec<(Vec<String>, String)> {
        self.messages.lock().unwrap().clone()
    }
}

/// Receives webhook calls, verifies the signature, and refuses the first `fail` calls.
#[derive(Clone, Default)]
struct WebhookReceiver {
    calls: Arc<AtomicUsize>,
    fail: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<AtomicUsize>,
}

impl WebhookReceiver {
    async fn start(fail: usize) -> (WebhookReceiver, TestServer) {
        let r = WebhookReceiver::default();
        r.fail.store(fail, Ordering::SeqCst);
        let rr = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let rr = rr.clone();
                    async move {
                        let n = rr.calls.fetch_add(1, Ordering::SeqCst);
                        let ts: i64 = headers["x-signature-timestamp"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        let sig = headers["x-signature"].to_str().unwrap().to_string();
                        if sig != notifications::domain::sign(WEBHOOK_SECRET, ts, &body)
                            || (Utc::now().timestamp() - ts).abs() > 300
                        {
                            rr.bad_signatures.fetch_add(1, Ordering::SeqCst);
                            return axum::http::StatusCode::UNAUTHORIZED;
                        }
                        if n < rr.fail.load(Ordering::SeqCst) {
                            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        rr.accepted
                            .lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let server = TestServer::start(app).await;
        (r, server)
    }
}

const SMS_SID: &str = "AC0123456789abcdef";
const SMS_TOKEN: &str = "sms-test-token";
const SMS_FROM: &str = "+15005550006";

/// One message as an SMS provider took it.
#[derive(Debug, Clone, PartialEq)]
struct Sms {
    to: String,
    from: String,
    body: String,
}

/// A Twilio-compatible Messages API: checks the account in the path and the basic
/// auth, records `To`, `From` and `Body`, and answers each number's next scripted
/// status (201 when none is left).
#[derive(Clone, Default)]
struct SmsProvider {
    accepted: Arc<Mutex<Vec<Sms>>>,
    calls: Arc<AtomicUsize>,
    bad_auth: Arc<AtomicUsize>,
    script: Arc<Mutex<std::collections::HashMap<String, Vec<u16>>>>,
}

impl SmsProvider {
    async fn start() -> (SmsProvider, TestServer) {
        use base64::Engine as _;
        let p = SmsProvider::default();
        let pp = p.clone();
        let app =
            axum::Router::new().route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(
                    move |axum::extract::Path(sid): axum::extract::Path<String>,
                          headers: axum::http::HeaderMap,
                          axum::Form(form): axum::Form<
                        std::collections::HashMap<String, String>,
                    >| {
                        let pp = pp.clone();
                        async move {
                            pp.calls.fetch_add(1, Ordering::SeqCst);
                            let expected = format!(
                                "Basic {}",
                                base64::engine::general_purpose::STANDARD
                                    .encode(format!("{SMS_SID}:{SMS_TOKEN}"))
                            );
                            if sid != SMS_SID
                                || headers.get("authorization").map(|v| v.to_str().unwrap())
                                    != Some(expected.as_str())
                            {
                                pp.bad_auth.fetch_add(1, Ordering::SeqCst);
                                return (axum::http::StatusCode::UNAUTHORIZED, "{}".to_string());
                            }
                            let to = form["To"].clone();
                            let status = pp
                                .script
                                .lock()
                                .unwrap()
                                .get_mut(&to)
                                .and_then(|s| (!s.is_empty()).then(|| s.remove(0)))
                                .unwrap_or(201);
                            if status != 201 {
                                let body = json!({ "code": 21211, "message": "scripted refusal" });
                                return (
                                    axum::http::StatusCode::from_u16(status).unwrap(),
                                    body.to_string(),
                                );
                            }
                            pp.accepted.lock().unwrap().push(Sms {
                                to,
                                from: form["From"].clone(),
                                body: form["Body"].clone(),
                            });
                            let sid = format!("SM{}", kit::ids::new_id().replace('-', ""));
                            (
                                axum::http::StatusCode::CREATED,
                                json!({ "sid": sid, "status": "queued" }).to_string(),
                            )
                        }
                    },
                ),
            );
        let server = TestServer::start(app).await;
        (p, server)
    }

    /// The next statuses answered for messages to `to`.
    fn script(&self, to: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(to.to_string(), statuses.to_vec());
    }

    fn to(&self, number: &str) -> Vec<Sms> {
        let all = self.accepted.lock().unwrap().clone();
        all.into_iter().filter(|m| m.to == number).collect()
    }
}

struct Stack {
    gql: Gql,
    server: TestServer,
    service: notifications::Service,
    settings: notifications::Settings,
    _db: TestDb,
    users: FakeUsers,
    _users_server: TestServer,
    smtp: SmtpReceiver,
    sms: SmsProvider,
    _sms_server: TestServer,
}

async fn start_with(tune: impl FnOnce(&mut notifications::Settings)) -> Stack {
    let config = test_config(notifications::SERVICE);
    let db = TestDb::new(&config).await;
    let (users, users_server) = FakeUsers::start().await;
    let (smtp, smtp_port) = SmtpReceiver::start().await;
    let (sms, sms_server) = SmsProvider::start().await;
    let mut s = notifications::Settings::from_vars(
        &[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_TLS", "none"),
            ("WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET),
            ("WEBHOOK_ALLOW_HOSTS", "127.0.0.1"),
            ("PUSH_ALLOW_HOSTS", "127.0.0.1"),
            ("VAPID_SUBJECT", "mailto:ops@example.com"),
            ("SMS_ACCOUNT_SID", SMS_SID),
            ("SMS_AUTH_TOKEN", SMS_TOKEN),
            ("SMS_FROM", SMS_FROM),
        ],
        config,
    )
    .unwrap();
    s.smtp.port = smtp_port;
    s.sms.api_url = sms_server.url("");
    s.users.url = users_server.url("/graphql");
    s.users.ttl = Duration::from_millis(1);
    s.delivery = notifications::service::DeliverySettings::fast();
    tune(&mut s);
    let service = kit::bootstrap::start::<notifications::service::Notifications>(&s, db.db.clone())
        .await
        .unwrap();
    let server = TestServer::start(service.router.clone()).await;
    Stack {
        gql: Gql::new(server.url("/graphql")),
        server,
        service,
        settings: s,
        _db: db,
        users,
        _users_server: users_server,
        smtp,
        sms,
        _sms_server: sms_server,
    }
}

async fn start() -> Stack {
    start_with(|_| {}).await
}

fn alert_event(user: &str, threshold: i64) -> Event {
    Event::new(
        "budget.alert",
        user,
        Utc::now(),
        json!({
            "alertId": kit::ids::new_id(), "budgetId": kit::ids::new_id(), "category": "food",
            "threshold": threshold, "percentUsed": 85.5,
            "severity": if threshold >= 100 { "CRITICAL" } else { "WARNING" },
            "message": format!("food budget at {threshold}%"), "periodStart": "2024-03-01",
            "spentMinor": 8550, "amountMinor": 10000, "currency": "USD",
        }),
    )
}

/// The typed payload of an `alert_event`.
fn alert_data(e: &Event) -> contract::events::BudgetAlertRaised {
    match kit::events::DomainEvent::from_event(e) {
        Ok(kit::events::DomainEvent::BudgetAlert(data)) => data,
        other => panic!("not a budget alert: {other:?}"),
    }
}

const LIST: &str = "query($first: Int, $after: String, $unread: Boolean) { notifications(first: $first, after: $after, unreadOnly: $unread) { edges { cursor node { id type title message priority channels read deliveries { channel status attempts reason } } } pageInfo { hasNextPage endCursor } totalCount } unreadNotificationCount }";

impl Stack {
    /// Another instance of the service, named `instance`, over the same database.
    async fn another_instance(&self, instance: &str) -> (notifications::Service, TestServer) {
        let mut s = self.settings.clone();
        s.service.instance = instance.to_string();
        let service =
            kit::bootstrap::start::<notifications::service::Notifications>(&s, self._db.db.clone())
                .await
                .unwrap();
        let server = TestServer::start(service.router.clone()).await;
        (service, server)
    }

    async fn post(&self, event: &Event) -> u16 {
        post_event(&self.server, TEST_SERVICE_TOKEN, event)
            .await
            .as_u16()
    }

    async fn list(&self, token: &str) -> Value {
        self.gql.ok(LIST, json!({}), Some(token)).await
    }

    async fn prefs(&self, token: &str, input: Value) -> Value {
        self.gql
            .request(
                "mutation($i: NotificationPreferencesInput!) { updateNotificationPreferences(input: $i) { email webhookUrl timezone quietHours { start end } channels { channel enabled } types { type enabled } } }",
                json!({ "i": input }),
                Some(token),
            )
            .await
    }

    async fn first_deliveries(&self, token: &str) -> Value {
        self.list(token).await["notifications"]["edges"][0]["node"]["deliveries"].clone()
    }

    /// Waits until the newest notification's deliveries are `want`.
    async fn wait_deliveries(&self, token: &str, want: Value) {
        let reached = wait_until(WAIT, || async {
            self.first_deliveries(token).await == want
        })
        .await;
        assert!(
            reached,
            "deliveries never became {want}: {}",
            self.first_deliveries(token).await
        );
    }
}

#[test]
fn sdl_matches_committed_file() {
    assert_sdl_matches_committed(
        notifications::SERVICE,
        &kit::federation_sdl(&notifications::schema()),
    );
}

#[tokio::test]
async fn poison_events_are_parked_and_the_users_next_event_is_applied_at_once() {
    let s = start().await;
    let (u, token) = test_user();
    let valid = alert_event(&u, 80);
    let parked = kit::testing::assert_poison_events_are_parked(&s.server, &valid).await;
    assert_eq!(s.list(&token).await["notifications"]["totalCount"], 0);
    assert_eq!(s.post(&valid).await, 200);
    let d = s.list(&token).await;
    assert_eq!(d["notifications"]["totalCount"], 1, "{d}");
    // An event of a type notifications does not consume is parked, not dropped.
    let mut expense = valid.clone();
    expense.id = kit::ids::EventId::new();
    expense.kind = "expense.created".into();
    expense.data = json!({ "expenseId": kit::ids::new_id(), "version": 1, "before": null,
        "after": { "type": "EXPENSE", "amountMinor": 100, "currency": "USD", "category": "food",
                   "categoryKey": "food", "date": "2024-03-02" } });
    assert_eq!(s.post(&expense).await, 200);
    let dead = kit::testing::dead_letters(&s.server).await;
    let found = dead["deadLetters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == expense.id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{dead}"));
    assert_eq!(found["reason"], "rejected");
    // Re-driving what still cannot be read keeps it parked and notifies nobody.
    for (id, reason) in &parked {
        let (status, out) = kit::testing::redrive(&s.server, id).await;
        assert_eq!(
            (status, out["reason"].as_str()),
            (200, Some(*reason)),
            "{out}"
        );
    }
    assert_eq!(s.list(&token).await["notifications"]["totalCount"], 1);
}

#[tokio::test]
async fn a_budget_alert_becomes_one_notification_even_when_the_event_comes_again() {
    let s = start().await;
    let (u, token) = test_user();
    let e = alert_event(&u, 100);
    assert_eq!(s.post(&e).await, 200);
    assert_eq!(s.post(&e).await, 200);
    // Even past the consumer's idempotency record, the handler itself makes it once.
    s.service.on_budget_alert(&e, alert_data(&e)).await.unwrap();
    let d = s.list(&token).await;
    assert_eq!(d["notifications"]["totalCount"], 1, "{d}");
    let n = &d["notifications"]["edges"][0]["node"];
    assert_eq!(n["type"], "BUDGET_EXCEEDED");
    assert_eq!(n["priority"], "HIGH");
    assert_eq!(n["message"], "food budget at 100%");
    assert_eq!(n["channels"], json!(["IN_APP", "WEBSOCKET"]));
    assert_eq!(d["unreadNotificationCount"], 1);
    // Another user sees nothing.
    let (_, other) = test_user();
    assert_eq!(s.list(&other).await["notifications"]["totalCount"], 0);
}

#[tokio::test]
async fn notifications_page_newest_first_and_read_state_and_deletion_are_the_owners_only() {
    let s = start().await;
    let (u, token) = test_user();
    for t in [80, 90, 100] {
        assert_eq!(s.post(&alert_event(&u, t)).await, 200);
    }
    let page = s.gql.ok(LIST, json!({ "first": 2 }), Some(&token)).await["notifications"].clone();
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["edges"][0]["node"]["message"], "food budget at 100%");
    let rest = s
        .gql
        .ok(
            LIST,
            json!({ "first": 2, "after": page["pageInfo"]["endCursor"] }),
            Some(&token),
        )
        .await["notifications"]
        .clone();
    assert_eq!(rest["edges"].as_array().unwrap().len(), 1);
    assert_eq!(rest["edges"][0]["node"]["message"], "food budget at 80%");
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);

    let id = page["edges"][0]["node"]["id"].clone();
    let (_, intruder) = test_user();
    let mark = "mutation($id: ID!) { markNotificationRead(id: $id) { id read } }";
    assert_eq!(
        s.gql
            .error_code(mark, json!({ "id": id }), Some(&intruder))
            .await,
        "NOT_FOUND"
    );
    let del = "mutation($id: ID!) { deleteNotification(id: $id) }";
    assert_eq!(
        s.gql
            .error_code(del, json!({ "id": id }), Some(&intruder))
            .await,
        "NOT_FOUND"
    );
    let r = s.gql.ok(mark, json!({ "id": id }), Some(&token)).await;
    assert_eq!(r["markNotificationRead"]["read"], true);
    let unread = s
        .gql
        .ok(LIST, json!({ "unread": true }), Some(&token))
        .await;
    assert_eq!(unread["notifications"]["totalCount"], 2);
    assert_eq!(unread["unreadNotificationCount"], 2);
    let all = s
        .gql
        .ok(
            "mutation { markAllNotificationsRead }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(all["markAllNotificationsRead"], 2);
    assert_eq!(
        s.gql.ok(del, json!({ "id": id }), Some(&token)).await["deleteNotification"],
        true
    );
    let d = s.list(&token).await;
    assert_eq!(d["notifications"]["totalCount"], 2);
    assert_eq!(d["unreadNotificationCount"], 0);
    let code = s.gql.error_code(LIST, json!({}), None).await;
    assert_eq!(code, "UNAUTHENTICATED");
}

#[tokio::test]
async fn bad_preferences_are_refused_with_the_field_and_nothing_is_written() {
    let s = start().await;
    let (u, token) = test_user();
    s.users.set(&u, "EUR", "Europe/Paris");
    for (input, field) in [
        (
            json!({ "email": "not-an-address", "webhookUrl": "https://ok.example/x" }),
            "email",
        ),
        (json!({ "webhookUrl": "ftp://x.example" }), "webhookUrl"),
        (
            json!({ "quietHours": { "start": "22:00", "end": "7am" } }),
            "quietHours.end",
        ),
    ] {
        let body = s.prefs(&token, input).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
            "{body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    let p = s
        .gql
        .ok(
            "{ notificationPreferences { email webhookUrl timezone quietHours { start } } }",
            json!({}),
            Some(&token),
        )
        .await["notificationPreferences"]
        .clone();
    assert_eq!(
        p,
        json!({ "email": null, "webhookUrl": null, "timezone": "Europe/Paris", "quietHours": null })
    );

    let ok = s
        .prefs(
            &token,
            json!({ "email": "me@example.com", "quietHours": { "start": "22:00", "end": "07:00" },
                               "channels": [{ "channel": "WEBSOCKET", "enabled": false }],
                               "types": [{ "type": "WEEKLY_SUMMARY", "enabled": false }] }),
        )
        .await;
    let p = &ok["data"]["updateNotificationPreferences"];
    assert_eq!(p["email"], "me@example.com");
    assert_eq!(p["quietHours"], json!({ "start": "22:00", "end": "07:00" }));
    assert!(
        p["channels"]
            .as_array()
            .unwrap()
            .contains(&json!({ "channel": "WEBSOCKET", "enabled": false }))
    );
    assert!(
        p["types"]
            .as_array()
            .unwrap()
            .contains(&json!({ "type": "WEEKLY_SUMMARY", "enabled": false }))
    );
    // null clears.
    let cleared = s
        .prefs(&token, json!({ "email": null, "quietHours": null }))
        .await;
    assert_eq!(
        cleared["data"]["updateNotificationPreferences"]["email"],
        Value::Null
    );
    assert_eq!(
        cleared["data"]["updateNotificationPreferences"]["quietHours"],
        Value::Null
    );
}

#[tokio::test]
async fn an_alert_is_emailed_through_a_real_smtp_dialogue() {
    let s = start().await;
    let (u, token) = test_user();
    assert!(s.prefs(&token, json!({ "email": "ana@example.com" })).await["errors"].is_null());
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    assert!(wait_until(WAIT, || async { !s.smtp.messages().is_empty() }).await);
    let (rcpt, body) = s.smtp.messages()[0].clone();
    assert_eq!(rcpt, ["<ana@example.com>"]);
    assert!(body.contains("Subject: Budget alert: food"), "{body}");
    assert!(body.contains("food budget at 80%"), "{body}");
    s.wait_deliveries(
        &token,
        json!([{ "channel": "EMAIL", "status": "SENT", "attempts": 1, "reason": null }]),
    )
    .await;
}

#[tokio::test]
async fn a_webhook_failing_twice_is_retried_with_a_valid_signature_and_never_blocks_email() {
    let s = start().await;
    let (hook, hook_server) = WebhookReceiver::start(2).await;
    let (u, token) = test_user();
    let r = s
        .prefs(
            &token,
            json!({ "email": "bo@example.com", "webhookUrl": hook_server.url("/hook") }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let e = alert_event(&u, 100);
    assert_eq!(s.post(&e).await, 200);
    assert!(wait_until(WAIT, || async { hook.accepted.lock().unwrap().len() == 1 }).await);
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);
    assert_eq!(hook.bad_signatures.load(Ordering::SeqCst), 0);
    let body = hook.accepted.lock().unwrap()[0].clone();
    assert_eq!(body["type"], "BUDGET_EXCEEDED");
    assert_eq!(body["message"], "food budget at 100%");
    assert_eq!(s.smtp.messages().len(), 1);
    s.wait_deliveries(
        &token,
        json!([
            { "channel": "EMAIL", "status": "SENT", "attempts": 1, "reason": null },
            { "channel": "WEBHOOK", "status": "SENT", "attempts": 3, "reason": null },
        ]),
    )
    .await;
    // The event again, through the handler: nothing is sent a second time.
    s.service.on_budget_alert(&e, alert_data(&e)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);
    assert_eq!(s.smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_channel_or_a_type_switched_off_in_the_preferences_is_not_used() {
    let s = start().await;
    let (hook, hook_server) = WebhookReceiver::start(0).await;
    let (u, token) = test_user();
    let r = s
        .prefs(
            &token,
            json!({ "email": "off@example.com", "webhookUrl": hook_server.url("/hook"),
                    "channels": [{ "channel": "EMAIL", "enabled": false }],
                    "types": [{ "type": "BUDGET_ALERT", "enabled": false }] }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    // A warning is a BUDGET_ALERT, switched off: no notification at all.
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    // An exceeded budget is notified, but not by email.
    assert_eq!(s.post(&alert_event(&u, 100)).await, 200);
    s.wait_deliveries(
        &token,
        json!([{ "channel": "WEBHOOK", "status": "SENT", "attempts": 1, "reason": null }]),
    )
    .await;
    let d = s.list(&token).await;
    assert_eq!(d["notifications"]["totalCount"], 1, "{d}");
    let n = &d["notifications"]["edges"][0]["node"];
    assert_eq!(n["type"], "BUDGET_EXCEEDED");
    assert_eq!(n["channels"], json!(["IN_APP", "WEBHOOK", "WEBSOCKET"]));
    let accepted = hook.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["type"], "BUDGET_EXCEEDED");
    assert!(s.smtp.messages().is_empty(), "{:?}", s.smtp.messages());
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_given_up_visibly_after_the_horizon() {
    let s = start_with(|st| st.delivery.horizon = Duration::from_millis(600)).await;
    let (hook, hook_server) = WebhookReceiver::start(usize::MAX).await;
    let (u, token) = test_user();
    s.prefs(&token, json!({ "webhookUrl": hook_server.url("/hook") }))
        .await;
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    assert!(
        wait_until(WAIT, || async {
            s.first_deliveries(&token).await[0]["status"] == "FAILED"
        })
        .await
    );
    let d = s.first_deliveries(&token).await[0].clone();
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.starts_with("gave up after"), "{reason}");
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(d["attempts"].as_i64().unwrap() >= 2);
    assert_eq!(
        hook.calls.load(Ordering::SeqCst) as i64,
        d["attempts"].as_i64().unwrap()
    );
}

/// Quiet hours from two hours ago to two hours ahead (UTC): now is inside them.
fn quiet_now() -> Value {
    let now = Utc::now();
    let at = |hours| {
        (now + chrono::Duration::hours(hours))
            .format("%H:%M")
            .to_string()
    };
    json!({ "start": at(-2), "end": at(2) })
}

#[tokio::test]
async fn quiet_hours_hold_outside_deliveries_but_not_the_in_app_notification() {
    let s = start().await;
    let (u, token) = test_user();
    s.prefs(
        &token,
        json!({ "email": "q@example.com", "quietHours": quiet_now() }),
    )
    .await;
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(s.smtp.messages().is_empty());
    let d = s.list(&token).await;
    assert_eq!(d["notifications"]["totalCount"], 1);
    assert_eq!(
        d["notifications"]["edges"][0]["node"]["deliveries"],
        json!([{ "channel": "EMAIL", "status": "PENDING", "attempts": 0, "reason": null }])
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A websocket to `server`'s `/graphql` that has sent `connection_init` with `payload`.
async fn ws_connect_to(server: &TestServer, protocol: &str, payload: Value) -> Ws {
    let url = format!("ws://{}/graphql", server.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": payload }).to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// A websocket to the stack's server, with the token as a bearer `Authorization`.
async fn ws_connect(s: &Stack, protocol: &str, token: Option<&str>) -> Ws {
    let payload = match token {
        Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
        None => json!({}),
    };
    ws_connect_to(&s.server, protocol, payload).await
}

/// Starts operation `id` with the protocol's start message (`subscribe` or `start`).
async fn ws_start(ws: &mut Ws, id: &str, start: &str, query: &str) {
    let msg = json!({ "id": id, "type": start, "payload": { "query": query } });
    ws.send(Message::text(msg.to_string())).await.unwrap();
}

/// After `connection_ack`, subscribes (graphql-transport-ws) to `notificationAdded` and
/// gives the subscription a moment to attach.
async fn follow_notifications(ws: &mut Ws) {
    assert_eq!(next_json(ws).await.unwrap()["type"], "connection_ack");
    ws_start(
        ws,
        "1",
        "subscribe",
        "subscription { notificationAdded { type message } }",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ka" || v["type"] == "ping" {
                    continue;
                }
                return Some(v);
            }
            Ok(Message::Close(frame)) => {
                return Some(json!({ "type": "close", "code": frame.map(|f| u16::from(f.code)) }));
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn each_subscriber_receives_only_their_own_alerts_over_both_websocket_protocols() {
    let s = start().await;
    let (ann, ann_token) = test_user();
    let (bob, bob_token) = test_user();
    let mut a = ws_connect(&s, "graphql-transport-ws", Some(&ann_token)).await;
    assert_eq!(next_json(&mut a).await.unwrap()["type"], "connection_ack");
    ws_start(
        &mut a,
        "1",
        "subscribe",
        "subscription { budgetAlerts { threshold message severity alert { id } budget { id } notification { id type } } }",
    )
    .await;
    let mut b = ws_connect(&s, "graphql-ws", Some(&bob_token)).await;
    assert_eq!(next_json(&mut b).await.unwrap()["type"], "connection_ack");
    ws_start(
        &mut b,
        "9",
        "start",
        "subscription { notificationAdded { id type message } }",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ea = alert_event(&ann, 80);
    assert_eq!(s.post(&ea).await, 200);
    let eb = alert_event(&bob, 100);
    assert_eq!(s.post(&eb).await, 200);

    let got = next_json(&mut a).await.unwrap();
    assert_eq!(got["type"], "next", "{got}");
    let alert = &got["payload"]["data"]["budgetAlerts"];
    assert_eq!(alert["threshold"], 80);
    assert_eq!(alert["severity"], "WARNING");
    assert_eq!(alert["alert"]["id"], ea.data["alertId"]);
    assert_eq!(alert["budget"]["id"], ea.data["budgetId"]);
    let got = next_json(&mut b).await.unwrap();
    assert_eq!(got["type"], "data", "{got}");
    assert_eq!(
        got["payload"]["data"]["notificationAdded"]["message"],
        "food budget at 100%"
    );
    // Nothing else arrives for either (Bob's alert never reaches Ann, and vice versa).
    assert!(
        tokio::time::timeout(Duration::from_millis(700), next_json(&mut a))
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_json(&mut b))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_subscription_with_a_bad_token_closes_4403_and_without_a_token_closes_4401() {
    let s = start().await;
    let mut ws = ws_connect(&s, "graphql-transport-ws", Some("not-a-token")).await;
    // Closed at once with the contract's code, never left open and silent.
    let got = next_json(&mut ws).await;
    assert_eq!(got, Some(json!({ "type": "close", "code": 4403 })));
    let mut ws = ws_connect(&s, "graphql-transport-ws", None).await;
    let got = next_json(&mut ws).await;
    assert_eq!(got, Some(json!({ "type": "close", "code": 4401 })));
}

#[tokio::test]
async fn a_weekly_summary_event_is_notified_and_emailed_once_per_week() {
    let s = start().await;
    let (u, token) = test_user();
    s.prefs(&token, json!({ "email": "w@example.com" })).await;
    let summary = |id_seed: &str| {
        let mut e = Event::new(
            "weekly.summary",
            &u,
            Utc::now(),
            json!({ "week": "2024-W10", "from": "2024-03-04", "to": "2024-03-10", "currency": "USD",
                "spentMinor": 3000, "expenseCount": 2, "topCategory": "food", "topCategoryMinor": 2000,
                "message": "You spent 30.00 USD this week; top category food (20.00 USD)." }),
        );
        let id = e.id.to_string();
        e.id = contract::ids::EventId::from_trusted(format!("{}{id_seed}", &id[..id.len() - 1]));
        e
    };
    // Two different events for the same week (e.g. two producers): one notification.
    assert_eq!(s.post(&summary("a")).await, 200);
    assert_eq!(s.post(&summary("b")).await, 200);
    let d = s.list(&token).await;
    assert_eq!(d["notifications"]["totalCount"], 1, "{d}");
    let n = &d["notifications"]["edges"][0]["node"];
    assert_eq!(n["type"], "WEEKLY_SUMMARY");
    assert_eq!(n["priority"], "LOW");
    assert!(wait_until(WAIT, || async { s.smtp.messages().len() == 1 }).await);
    assert!(s.smtp.messages()[0].1.contains("top category food"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_notification_made_on_one_instance_reaches_a_subscriber_of_another() {
    let s = start().await;
    let config = test_config(notifications::SERVICE);
    let mut settings = notifications::Settings::from_vars(&[("X", "")], config).unwrap();
    settings.delivery = notifications::service::DeliverySettings::fast();
    // The second instance shares the first one's database.
    let other =
        kit::bootstrap::start::<notifications::service::Notifications>(&settings, s._db.db.clone())
            .await
            .unwrap();
    let other_server = TestServer::start(other.router.clone()).await;
    let (u, token) = test_user();
    let mut ws = ws_connect_to(
        &other_server,
        "graphql-transport-ws",
        json!({ "token": token }),
    )
    .await;
    follow_notifications(&mut ws).await;
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    let got = next_json(&mut ws).await.unwrap();
    assert_eq!(
        got["payload"]["data"]["notificationAdded"]["message"], "food budget at 80%",
        "{got}"
    );
}

#[tokio::test]
async fn webhooks_never_reach_inside_addresses_or_follow_redirects() {
    // No allow-list: a receiver on loopback, by address or by name, is refused.
    let s = start_with(|st| {
        st.webhooks.allow_hosts.clear();
        st.delivery.horizon = Duration::from_millis(600);
    })
    .await;
    let (hook, hook_server) = WebhookReceiver::start(0).await;
    for url in [
        hook_server.url("/hook"),
        hook_server.url("/hook").replace("127.0.0.1", "localhost"),
    ] {
        let (u, token) = test_user();
        s.prefs(&token, json!({ "webhookUrl": url })).await;
        assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
        assert!(
            wait_until(WAIT, || async {
                s.first_deliveries(&token).await[0]["status"] == "FAILED"
            })
            .await,
            "{url}"
        );
        let d = s.first_deliveries(&token).await[0].clone();
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("not public") || reason.contains("no public address"),
            "{url}: {reason}"
        );
    }
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        0,
        "nothing reached the receiver"
    );

    // An allowed host that redirects inside: the redirect is not followed.
    let s = start_with(|st| st.delivery.horizon = Duration::from_millis(600)).await;
    let target = hook_server.url("/hook");
    let redirector = TestServer::start(axum::Router::new().route(
        "/go",
        axum::routing::post(move || {
            let target = target.clone();
            async move { axum::response::Redirect::temporary(&target) }
        }),
    ))
    .await;
    let (u, token) = test_user();
    s.prefs(&token, json!({ "webhookUrl": redirector.url("/go") }))
        .await;
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    assert!(
        wait_until(WAIT, || async {
            s.first_deliveries(&token).await[0]["status"] == "FAILED"
        })
        .await
    );
    let reason = s.first_deliveries(&token).await[0]["reason"].clone();
    assert!(reason.as_str().unwrap().contains("redirect"), "{reason}");
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn the_feed_follows_a_change_stream_where_the_database_has_one() {
    // Polling a minute apart: only a change stream can bring the alert within WAIT.
    let s = start_with(|st| st.delivery.tail_poll = Duration::from_secs(60)).await;
    let hello = s
        ._db
        .db
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .await
        .unwrap();
    let replica_set = hello.contains_key("setName");
    let mode = kit::changes::follow_mode(&s._db.db).await;
    if !replica_set {
        // A standalone server (nx-27017): the tail polls, as the other tests show.
        assert_eq!(mode, kit::changes::Follow::Polling);
        return;
    }
    assert_eq!(mode, kit::changes::Follow::ChangeStream);
    let (u, token) = test_user();
    let mut ws = ws_connect(&s, "graphql-transport-ws", Some(&token)).await;
    follow_notifications(&mut ws).await;
    for percent in [80, 100] {
        assert_eq!(s.post(&alert_event(&u, percent)).await, 200);
        let got = next_json(&mut ws)
            .await
            .expect("the alert came through the stream");
        assert_eq!(
            got["payload"]["data"]["notificationAdded"]["message"],
            format!("food budget at {percent}%"),
            "{got}"
        );
    }
}

/// The next budget alert's message and notification id on a `budgetAlerts` subscription.
async fn next_alert(ws: &mut Ws) -> (String, String) {
    let got = next_json(ws).await.expect("an alert came");
    let alert = &got["payload"]["data"]["budgetAlerts"];
    assert!(alert.is_object(), "{got}");
    (
        alert["message"].as_str().unwrap().to_string(),
        alert["notification"]["id"].as_str().unwrap().to_string(),
    )
}

/// Subscribes `ws` (graphql-transport-ws, acknowledged) to `budgetAlerts` after `after`.
async fn follow_alerts(ws: &mut Ws, after: Option<&str>) {
    assert_eq!(next_json(ws).await.unwrap()["type"], "connection_ack");
    let msg = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($after: ID) { budgetAlerts(after: $after) { message notification { id } } }",
        "variables": { "after": after },
    } });
    ws.send(Message::text(msg.to_string())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn every_instance_gives_its_clients_every_alert_and_a_restarted_one_resumes() {
    // Where the database has change streams, the feeds poll a minute apart: only the
    // change streams can bring the alerts within the wait. Elsewhere they poll quickly.
    let probe = TestDb::new(&test_config(notifications::SERVICE)).await;
    let streams = kit::changes::follow_mode(&probe.db).await == kit::changes::Follow::ChangeStream;
    let s = start_with(|st| {
        st.service.instance = "a".into();
        if streams {
            st.delivery.tail_poll = Duration::from_secs(60);
        }
    })
    .await;
    let (b, b_server) = s.another_instance("b").await;
    let (u, token) = test_user();
    let payload = json!({ "Authorization": format!("Bearer {token}") });
    let mut on_a = ws_connect_to(&s.server, "graphql-transport-ws", payload.clone()).await;
    follow_alerts(&mut on_a, None).await;
    let mut on_b = ws_connect_to(&b_server, "graphql-transport-ws", payload.clone()).await;
    follow_alerts(&mut on_b, None).await;

    // Events reach one instance or the other; every client sees every alert, once.
    assert_eq!(s.post(&alert_event(&u, 80)).await, 200);
    assert_eq!(
        post_event(&b_server, TEST_SERVICE_TOKEN, &alert_event(&u, 100))
            .await
            .as_u16(),
        200
    );
    let mut last_on_b = String::new();
    for ws in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 0..2 {
            let (message, id) = next_alert(ws).await;
            got.push(message);
            last_on_b = id;
        }
        assert_eq!(got, ["food budget at 80%", "food budget at 100%"]);
    }

    // Instance b stops; an alert comes meanwhile (through a).
    drop(on_b);
    drop(b_server);
    drop(b);
    assert_eq!(s.post(&alert_event(&u, 120)).await, 200);
    assert_eq!(next_alert(&mut on_a).await.0, "food budget at 120%");
    if streams {
        let stored = kit::changes::Position::new(&s._db.db, "notifications.feed", "b")
            .stored()
            .await;
        assert!(stored.is_some(), "instance b stored where its feed stands");
    }

    // b restarts under the same name; its client comes back with the last alert it saw
    // and gets the one it missed, then the next live one, each once.
    let (_b, b_server) = s.another_instance("b").await;
    let mut on_b = ws_connect_to(&b_server, "graphql-transport-ws", payload).await;
    follow_alerts(&mut on_b, Some(&last_on_b)).await;
    assert_eq!(next_alert(&mut on_b).await.0, "food budget at 120%");
    assert_eq!(s.post(&alert_event(&u, 150)).await, 200);
    assert_eq!(next_alert(&mut on_b).await.0, "food budget at 150%");
    assert_eq!(next_alert(&mut on_a).await.0, "food budget at 150%");
    for ws in [&mut on_a, &mut on_b] {
        let more = tokio::time::timeout(Duration::from_millis(700), next_json(ws)).await;
        assert!(
            !matches!(more, Ok(Some(ref v)) if v["type"] == "next"),
            "an alert came twice: {more:?}"
        );
    }
}

/// A browser's side of Web Push: its P-256 key pair and its 16-byte auth secret.
#[derive(Clone)]
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Browser {
        let secret = loop {
            if let Ok(k) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        Browser {
            secret,
            auth: rand::random(),
        }
    }

    /// `keys` of the browser's `PushSubscription.toJSON()`.
    fn keys(&self) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let point = self.secret.public_key().to_encoded_point(false);
        json!({
            "p256dh": notifications::domain::push::encode_base64url(point.as_bytes()),
            "auth": notifications::domain::push::encode_base64url(&self.auth),
        })
    }
}

/// One push as the push service took it: the device (path), the VAPID key it was
/// signed with, and the decrypted payload.
#[derive(Debug, Clone)]
struct Pushed {
    device: String,
    vapid_key: String,
    urgency: String,
    payload: Value,
}

/// A push service on 127.0.0.1: for each push to `/push/{device}` it checks the VAPID
/// JWT (ES256 under the key named by `k`, `aud` its own origin, `exp` within 24 h, a
/// `mailto:` subject), decrypts the `aes128gcm` body with the device's browser keys,
/// and answers the device's status (201 unless set). Any check that fails is recorded
/// and answered 400.
#[derive(Clone, Default)]
struct PushService {
    origin: Arc<Mutex<String>>,
    browsers: Arc<Mutex<std::collections::HashMap<String, Browser>>>,
    statuses: Arc<Mutex<std::collections::HashMap<String, u16>>>,
    pushed: Arc<Mutex<Vec<Pushed>>>,
    refused: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
}

impl PushService {
    async fn start() -> (PushService, TestServer) {
        let p = PushService::default();
        let pp = p.clone();
        let app = axum::Router::new().route(
            "/push/{device}",
            axum::routing::post(
                move |axum::extract::Path(device): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| {
                    let pp = pp.clone();
                    async move {
                        use axum::response::IntoResponse;
                        pp.calls.fetch_add(1, Ordering::SeqCst);
                        match pp.check(&device, &headers, &body) {
                            // A refusal whose body never ends.
                            Ok(_) if device == "endless" => {
                                let chunks = futures::stream::repeat_with(|| {
                                    Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![
                                        b'x';
                                        65_536
                                    ]))
                                });
                                (
                                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                    axum::body::Body::from_stream(chunks),
                                )
                                    .into_response()
                            }
                            Ok(pushed) => {
                                pp.pushed.lock().unwrap().push(pushed);
                                let status = pp.statuses.lock().unwrap().get(&device).copied();
                                axum::http::StatusCode::from_u16(status.unwrap_or(201))
                                    .unwrap()
                                    .into_response()
                            }
                            Err(why) => {
                                pp.refused.lock().unwrap().push(why);
                                axum::http::StatusCode::BAD_REQUEST.into_response()
                            }
                        }
                    }
                },
            ),
        );
        let server = TestServer::start(app).await;
        *p.origin.lock().unwrap() = server.url("");
        (p, server)
    }

    fn check(
        &self,
        device: &str,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<Pushed, String> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or(format!("no {name} header"))
        };
        let authorization = header("authorization")?;
        let (token, key) = authorization
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .ok_or(format!("not a VAPID authorization: {authorization}"))?;
        let point =
            notifications::domain::push::decode_base64url(key).ok_or("k is not base64url")?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        let origin = self.origin.lock().unwrap().clone();
        validation.set_audience(&[origin.as_str()]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(
            token,
            &jsonwebtoken::DecodingKey::from_ec_der(&point),
            &validation,
        )
        .map_err(|e| format!("VAPID JWT refused: {e}"))?
        .claims;
        let exp = claims["exp"].as_i64().ok_or("no exp")?;
        if exp > Utc::now().timestamp() + 24 * 3600 {
            return Err(format!("exp {exp} is more than 24 hours ahead"));
        }
        if !claims["sub"]
            .as_str()
            .is_some_and(|s| s.starts_with("mailto:"))
        {
            return Err(format!("sub {} is not a contact", claims["sub"]));
        }
        if header("content-encoding")? != "aes128gcm" {
            return Err("content-encoding is not aes128gcm".into());
        }
        header("ttl")?
            .parse::<u64>()
            .map_err(|_| "ttl is not a number")?;
        let browser = self
            .browsers
            .lock()
            .unwrap()
            .get(device)
            .cloned()
            .ok_or(format!("unknown device {device}"))?;
        let auth = web_push_native::Auth::from(browser.auth);
        let plain = web_push_native::decrypt(body.to_vec(), &browser.secret, &auth)
            .map_err(|e| format!("cannot decrypt: {e}"))?;
        Ok(Pushed {
            device: device.to_string(),
            vapid_key: key.to_string(),
            urgency: header("urgency")?,
            payload: serde_json::from_slice(&plain).map_err(|e| format!("not JSON: {e}"))?,
        })
    }

    /// A new browser whose subscription's endpoint is `/push/{device}` here: the input
    /// of `registerPushSubscription`.
    fn subscribe(&self, device: &str) -> Value {
        let browser = Browser::new();
        let keys = browser.keys();
        self.browsers
            .lock()
            .unwrap()
            .insert(device.to_string(), browser);
        let origin = self.origin.lock().unwrap().clone();
        json!({ "endpoint": format!("{origin}/push/{device}"), "keys": keys, "deviceName": device })
    }

    fn pushed(&self) -> Vec<Pushed> {
        self.pushed.lock().unwrap().clone()
    }
}

const REGISTER_PUSH: &str = "mutation($i: PushSubscriptionInput!) { registerPushSubscription(input: $i) { id endpoint deviceName } }";

impl Stack {
    async fn register_push(&self, token: &str, input: Value) -> Value {
        self.gql
            .request(REGISTER_PUSH, json!({ "i": input }), Some(token))
            .await
    }

    async fn push_devices(&self, token: &str) -> Vec<Value> {
        self.gql
            .ok(
                "{ pushSubscriptions { id endpoint deviceName } }",
                json!({}),
                Some(token),
            )
            .await["pushSubscriptions"]
            .as_array()
            .unwrap()
            .clone()
    }
}

#[tokio::test]
async fn an_exceeded_budget_is_pushed_encrypted_and_vapid_signed_to_each_device() {
    let s = start().await;
    let (push, _push_server) = PushService::start().await;
    let (u, token) = test_user();
    let key = s.gql.ok("{ webPushPublicKey }", json!({}), None).await["webPushPublicKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        notifications::domain::push::decode_base64url(&key).map(|k| k.len()),
        Some(65)
    );
    let mut ids = Vec::new();
    for device in ["laptop", "phone"] {
        let r = s.register_push(&token, push.subscribe(device)).await;
        assert!(r["errors"].is_null(), "{r}");
        ids.push(r["data"]["registerPushSubscription"]["id"].clone());
    }
    // A warning (BUDGET_ALERT) does not go to PUSH by default; an exceeded budget does.
    s.alert(&u, 80).await;
    s.alert(&u, 100).await;
    assert!(wait_until(WAIT, || async { push.pushed().len() == 2 }).await);
    assert!(
        push.refused.lock().unwrap().is_empty(),
        "{:?}",
        push.refused.lock().unwrap()
    );
    let mut devices: Vec<String> = push.pushed().iter().map(|p| p.device.clone()).collect();
    devices.sort();
    assert_eq!(devices, ["laptop", "phone"]);
    for p in push.pushed() {
        assert_eq!(p.vapid_key, key);
        assert_eq!(p.urgency, "high");
        assert_eq!(p.payload["type"], "BUDGET_EXCEEDED");
        assert_eq!(p.payload["message"], "food budget at 100%");
        assert_eq!(p.payload["title"], "Budget exceeded: food");
    }
    let mut want: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "channel": "PUSH", "status": "SENT", "attempts": 1, "reason": null, "deviceId": id }))
        .collect();
    want.sort_by_key(|d| d["deviceId"].as_str().unwrap().to_string());
    let deliveries = || async {
        let q = "{ notifications(first: 1) { edges { node { channels deliveries { channel status attempts reason deviceId } } } } }";
        s.gql.ok(q, json!({}), Some(&token)).await["notifications"]["edges"][0]["node"].clone()
    };
    assert!(
        wait_until(WAIT, || async {
            deliveries().await["deliveries"] == json!(want)
        })
        .await,
        "{}",
        deliveries().await
    );
    assert_eq!(
        deliveries().await["channels"],
        json!(["IN_APP", "WEBSOCKET", "PUSH"])
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        push.calls.load(Ordering::SeqCst),
        2,
        "the warning was not pushed"
    );
}

#[tokio::test]
async fn a_device_whose_push_service_answers_gone_is_removed() {
    let s = start().await;
    let (push, _push_server) = PushService::start().await;
    let (u, token) = test_user();
    for device in ["kept", "gone"] {
        let r = s.register_push(&token, push.subscribe(device)).await;
        assert!(r["errors"].is_null(), "{r}");
    }
    push.statuses.lock().unwrap().insert("gone".into(), 410);
    s.alert(&u, 100).await;
    let statuses = || async {
        let ds = s.first_deliveries(&token).await;
        let mut got: Vec<(String, i64, String)> = ds
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["status"].as_str().unwrap().to_string(),
                    d["attempts"].as_i64().unwrap(),
                    d["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        got.sort();
        got
    };
    assert!(
        wait_until(WAIT, || async {
            statuses().await.iter().all(|(st, ..)| st != "PENDING") && statuses().await.len() == 2
        })
        .await,
        "{:?}",
        statuses().await
    );
    let got = statuses().await;
    assert_eq!((got[0].0.as_str(), got[0].1), ("FAILED", 1), "{got:?}");
    assert!(
        got[0].2.contains("410") && got[0].2.contains("removed"),
        "{got:?}"
    );
    assert_eq!((got[1].0.as_str(), got[1].1), ("SENT", 1), "{got:?}");
    let left = s.push_devices(&token).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["deviceName"], "kept");
    assert_eq!(push.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_push_service_refusal_is_read_only_as_far_as_its_reason_needs() {
    let s = start().await;
    let (push, _push_server) = PushService::start().await;
    let (u, token) = test_user();
    let r = s.register_push(&token, push.subscribe("endless")).await;
    assert!(r["errors"].is_null(), "{r}");
    s.alert(&u, 100).await;
    let reason = || async {
        let ds = s.first_deliveries(&token).await;
        ds.as_array()
            .unwrap()
            .iter()
            .find(|d| d["attempts"].as_i64().unwrap_or(0) >= 1)
            .map(|d| {
                (
                    d["status"].clone(),
                    d["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    assert!(
        wait_until(WAIT, || async { reason().await.is_some() }).await,
        "no attempt was recorded"
    );
    let (status, reason) = reason().await.unwrap();
    // The refusal is answered from its first bytes: a retry, with the start of the body
    // (reading the endless body to its end would only stop at the client's timeout, and
    // without any of it).
    assert_eq!(status, "PENDING", "{reason}");
    assert!(
        reason.starts_with("the push service answered HTTP 500: xxxx"),
        "{reason}"
    );
}

#[tokio::test]
async fn push_subscriptions_are_checked_capped_renewed_and_removed() {
    let s = start().await;
    let (push, _push_server) = PushService::start().await;
    let (_, token) = test_user();
    let good = push.subscribe("first");
    let bad = |change: &dyn Fn(&mut Value)| {
        let mut input = good.clone();
        change(&mut input);
        input
    };
    for (input, field) in [
        (
            bad(&|i| i["endpoint"] = json!("http://push.example.net/x")),
            "endpoint",
        ),
        (
            bad(&|i| i["endpoint"] = json!("https://10.1.2.3/x")),
            "endpoint",
        ),
        (
            bad(&|i| {
                i["endpoint"] = json!(format!("https://push.example.net/{}", "a".repeat(2100)))
            }),
            "endpoint",
        ),
        (bad(&|i| i["endpoint"] = json!("not a url")), "endpoint"),
        (bad(&|i| i["keys"]["p256dh"] = json!("AAAA")), "keys.p256dh"),
        (bad(&|i| i["keys"]["auth"] = json!("c2hvcnQ")), "keys.auth"),
        (
            bad(&|i| i["deviceName"] = json!("x".repeat(101))),
            "deviceName",
        ),
    ] {
        let r = s.register_push(&token, input).await;
        assert_eq!(
            r["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
            "{r}"
        );
        assert_eq!(r["errors"][0]["extensions"]["field"], field, "{r}");
    }
    assert!(
        s.push_devices(&token).await.is_empty(),
        "nothing was written"
    );

    let first = s.register_push(&token, good.clone()).await;
    assert!(first["errors"].is_null(), "{first}");
    for n in 1..20 {
        let r = s
            .register_push(&token, push.subscribe(&format!("d{n}")))
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let r = s
        .register_push(&token, push.subscribe("one-too-many"))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "LIMIT_REACHED", "{r}");
    assert_eq!(s.push_devices(&token).await.len(), 20);
    // The same endpoint again renews its keys; it is not another device.
    let mut renewed = good.clone();
    renewed["keys"] = Browser::new().keys();
    let r = s.register_push(&token, renewed).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        r["data"]["registerPushSubscription"]["id"],
        first["data"]["registerPushSubscription"]["id"]
    );
    assert_eq!(s.push_devices(&token).await.len(), 20);

    // Another user cannot remove it; its owner can, by endpoint or by id.
    let remove = "mutation($id: ID, $endpoint: String) { removePushSubscription(id: $id, endpoint: $endpoint) }";
    let by_endpoint = json!({ "endpoint": good["endpoint"] });
    let (_, other) = test_user();
    assert_eq!(
        s.gql
            .error_code(remove, by_endpoint.clone(), Some(&other))
            .await,
        "NOT_FOUND"
    );
    assert_eq!(
        s.gql.ok(remove, by_endpoint.clone(), Some(&token)).await["removePushSubscription"],
        true
    );
    assert_eq!(
        s.gql.error_code(remove, by_endpoint, Some(&token)).await,
        "NOT_FOUND"
    );
    let id = s.push_devices(&token).await[0]["id"].clone();
    assert_eq!(
        s.gql.ok(remove, json!({ "id": id }), Some(&token)).await["removePushSubscription"],
        true
    );
    assert_eq!(s.push_devices(&token).await.len(), 18);
    assert_eq!(
        s.gql.error_code(remove, json!({}), Some(&token)).await,
        "VALIDATION_FAILED"
    );
    assert_eq!(
        s.gql
            .error_code(REGISTER_PUSH, json!({ "i": good }), None)
            .await,
        "UNAUTHENTICATED"
    );
}

const SET_PHONE: &str = "mutation($p: String!) { setPhoneNumber(phoneNumber: $p) { phoneNumber expiresAt attemptsLeft } }";
const CONFIRM_PHONE: &str = "mutation($c: String!) { confirmPhoneNumber(code: $c) { phoneNumber channels { channel enabled } } }";

/// The six-digit code of the last SMS to `number`.
fn last_code(s: &Stack, number: &str) -> String {
    let texts = s.sms.to(number);
    let body = &texts.last().expect("a code was sent").body;
    let code: String = body
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').bytes().all(|b| b.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no code in {body:?}"))
        .trim_end_matches('.')
        .to_string();
    code
}

impl Stack {
    /// Sets and confirms `number` as the user's phone number, then switches SMS on.
    async fn verify_phone(&self, token: &str, number: &str) {
        let r = self
            .gql
            .ok(SET_PHONE, json!({ "p": number }), Some(token))
            .await;
        assert_eq!(r["setPhoneNumber"]["phoneNumber"], number);
        let code = last_code(self, number);
        let r = self
            .gql
            .ok(CONFIRM_PHONE, json!({ "c": code }), Some(token))
            .await;
        assert_eq!(r["confirmPhoneNumber"]["phoneNumber"], number);
        self.sms_on(token).await;
    }

    /// Confirms `code`, which must be refused (`VALIDATION_FAILED` on `code`); the
    /// refusal's message.
    async fn code_refused(&self, token: &str, code: &str) -> String {
        let r = self
            .gql
            .request(CONFIRM_PHONE, json!({ "c": code }), Some(token))
            .await;
        assert_eq!(
            r["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
            "{r}"
        );
        assert_eq!(r["errors"][0]["extensions"]["field"], "code", "{r}");
        r["errors"][0]["message"].as_str().unwrap().to_string()
    }

    /// Switches SMS on, which must be taken.
    async fn sms_on(&self, token: &str) {
        let r = self
            .prefs(
                token,
                json!({ "channels": [{ "channel": "SMS", "enabled": true }] }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }

    /// Posts a budget alert event at `threshold` for `user`, which must be taken.
    async fn alert(&self, user: &str, threshold: i64) {
        assert_eq!(self.post(&alert_event(user, threshold)).await, 200);
    }
}

#[tokio::test]
async fn sms_needs_a_number_verified_by_code_and_then_carries_exceeded_budgets() {
    let s = start().await;
    let (u, token) = test_user();
    let number = "+14155550101";
    // SMS cannot be switched on before a number is verified.
    let r = s
        .prefs(&token, json!({ "channels": [{ "channel": "SMS", "enabled": true }], "email": "sms@example.com" }))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "PHONE_NOT_VERIFIED",
        "{r}"
    );
    let p = s
        .gql
        .ok(
            "{ notificationPreferences { email phoneNumber channels { channel enabled } } }",
            json!({}),
            Some(&token),
        )
        .await["notificationPreferences"]
        .clone();
    assert_eq!(p["email"], Value::Null, "nothing was written: {p}");
    assert!(
        p["channels"]
            .as_array()
            .unwrap()
            .contains(&json!({ "channel": "SMS", "enabled": false }))
    );

    assert_eq!(
        s.gql
            .error_code(SET_PHONE, json!({ "p": "555-0101" }), Some(&token))
            .await,
        "VALIDATION_FAILED"
    );
    let r = s
        .gql
        .ok(SET_PHONE, json!({ "p": "+1 415 555 0101" }), Some(&token))
        .await;
    assert_eq!(r["setPhoneNumber"]["phoneNumber"], number);
    assert_eq!(r["setPhoneNumber"]["attemptsLeft"], 5);
    let sent = s.sms.to(number);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].from, SMS_FROM);
    let code = last_code(&s, number);
    // Asking again at once is throttled; nothing more is sent.
    assert_eq!(
        s.gql
            .error_code(SET_PHONE, json!({ "p": number }), Some(&token))
            .await,
        "RATE_LIMITED"
    );
    assert_eq!(s.sms.to(number).len(), 1);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let m = s.code_refused(&token, wrong).await;
    assert!(m.contains("4 tries left"), "{m}");
    let r = s
        .gql
        .ok(CONFIRM_PHONE, json!({ "c": code }), Some(&token))
        .await;
    assert_eq!(r["confirmPhoneNumber"]["phoneNumber"], number);
    // The code is used up.
    s.code_refused(&token, &code).await;
    s.sms_on(&token).await;

    // A warning does not go to SMS by default; an exceeded budget does.
    s.alert(&u, 80).await;
    s.alert(&u, 100).await;
    s.wait_deliveries(
        &token,
        json!([{ "channel": "SMS", "status": "SENT", "attempts": 1, "reason": null }]),
    )
    .await;
    let texts = s.sms.to(number);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[1].body, "Budget exceeded: food: food budget at 100%");
    assert_eq!(s.sms.bad_auth.load(Ordering::SeqCst), 0);

    // Removing the number switches SMS off.
    let r = s
        .gql
        .ok(
            "mutation { removePhoneNumber { phoneNumber channels { channel enabled } } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(r["removePhoneNumber"]["phoneNumber"], Value::Null);
    assert!(
        r["removePhoneNumber"]["channels"]
            .as_array()
            .unwrap()
            .contains(&json!({ "channel": "SMS", "enabled": false }))
    );
}

#[tokio::test]
async fn verification_codes_expire_and_allow_five_tries() {
    let now = Utc::now();
    let s = start_with(|st| st.clock = kit::clock::Clock::fixed(now)).await;
    let (_, token) = test_user();
    let number = "+447700900123";
    s.gql
        .ok(SET_PHONE, json!({ "p": number }), Some(&token))
        .await;
    let code = last_code(&s, number);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        s.code_refused(&token, wrong).await;
    }
    let m = s.code_refused(&token, &code).await;
    assert!(m.contains("too many wrong codes"), "{m}");

    // A new code (after the throttle), confirmed too late.
    s.service.clock.set(now + chrono::Duration::seconds(31));
    s.gql
        .ok(SET_PHONE, json!({ "p": number }), Some(&token))
        .await;
    let code = last_code(&s, number);
    s.service.clock.set(now + chrono::Duration::minutes(12));
    let m = s.code_refused(&token, &code).await;
    assert!(m.contains("expired"), "{m}");
    let p = s
        .gql
        .ok(
            "{ notificationPreferences { phoneNumber } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(p["notificationPreferences"]["phoneNumber"], Value::Null);
}

#[tokio::test]
async fn a_code_the_provider_refuses_keeps_nothing_and_sms_refusals_give_up_at_once_while_5xx_retry()
 {
    let s = start().await;
    let (u, token) = test_user();
    let number = "+14155550102";
    s.sms.script(number, &[400]);
    assert_eq!(
        s.gql
            .error_code(SET_PHONE, json!({ "p": number }), Some(&token))
            .await,
        "DELIVERY_FAILED"
    );
    // Nothing pending: no code to confirm, and asking again is not throttled.
    let m = s.code_refused(&token, "123456").await;
    assert!(m.contains("no code is waiting"), "{m}");
    s.verify_phone(&token, number).await;

    // Two 5xx, then taken: retried.
    s.sms.script(number, &[503, 500]);
    s.alert(&u, 100).await;
    s.wait_deliveries(
        &token,
        json!([{ "channel": "SMS", "status": "SENT", "attempts": 3, "reason": null }]),
    )
    .await;
    // A 4xx (the number refused): given up at once, with the provider's answer.
    s.sms.script(number, &[400]);
    s.alert(&u, 120).await;
    assert!(
        wait_until(WAIT, || async {
            s.first_deliveries(&token).await[0]["status"] == "FAILED"
        })
        .await
    );
    let d = s.first_deliveries(&token).await[0].clone();
    assert_eq!(d["attempts"], 1, "{d}");
    assert!(d["reason"].as_str().unwrap().contains("HTTP 400"), "{d}");
}

#[tokio::test]
async fn quiet_hours_hold_sms_and_push_too() {
    let s = start().await;
    let (push, _push_server) = PushService::start().await;
    let (u, token) = test_user();
    s.verify_phone(&token, "+14155550103").await;
    let r = s.register_push(&token, push.subscribe("quiet")).await;
    assert!(r["errors"].is_null(), "{r}");
    s.prefs(&token, json!({ "quietHours": quiet_now() })).await;
    s.alert(&u, 100).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let d = s.first_deliveries(&token).await;
    let statuses: Vec<(&str, &str)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap(),
                d["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("PUSH", "PENDING"), ("SMS", "PENDING")]);
    assert_eq!(s.sms.to("+14155550103").len(), 1, "only the code was sent");
    assert_eq!(push.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn clients_subscribe_with_the_configured_vapid_key_or_one_development_key_for_all_instances()
{
    let public_key = |gql: Gql| async move {
        gql.ok("{ webPushPublicKey }", json!({}), None).await["webPushPublicKey"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Without a key: one development key, the same on every instance over the database.
    let s = start().await;
    let (_b, b_server) = s.another_instance("b").await;
    let dev = public_key(s.gql.clone()).await;
    assert_eq!(public_key(Gql::new(b_server.url("/graphql"))).await, dev);

    let private = notifications::channels::push::Vapid::generate();
    let expected = notifications::channels::push::Vapid::new(&private, "mailto:ops@example.com")
        .unwrap()
        .public_key()
        .to_string();
    let s = start_with(|st| st.push.private_key = Some(kit::config::Secret::new(private))).await;
    assert_eq!(public_key(s.gql.clone()).await, expected);
    assert_ne!(expected, dev);
}
