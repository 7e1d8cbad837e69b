#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Following a collection on a change stream with a stored position: a restarted
//! follower resumes after the last change it saw, and one without a position (or whose
//! position the server has no history for) is told it starts afresh.

use std::time::Duration;

use kit::changes::{Follow, Position, Seen};
use kit::testing::{TestDb, test_config};
use mongodb::bson::{Document, doc};

const COLL: &str = "things";

/// Follows `COLL` from `position` until `count` changes (not counting a restart) were
/// seen; returns what it was told, in order: "restarted" or the inserted `n`.
async fn follow_for(db: &TestDb, position: Position, count: usize) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let coll = db.db.collection::<Document>(COLL);
    let pipeline = vec![doc! { "$match": { "operationType": "insert" } }];
    let run = kit::changes::follow(
        coll,
        pipeline,
        Some(position),
        Duration::from_millis(50),
        |s| {
            match s {
                Seen::Restarted => seen.push("restarted".into()),
                Seen::Change(e) => {
                    let n = e
                        .full_document
                        .and_then(|d| d.get_i32("n").ok())
                        .unwrap_or(-1);
                    seen.push(n.to_string());
                }
            }
            seen.iter().filter(|s| *s != "restarted").count() < count
        },
    );
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the changes came");
    seen
}

async fn insert(db: &TestDb, range: std::ops::Range<i32>) {
    let coll = db.db.collection::<Document>(COLL);
    for n in range {
        coll.insert_one(doc! { "n": n }).await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_follower_resumes_after_the_last_change_it_saw() {
    let db = TestDb::new(&test_config("changes")).await;
    if kit::changes::follow_mode(&db.db).await == Follow::Polling {
        // A standalone server (nx-27017) has no change streams; its followers poll.
        return;
    }
    db.db.create_collection(COLL).await.unwrap();
    let position = Position::new(&db.db, "test", "one");
    // First start: no position yet, so it is told it starts afresh.
    let writer = {
        let db = db.db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let coll = db.collection::<Document>(COLL);
            for n in 0..3 {
                coll.insert_one(doc! { "n": n }).await.unwrap();
            }
        })
    };
    let first = follow_for(&db, position.clone(), 3).await;
    writer.await.unwrap();
    assert_eq!(first, ["restarted", "0", "1", "2"]);
    assert!(position.stored().await.is_some(), "the position was stored");
    // Stopped: changes made meanwhile are seen after a restart, and nothing twice.
    insert(&db, 3..6).await;
    let second = follow_for(&db, position.clone(), 3).await;
    assert_eq!(second, ["3", "4", "5"]);
    // Another instance keeps a position of its own.
    let other = Position::new(&db.db, "test", "two");
    assert!(other.stored().await.is_none());
}

#[tokio::test]
async fn a_position_the_server_cannot_resume_from_starts_afresh_and_says_so() {
    let db = TestDb::new(&test_config("changes")).await;
    if kit::changes::follow_mode(&db.db).await == Follow::Polling {
        return;
    }
    db.db.create_collection(COLL).await.unwrap();
    // A token of no stream this server ever had.
    db.db
        .collection::<Document>(kit::changes::POSITIONS)
        .insert_one(
            doc! { "_id": "test@lost", "token": { "_data": "8263A1B2C3000000012B0429296E1404" } },
        )
        .await
        .unwrap();
    let position = Position::new(&db.db, "test", "lost");
    let writer = {
        let db = db.db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            db.collection::<Document>(COLL)
                .insert_one(doc! { "n": 7 })
                .await
                .unwrap();
        })
    };
    let seen = follow_for(&db, position, 1).await;
    writer.await.unwrap();
    assert_eq!(seen, ["restarted", "7"]);
}
