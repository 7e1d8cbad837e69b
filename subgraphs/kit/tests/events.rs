#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The one poison-event policy of every consumer, over a real database and a real
//! server: a refused event is parked, a passing failure is retried by the producer, and
//! a re-drive after the cause is fixed applies the event exactly once, however many
//! re-drives race.

use futures::TryStreamExt;
use kit::AppError;
use kit::events::{DomainEvent, Event, EventHandler};
use kit::testing::{
    TEST_SERVICE_TOKEN, TestDb, TestServer, dead_letters, metric, post_event, redrive, test_config,
};
use mongodb::Database;
use mongodb::bson::{Document, doc};
use serde_json::json;

/// Applies an event by recording it, once the database holds a `switches/ready`
/// document; while `switches/down` (or `switches/down-<user>` for that user's events)
/// exists it fails as if the database were down.
struct Recorder(Database);

impl EventHandler for Recorder {
    async fn handle(&self, envelope: &Event, _event: DomainEvent) -> Result<(), AppError> {
        let switches = self.0.collection::<Document>("switches");
        let user_down = format!("down-{}", envelope.user_id.as_str());
        if switches
            .find_one(doc! { "_id": { "$in": ["down", user_down] } })
            .await?
            .is_some()
        {
            return Err(AppError::internal(anyhow::anyhow!("the store is down")));
        }
        if switches.find_one(doc! { "_id": "ready" }).await?.is_none() {
            return Err(AppError::validation("budget", "no such budget yet"));
        }
        self.0
            .collection::<Document>("applied")
            .insert_one(doc! { "event": envelope.id.as_str() })
            .await?;
        Ok(())
    }
}

async fn start() -> (TestServer, TestDb) {
    let config = test_config("consumer");
    let db = TestDb::new(&config).await;
    let app = kit::events::consumer_app(
        "recorder",
        Recorder(db.db.clone()),
        &db.db,
        config.service_token.clone(),
    )
    .await
    .unwrap();
    (TestServer::start(app).await, db)
}

fn weekly_summary(user: &str) -> Event {
    kit::testing::weekly_summary_event(user)
}

async fn applied(db: &TestDb) -> u64 {
    db.db
        .collection::<Document>("applied")
        .count_documents(doc! {})
        .await
        .unwrap()
}

async fn switch(db: &TestDb, id: &str, on: bool) {
    let switches = db.db.collection::<Document>("switches");
    if on {
        switches.insert_one(doc! { "_id": id }).await.unwrap();
    } else {
        switches.delete_one(doc! { "_id": id }).await.unwrap();
    }
}

#[tokio::test]
async fn a_refused_event_is_parked_and_re_driven_exactly_once_after_the_cause_is_fixed() {
    let (server, db) = start().await;
    let event = weekly_summary("u1");
    assert_eq!(post_event(&server, TEST_SERVICE_TOKEN, &event).await, 200);
    assert_eq!(applied(&db).await, 0);
    let dead = dead_letters(&server).await;
    assert_eq!(dead["total"], 1, "{dead}");
    let letter = &dead["deadLetters"][0];
    assert_eq!(letter["id"], event.id.as_str());
    assert_eq!(letter["reason"], "rejected");
    assert_eq!(letter["detail"], "VALIDATION_FAILED: no such budget yet");
    assert_eq!(letter["type"], "weekly.summary");
    assert_eq!(letter["attempts"], 1);
    assert_eq!(
        metric(&server, "events_parked_total", &[("reason", "rejected")]).await,
        1.0
    );
    assert_eq!(metric(&server, "events_dead_letters", &[]).await, 1.0);

    // The cause still stands: parked again, one more attempt, nothing applied.
    let (status, out) = redrive(&server, event.id.as_str()).await;
    assert_eq!((status, out["outcome"].as_str()), (200, Some("PARKED")));
    assert_eq!(dead_letters(&server).await["deadLetters"][0]["attempts"], 2);
    assert_eq!(applied(&db).await, 0);

    // Fixed: four re-drives race; the event is applied once.
    switch(&db, "ready", true).await;
    let id = event.id.to_string();
    let answers = futures::future::join_all((0..4).map(|_| redrive(&server, &id))).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    let applied_answers = answers
        .iter()
        .filter(|(s, out)| *s == 200 && out["outcome"] == "APPLIED")
        .count();
    assert_eq!(applied_answers, 1, "{answers:?}");
    assert!(
        statuses.iter().all(|s| [200, 404, 409].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(applied(&db).await, 1);
    assert_eq!(dead_letters(&server).await["total"], 0);
    assert_eq!(metric(&server, "events_dead_letters", &[]).await, 0.0);
    // The producer sending it once more changes nothing either.
    assert_eq!(post_event(&server, TEST_SERVICE_TOKEN, &event).await, 200);
    assert_eq!(applied(&db).await, 1);
    let (status, _) = redrive(&server, &id).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_passing_failure_is_left_to_the_producer_to_retry_and_is_not_parked() {
    let (server, db) = start().await;
    switch(&db, "ready", true).await;
    switch(&db, "down", true).await;
    let event = weekly_summary("u2");
    assert_eq!(post_event(&server, TEST_SERVICE_TOKEN, &event).await, 503);
    assert_eq!(dead_letters(&server).await["total"], 0);
    assert_eq!(
        metric(&server, "events_received_total", &[("outcome", "retry")]).await,
        1.0
    );
    switch(&db, "down", false).await;
    assert_eq!(post_event(&server, TEST_SERVICE_TOKEN, &event).await, 200);
    assert_eq!(applied(&db).await, 1);
}

#[tokio::test]
async fn dead_letters_and_re_drives_take_only_the_service_credential() {
    let (server, _db) = start().await;
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/internal/dead-letters"),
        (reqwest::Method::POST, "/internal/dead-letters/x/redrive"),
    ] {
        for header in [None, Some("wrong")] {
            let mut req = http.request(method.clone(), server.url(path));
            if let Some(v) = header {
                req = req.header(kit::events::SERVICE_TOKEN_HEADER, v);
            }
            assert_eq!(req.send().await.unwrap().status(), 401, "{method} {path}");
        }
    }
    let r = http
        .get(server.url("/internal/dead-letters?limit=0"))
        .header(kit::events::SERVICE_TOKEN_HEADER, TEST_SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn post_batch(server: &TestServer, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(server.url(kit::events::EVENTS_BATCH_PATH))
        .header(kit::events::SERVICE_TOKEN_HEADER, TEST_SERVICE_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn outcomes(answer: &serde_json::Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_batch_is_applied_in_order_once_per_event_and_answered_per_event() {
    let (server, db) = start().await;
    switch(&db, "ready", true).await;
    switch(&db, "down-flaky", true).await;
    let first = weekly_summary("u3");
    let flaky = weekly_summary("flaky");
    let last = weekly_summary("u3");
    let mut unknown = weekly_summary("u3");
    unknown.kind = "no.such.type".into();
    let batch = json!([first, unknown, flaky, last]);
    let id = |e: &Event| e.id.to_string();
    let out = |o: &str| o.to_string();
    // A passing failure ends the batch: what came before it is taken, what follows is
    // not looked at.
    let (status, answer) = post_batch(&server, &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        vec![
            (id(&first), out("APPLIED")),
            (id(&unknown), out("PARKED")),
            (id(&flaky), out("RETRY")),
        ]
    );
    assert_eq!(applied(&db).await, 1);
    assert_eq!(dead_letters(&server).await["total"], 1);
    // Sent again once the cause is gone: each event applied once.
    switch(&db, "down-flaky", false).await;
    let (_, answer) = post_batch(&server, &batch).await;
    assert_eq!(
        outcomes(&answer),
        vec![
            (id(&first), out("DUPLICATE")),
            (id(&unknown), out("PARKED")),
            (id(&flaky), out("APPLIED")),
            (id(&last), out("APPLIED")),
        ]
    );
    assert_eq!(applied(&db).await, 3);
    let order: Vec<String> = db
        .db
        .collection::<Document>("applied")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_str("event").unwrap().to_string())
        .collect();
    assert_eq!(order, vec![id(&first), id(&flaky), id(&last)]);
    // An empty batch takes nothing; a single event keeps its own endpoint.
    let (status, answer) = post_batch(&server, &json!([])).await;
    assert_eq!((status, outcomes(&answer).len()), (200, 0));
    assert_eq!(post_event(&server, TEST_SERVICE_TOKEN, &last).await, 200);
    assert_eq!(applied(&db).await, 3);
}

#[tokio::test]
async fn a_batch_that_is_not_an_array_or_too_long_is_refused_and_changes_nothing() {
    let (server, db) = start().await;
    switch(&db, "ready", true).await;
    let too_many: Vec<Event> = (0..=kit::events::MAX_BATCH_EVENTS)
        .map(|_| weekly_summary("u4"))
        .collect();
    for body in [
        json!({ "events": [] }),
        json!(weekly_summary("u4")),
        json!(too_many),
    ] {
        let (status, answer) = post_batch(&server, &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["code"], "VALIDATION_FAILED");
    }
    let r = reqwest::Client::new()
        .post(server.url(kit::events::EVENTS_BATCH_PATH))
        .json(&json!([weekly_summary("u4")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(applied(&db).await, 0);
    assert_eq!(dead_letters(&server).await["total"], 0);
}
