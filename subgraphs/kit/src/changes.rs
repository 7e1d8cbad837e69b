//! Following a collection's inserts as they commit: a change stream where the server
//! offers one (a replica set or a sharded cluster: MongoDB, SecantusDB), or the caller's
//! polling where it does not (a standalone server, nx-27017).
//!
//! Every instance that follows a collection opens a stream of its own, so each sees every
//! insert, whichever instance made it. A stream that breaks (a network error, a primary
//! that steps down) is reopened after the last event it delivered (its resume token), so
//! nothing is missed or repeated in between.

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{Document, doc};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::{Collection, Database};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// How new documents are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// A change stream: an insert is seen as it commits.
    ChangeStream,
    /// Polling an increasing key: an insert is seen at the next poll.
    Polling,
}

/// Whether the server behind `db` offers change streams: see [`replicated`].
pub async fn follow_mode(db: &Database) -> Follow {
    if replicated(db).await {
        Follow::ChangeStream
    } else {
        Follow::Polling
    }
}

/// Whether the server behind `db` is a replica set member or a `mongos` (`hello` names a
/// set, or says `isdbgrid`): only those offer change streams and multi-document
/// transactions. A standalone server (or nx-27017) has neither.
pub async fn replicated(db: &Database) -> bool {
    match db.run_command(doc! { "hello": 1 }).await {
        Ok(hello) => hello.contains_key("setName") || hello.get_str("msg") == Ok("isdbgrid"),
        Err(e) => {
            tracing::warn!(error = %e, "hello failed; taken as a standalone server");
            false
        }
    }
}

/// Calls `each` with every document inserted into `coll` from now on, in commit order,
/// until `each` returns `false` (see [`follow`]).
pub async fn follow_inserts<T, F>(coll: Collection<Document>, retry: Duration, mut each: F)
where
    T: DeserializeOwned,
    F: FnMut(Result<T, AppError>) -> bool,
{
    let name = coll.name().to_string();
    let only_inserts = vec![doc! { "$match": { "operationType": "insert" } }];
    follow(coll, only_inserts, retry, |event| {
        let Some(document) = event.full_document else {
            return true;
        };
        each(mongodb::bson::from_document::<T>(document).map_err(|e| {
            AppError::internal(anyhow::anyhow!(
                "an inserted {name} document does not read: {e}"
            ))
        }))
    })
    .await
}

/// Calls `each` with every change of `coll` that passes `pipeline`, from now on, in
/// commit order, until `each` returns `false`; reopens a broken stream after its last
/// event, waiting `retry` between failed attempts. Returns only when `each` asks to stop.
pub async fn follow<F>(
    coll: Collection<Document>,
    pipeline: Vec<Document>,
    retry: Duration,
    mut each: F,
) where
    F: FnMut(ChangeStreamEvent<Document>) -> bool,
{
    let mut resume: Option<ResumeToken> = None;
    loop {
        let opened = coll
            .watch()
            .pipeline(pipeline.clone())
            .resume_after(resume.clone())
            .await;
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(collection = coll.name(), error = %e, "cannot open a change stream; retrying");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        while let Some(next) = stream.next().await {
            match next {
                Ok(event) => {
                    resume = Some(event.id.clone());
                    if !each(event) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(collection = coll.name(), error = %e, "change stream broke; resuming after its last event");
                    break;
                }
            }
        }
        if let Some(token) = stream.resume_token() {
            resume = Some(token);
        }
        tokio::time::sleep(retry).await;
    }
}
