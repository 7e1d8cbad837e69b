//! Following a collection's inserts as they commit: a change stream where the server
//! offers one (a replica set or a sharded cluster: MongoDB, SecantusDB), or the caller's
//! polling where it does not (a standalone server, nx-27017).
//!
//! Every instance that follows a collection opens a stream of its own, so each sees every
//! change, whichever instance made it. A stream that breaks (a network error, a primary
//! that steps down) is reopened after the last event it delivered (its resume token), so
//! nothing is missed or repeated in between. A follower with a stored [`Position`] also
//! keeps that token in the database (collection `change_positions`, one document per
//! follower and instance): a restarted instance resumes where it stopped, and is told
//! when it cannot ([`Seen::Restarted`]: the server no longer has that history).

use std::time::{Duration, Instant};

use futures::StreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
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

/// What a follower is told.
#[derive(Debug)]
pub enum Seen {
    /// A change, in commit order.
    Change(Box<ChangeStreamEvent<Document>>),
    /// The stream (re)started with no continuity with anything before it: the first
    /// start without a stored position, or a stored position the server no longer has
    /// history for. Changes made before it may not be seen; look for them another way.
    Restarted,
}

/// Where one follower of one instance stands, stored so a restart resumes there.
#[derive(Debug, Clone)]
pub struct Position {
    coll: Collection<Document>,
    key: String,
}

/// A follower's position is written once its stream has been quiet this long after a
/// change: never in the middle of a burst of writes, whose latency it would add to.
const SAVE_WHEN_QUIET: Duration = Duration::from_millis(250);

/// ... or, while changes keep coming without such a pause, this long after the first
/// change not yet written.
const SAVE_WHILE_BUSY: Duration = Duration::from_secs(2);

impl Position {
    /// The position of follower `name` on instance `instance`, kept in `db`.
    pub fn new(db: &Database, name: &str, instance: &str) -> Position {
        Position {
            coll: db.collection(POSITIONS),
            key: format!("{name}@{instance}"),
        }
    }

    async fn load(&self) -> Option<ResumeToken> {
        self.stored()
            .await
            .and_then(|t| mongodb::bson::from_bson::<ResumeToken>(t).ok())
    }

    async fn save(&self, token: &ResumeToken) {
        let token = match mongodb::bson::to_bson(token) {
            Ok(t) => t,
            Err(_) => return,
        };
        let r = self
            .coll
            .update_one(
                doc! { "_id": &self.key },
                doc! { "$set": { "token": token, "at": DateTime::now() } },
            )
            .upsert(true)
            .await;
        if let Err(e) = r {
            tracing::warn!(position = %self.key, error = %e, "cannot store a change-stream position");
        }
    }

    /// The stored token, as stored (for tests and diagnostics); none when it cannot be
    /// read (said in the log).
    pub async fn stored(&self) -> Option<Bson> {
        match self.coll.find_one(doc! { "_id": &self.key }).await {
            Ok(d) => d.and_then(|d| d.get("token").cloned()),
            Err(e) => {
                tracing::warn!(position = %self.key, error = %e, "cannot read a stored change-stream position");
                None
            }
        }
    }
}

/// The collection of stored positions.
pub const POSITIONS: &str = "change_positions";

/// Calls `each` with every document inserted into `coll` from now on (or from `position`),
/// in commit order, until `each` returns `false` (see [`follow`]).
pub async fn follow_inserts<T, F>(
    coll: Collection<Document>,
    position: Option<Position>,
    retry: Duration,
    mut each: F,
) where
    T: DeserializeOwned,
    F: FnMut(Result<T, AppError>) -> bool,
{
    let name = coll.name().to_string();
    let only_inserts = vec![doc! { "$match": { "operationType": "insert" } }];
    follow(coll, only_inserts, position, retry, |seen| {
        let Seen::Change(event) = seen else {
            return true;
        };
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

/// Calls `each` with every change of `coll` that passes `pipeline`, in commit order,
/// until `each` returns `false`: from the stored `position` if there is one the server
/// still has history for, else from now (after telling `each` [`Seen::Restarted`]).
/// Reopens a broken stream after its last event, waiting `retry` between failed
/// attempts, and keeps `position` up to date (once the stream has been quiet for 250 ms
/// after a change, every 2 s while changes keep coming, and when `each` stops). Returns
/// only when `each` asks to stop.
pub async fn follow<F>(
    coll: Collection<Document>,
    pipeline: Vec<Document>,
    position: Option<Position>,
    retry: Duration,
    mut each: F,
) where
    F: FnMut(Seen) -> bool,
{
    let mut resume: Option<ResumeToken> = match &position {
        Some(p) => p.load().await,
        None => None,
    };
    let mut fresh = resume.is_none();
    // When the oldest change not yet stored was seen.
    let mut unsaved: Option<Instant> = None;
    loop {
        let opened = coll
            .watch()
            .pipeline(pipeline.clone())
            .resume_after(resume.clone())
            .await;
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) if resume.is_some() && history_lost(&e) => {
                tracing::warn!(collection = coll.name(), error = %e,
                    "the stored change-stream position is gone; following from now");
                resume = None;
                fresh = true;
                continue;
            }
            Err(e) => {
                tracing::warn!(collection = coll.name(), error = %e, "cannot open a change stream; retrying");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if fresh {
            fresh = false;
            // Stored at once, so a restart before the first change still resumes here.
            if let (Some(p), Some(token)) = (&position, stream.resume_token()) {
                p.save(&token).await;
            }
            if !each(Seen::Restarted) {
                return;
            }
        }
        loop {
            // While a change is not yet stored, wait for the next one only so long: a
            // stream gone quiet stores its last change (`ChangeStream::next` may be
            // dropped and called again: the request in flight stays with the stream).
            let next = match unsaved {
                Some(since) if position.is_some() => {
                    let wait = SAVE_WHEN_QUIET.min(SAVE_WHILE_BUSY.saturating_sub(since.elapsed()));
                    match tokio::time::timeout(wait, stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            if let (Some(p), Some(token)) = (&position, &resume) {
                                p.save(token).await;
                            }
                            unsaved = None;
                            continue;
                        }
                    }
                }
                _ => stream.next().await,
            };
            let Some(next) = next else { break };
            match next {
                Ok(event) => {
                    resume = Some(event.id.clone());
                    unsaved.get_or_insert_with(Instant::now);
                    if !each(Seen::Change(Box::new(event))) {
                        if let (Some(p), Some(token)) = (&position, &resume) {
                            p.save(token).await;
                        }
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

/// Whether opening a stream failed because the server has no history at the resume
/// token (it fell off the oplog, or the token is not one of this server's).
fn history_lost(e: &mongodb::error::Error) -> bool {
    // ChangeStreamHistoryLost (286), ChangeStreamFatalError (280), InvalidResumeToken
    // (260), or a token that does not parse (FailedToParse, 9: a stored token of another
    // server or version).
    matches!(crate::error::server_code(e), Some(286 | 280 | 260 | 9))
}
