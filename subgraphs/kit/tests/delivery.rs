#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The dispatcher against a real consumer over a real database: one user's backlog does
//! not hold up another user's events, and every user's events arrive once and in order,
//! also when one document carries several of them and a batch ends among them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kit::AppError;
use kit::config::Secret;
use kit::events::{
    Consumer, DispatchSettings, Dispatcher, DomainEvent, Event, EventHandler, Outbox,
};
use kit::testing::{TestDb, TestServer, test_config, wait_until};
use mongodb::bson::{self, Document, doc};

const PRODUCER: &str = "things";
const CONSUMER: &str = "recorder";

/// Records the events it applies, in the order it applies them.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl EventHandler for Recorder {
    async fn handle(&self, envelope: &Event, _event: DomainEvent) -> Result<(), AppError> {
        self.0.lock().unwrap().push(envelope.clone());
        Ok(())
    }
}

impl Recorder {
    fn of(&self, user: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.user_id.as_str() == user)
            .map(|e| e.id.to_string())
            .collect()
    }
}

struct Setup {
    producer: TestDb,
    recorder: Recorder,
    dispatcher: Dispatcher,
    _consumer: TestServer,
    _task: kit::server::Background,
}

async fn setup(settings: DispatchSettings) -> Setup {
    let config = test_config("producer");
    let producer = TestDb::new(&config).await;
    let consumer_db = TestDb::new(&test_config("consumer")).await;
    let recorder = Recorder::default();
    let app = kit::events::consumer_app(
        CONSUMER,
        recorder.clone(),
        &consumer_db.db,
        config.service_token.clone(),
    )
    .await
    .unwrap();
    let consumer = TestServer::start(app).await;
    let dispatcher = Dispatcher::new(
        producer.db.clone(),
        &[PRODUCER],
        vec![Consumer {
            name: CONSUMER.into(),
            url: consumer.url(""),
        }],
        config.service_token.clone(),
        settings,
    );
    dispatcher.ensure_indexes().await.unwrap();
    Setup {
        producer,
        recorder,
        dispatcher,
        _consumer: consumer,
        _task: kit::server::Background::default(),
    }
}

fn event(user: &str) -> Event {
    kit::testing::weekly_summary_event(user)
}

/// A producer document of `user` carrying `outbox`, as a producer writes it.
fn document(user: &str, outbox: &Outbox) -> Document {
    let mut d = bson::to_document(outbox).unwrap();
    d.insert("_id", kit::ids::new_id());
    d.insert("userId", user);
    d
}

fn consumers() -> Vec<String> {
    vec![CONSUMER.to_string()]
}

#[tokio::test]
async fn one_users_backlog_does_not_hold_up_another_users_event() {
    const BACKLOG: usize = 2000;
    let mut s = setup(DispatchSettings::fast()).await;
    let things = s.producer.db.collection::<Document>(PRODUCER);
    // User a's backlog, written straight into the outbox the way a producer writes it.
    let mut a_ids = Vec::new();
    let docs: Vec<Document> = (0..BACKLOG)
        .map(|_| {
            let e = event("a");
            a_ids.push(e.id.to_string());
            document("a", &Outbox::with(e, &consumers()))
        })
        .collect();
    for chunk in docs.chunks(500) {
        things.insert_many(chunk.to_vec()).await.unwrap();
    }
    s._task.push(s.dispatcher.spawn());
    assert!(
        wait_until(Duration::from_secs(60), || async {
            !s.recorder.of("a").is_empty()
        })
        .await,
        "the backlog starts draining"
    );
    // User b writes one event while a's backlog drains.
    let b = event("b");
    things
        .insert_one(document("b", &Outbox::with(b.clone(), &consumers())))
        .await
        .unwrap();
    s.dispatcher.wake();
    let settled = wait_until(Duration::from_secs(300), || async {
        !s.recorder.of("b").is_empty() || s.recorder.of("a").len() >= BACKLOG
    })
    .await;
    assert!(settled);
    let a_before_b = s.recorder.of("a").len();
    assert_eq!(s.recorder.of("b"), vec![b.id.to_string()]);
    assert!(
        a_before_b < BACKLOG / 2,
        "b's event waited for {a_before_b} of a's {BACKLOG} events"
    );
    // The backlog still drains completely, once and in order.
    assert!(
        wait_until(Duration::from_secs(300), || async {
            s.recorder.of("a").len() >= BACKLOG
        })
        .await
    );
    // Every delivery is acknowledged (the last batch's acknowledgements may still be
    // on their way when its events are applied).
    assert!(
        wait_until(Duration::from_secs(30), || async {
            things
                .count_documents(doc! { "outboxPending.c": CONSUMER })
                .await
                .unwrap()
                == 0
        })
        .await,
        "events left pending"
    );
    assert_eq!(s.recorder.of("a"), a_ids);
}

#[tokio::test]
async fn events_spread_over_documents_arrive_in_order_across_small_batches() {
    let mut settings = DispatchSettings::fast();
    settings.batch = 2;
    let mut s = setup(settings).await;
    let things = s.producer.db.collection::<Document>(PRODUCER);
    // Six events of one user in four documents, two documents with two events each (as
    // a change of an existing document adds one), and one event of another user.
    let e: Vec<Event> = (0..6).map(|_| event("u")).collect();
    let mut d1 = Outbox::with(e[0].clone(), &consumers());
    let d2 = Outbox::with(e[1].clone(), &consumers());
    d1.push(e[2].clone(), &consumers());
    let mut d3 = Outbox::with(e[3].clone(), &consumers());
    let d4 = Outbox::with(e[4].clone(), &consumers());
    d3.push(e[5].clone(), &consumers());
    let other = event("v");
    for (user, o) in [
        ("u", &d3),
        ("u", &d1),
        ("v", &Outbox::with(other.clone(), &consumers())),
        ("u", &d4),
        ("u", &d2),
    ] {
        things.insert_one(document(user, o)).await.unwrap();
    }
    s._task.push(s.dispatcher.spawn());
    assert!(
        wait_until(Duration::from_secs(30), || async {
            s.recorder.of("u").len() >= 6 && !s.recorder.of("v").is_empty()
        })
        .await,
        "{:?}",
        s.recorder.of("u")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let want: Vec<String> = e.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(s.recorder.of("u"), want);
    assert_eq!(s.recorder.of("v"), vec![other.id.to_string()]);
    let left = things
        .count_documents(doc! { "outboxPending.c": CONSUMER })
        .await
        .unwrap();
    assert_eq!(left, 0);
    // A new event on a document already delivered is delivered too.
    let first = things
        .find_one(doc! { "userId": "u" })
        .await
        .unwrap()
        .unwrap();
    let mut read: Outbox = bson::from_document(first.clone()).unwrap();
    let late = event("u");
    read.push(late.clone(), &consumers());
    let mut replacement = bson::to_document(&read).unwrap();
    replacement.insert("userId", "u");
    things
        .replace_one(doc! { "_id": first.get_str("_id").unwrap() }, replacement)
        .await
        .unwrap();
    s.dispatcher.wake();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            s.recorder.of("u").len() >= 7
        })
        .await
    );
    assert_eq!(s.recorder.of("u").last(), Some(&late.id.to_string()));
}

#[tokio::test]
async fn more_users_than_the_line_holds_all_get_their_events() {
    // One permit: at most 32 streams wait in line; 100 users have an event each.
    let mut settings = DispatchSettings::fast();
    settings.streams = 1;
    let mut s = setup(settings).await;
    let users: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let docs: Vec<Document> = users
        .iter()
        .map(|u| document(u, &Outbox::with(event(u), &consumers())))
        .collect();
    s.producer
        .db
        .collection::<Document>(PRODUCER)
        .insert_many(docs)
        .await
        .unwrap();
    s._task.push(s.dispatcher.spawn());
    assert!(
        wait_until(Duration::from_secs(60), || async {
            users.iter().all(|u| s.recorder.of(u).len() == 1)
        })
        .await,
        "some users' events were left waiting"
    );
}

/// A second dispatcher over the same producer and consumer: another instance.
fn another_instance(s: &Setup, settings: DispatchSettings, instance: &str) -> Dispatcher {
    Dispatcher::new(
        s.producer.db.clone(),
        &[PRODUCER],
        vec![Consumer {
            name: CONSUMER.into(),
            url: s._consumer.url(""),
        }],
        Secret::new(kit::testing::TEST_SERVICE_TOKEN),
        settings,
    )
    .for_instance(instance)
}

#[tokio::test]
async fn every_instance_sees_writes_made_by_any_other_on_a_change_stream() {
    // Looking for pending events a minute apart: only a change stream brings a write
    // that woke no dispatcher to one within the wait.
    let mut settings = DispatchSettings::fast();
    settings.poll = Duration::from_secs(60);
    let mut s = setup(settings.clone()).await;
    if kit::changes::follow_mode(&s.producer.db).await == kit::changes::Follow::Polling {
        // A standalone server (nx-27017): dispatchers poll, as the tests above show.
        return;
    }
    for instance in ["a", "b"] {
        let d = another_instance(&s, settings.clone(), instance);
        s._task.push(d.spawn());
    }
    // The dispatchers' first look has found nothing; now writes that wake no one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users: Vec<String> = (0..5).map(|i| format!("w{i}")).collect();
    for u in &users {
        s.producer
            .db
            .collection::<Document>(PRODUCER)
            .insert_one(document(u, &Outbox::with(event(u), &consumers())))
            .await
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(15), || async {
            users.iter().all(|u| s.recorder.of(u).len() == 1)
        })
        .await,
        "writes no dispatcher was told of were not delivered"
    );
    // Each instance keeps its own position, so a restart resumes where it stopped.
    let positions = s
        .producer
        .db
        .collection::<Document>(kit::changes::POSITIONS);
    for instance in ["a", "b"] {
        let key = format!("outbox.{PRODUCER}@{instance}");
        assert!(
            positions
                .find_one(doc! { "_id": &key })
                .await
                .unwrap()
                .is_some(),
            "no stored position {key}"
        );
    }
    // Delivered once, though both instances saw every write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for u in &users {
        assert_eq!(s.recorder.of(u).len(), 1, "{u}");
    }
}
