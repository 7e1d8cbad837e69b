//! The dispatcher: delivers the outboxes of a producer's collections to its consumers,
//! at least once, in order per user, one bounded batch per (consumer, user) stream at a
//! time, streams served side by side and in turn (see the module above).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::{
    Consumer, EVENTS_BATCH_PATH, EVENTS_PATH, Event, MAX_BATCH_EVENTS, Outbox,
    SERVICE_TOKEN_HEADER, next_pending, parse_consumers,
};
use crate::config::{ConfigError, Secret, Vars, var_or};
use crate::error::{AppError, is_duplicate_key};

/// Timing of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// `EVENT_POLL_MS` (default 1000): how often pending events are looked for (a local
    /// write also wakes the dispatcher at once).
    pub poll: Duration,
    /// `EVENT_RETRY_BASE_MS` (default 500): first retry delay, doubled per failure.
    pub retry_base: Duration,
    /// `EVENT_RETRY_MAX_MS` (default 300000): longest retry delay.
    pub retry_max: Duration,
    /// `EVENT_LEASE_MS` (default 30000): how long a claim on a user's stream lasts
    /// without renewal (an instance that dies mid-delivery is replaced after this).
    pub lease: Duration,
    /// `EVENT_HTTP_TIMEOUT_MS` (default 10000): timeout of one delivery request (one
    /// batch).
    pub http_timeout: Duration,
    /// `EVENT_BATCH_MAX` (default 100, at most 500): most events of one user sent to a
    /// consumer in one request; a stream with more waits for its next turn.
    pub batch: usize,
    /// `EVENT_STREAMS` (default 8, 1 to 64): (consumer, user) streams delivered at the
    /// same time by one instance.
    pub streams: usize,
}

impl DispatchSettings {
    pub const VARS: &'static [&'static str] = &[
        "EVENT_CONSUMERS",
        "EVENT_POLL_MS",
        "EVENT_RETRY_BASE_MS",
        "EVENT_RETRY_MAX_MS",
        "EVENT_LEASE_MS",
        "EVENT_HTTP_TIMEOUT_MS",
        "EVENT_BATCH_MAX",
        "EVENT_STREAMS",
    ];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        let ms = |name: &str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(var_or(vars, name, default)?))
        };
        let count = |name: &str, default: usize, max: usize| -> Result<usize, ConfigError> {
            let n: usize = var_or(vars, name, default)?;
            if (1..=max).contains(&n) {
                Ok(n)
            } else {
                Err(ConfigError::new(name, format!("must be from 1 to {max}")))
            }
        };
        Ok(DispatchSettings {
            poll: ms("EVENT_POLL_MS", 1000)?,
            retry_base: ms("EVENT_RETRY_BASE_MS", 500)?,
            retry_max: ms("EVENT_RETRY_MAX_MS", 300_000)?,
            lease: ms("EVENT_LEASE_MS", 30_000)?,
            http_timeout: ms("EVENT_HTTP_TIMEOUT_MS", 10_000)?,
            batch: count("EVENT_BATCH_MAX", 100, MAX_BATCH_EVENTS)?,
            streams: count("EVENT_STREAMS", 8, 64)?,
        })
    }

    /// Fast timings for tests.
    pub fn fast() -> Self {
        DispatchSettings {
            poll: Duration::from_millis(50),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
            lease: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
            batch: 100,
            streams: 8,
        }
    }
}

/// `EVENT_CONSUMERS`, or `defaults` when unset.
pub fn consumers_from_vars(
    vars: &(impl Vars + ?Sized),
    defaults: &str,
) -> Result<Vec<Consumer>, ConfigError> {
    let text = vars
        .get("EVENT_CONSUMERS")
        .unwrap_or_else(|| defaults.to_string());
    parse_consumers(&text).map_err(|m| ConfigError::new("EVENT_CONSUMERS", m))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseDoc {
    #[serde(rename = "_id")]
    id: String,
    owner: String,
    /// Epoch milliseconds (numbers: comparisons and `$set` behave the same everywhere).
    lease_until: i64,
    retry_at: i64,
    attempts: i64,
}

/// Delivers the outboxes of some collections to their consumers.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<DispatcherInner>,
}

struct DispatcherInner {
    db: Database,
    collections: Vec<String>,
    consumers: Vec<Consumer>,
    /// Per consumer: it answered 404 on the batch endpoint (an older consumer), so its
    /// events go one per request.
    single: Vec<AtomicBool>,
    token: Secret,
    http: reqwest::Client,
    settings: DispatchSettings,
    owner: String,
    wake: Notify,
    /// This instance's name: its change-stream positions are its own.
    instance: String,
    /// Streams seen on the change streams, on their way to the delivery loop.
    hints: tokio::sync::mpsc::Sender<Stream>,
    hints_rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Stream>>>,
    /// Writes are followed on change streams: a local write needs no wake-up.
    followed: AtomicBool,
    /// Leases this instance holds after delivering their stream, kept [`LINGER`] for
    /// the stream's next batch: a user's next event is delivered without a claim, and
    /// the lease is given back when the stream has gone quiet, not in the middle of the
    /// writes the delivery causes.
    kept: std::sync::Mutex<HashMap<Stream, Kept>>,
}

/// A lease this instance holds with nothing being delivered on it.
#[derive(Debug, Clone, Copy)]
struct Kept {
    /// Its `leaseUntil` (epoch milliseconds).
    until: i64,
    /// When its last delivery ended.
    since: Instant,
}

/// How long a delivered stream's lease is kept for its next batch (see `kept`). A
/// stopped instance leaves its kept leases to expire (`EVENT_LEASE_MS`), as it leaves
/// those of the batches it was delivering.
const LINGER: Duration = Duration::from_millis(500);

/// A lease claimed for one batch.
#[derive(Debug, Clone, Copy)]
struct Claimed {
    /// Its `leaseUntil` (epoch milliseconds).
    until: i64,
    /// It was kept from the stream's last (successful) delivery.
    kept: bool,
}

/// What a task of the delivery loop does for its stream.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// Deliver the next batch.
    Deliver,
    /// Give back a kept lease that has lingered.
    GiveBack,
}

/// One delivery stream: a consumer (by index) and a user.
type Stream = (usize, String);

/// Most bytes of events in one batch request (a consumer takes bodies up to 2 MiB).
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// How many times an acknowledgement is recomputed when the document keeps changing.
const ACK_TRIES: usize = 8;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The field holding a document's oldest event pending for `consumer`.
fn next_field(consumer: &str) -> String {
    format!("outboxNext.{consumer}")
}

/// A producer document as the dispatcher reads it.
struct Loaded {
    /// Index into the dispatcher's collections.
    coll: usize,
    id: Bson,
    /// `outboxRev` as read (`None`: the field is absent).
    rev: Option<i64>,
    outbox: Outbox,
}

impl Loaded {
    fn read(coll: usize, d: Document) -> anyhow::Result<Loaded> {
        let id = d.get("_id").cloned().unwrap_or(Bson::Null);
        let rev = match d.get("outboxRev") {
            Some(Bson::Int64(n)) => Some(*n),
            Some(Bson::Int32(n)) => Some(i64::from(*n)),
            Some(Bson::Double(n)) => Some(*n as i64),
            _ => None,
        };
        let outbox: Outbox = bson::from_document(d)?;
        Ok(Loaded {
            coll,
            id,
            rev,
            outbox,
        })
    }

    /// The stored `outboxNext` of `consumer` (what the query sorted on).
    fn key(&self, consumer: &str) -> Option<&str> {
        self.outbox.outbox_next.get(consumer).map(String::as_str)
    }
}

fn projection() -> Document {
    doc! { "outbox": 1, "outboxPending": 1, "outboxNext": 1, "outboxRev": 1 }
}

/// What a consumer made of a batch.
struct Sent {
    /// How many events, from the first, it acknowledged (applied, already applied or
    /// parked).
    acked: usize,
    /// It refused one (or could not be reached): retry the rest after a backoff.
    failed: bool,
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    id: Option<String>,
    outcome: String,
}

/// Streams that may wait in line per delivery permit (`EVENT_STREAMS`).
const STREAMS_WAITING_PER_PERMIT: usize = 32;

/// Streams seen on change streams that may wait to be put in line; past that, the
/// next look finds them.
const HINTS_BUFFER: usize = 1024;

/// The look for streams with pending events (it reads every pending document on a
/// server without covered `distinct`) waits, after one that took `d`, at least
/// `LOOK_SPACING × d` before the next: looking takes at most a fifth of the time.
const LOOK_SPACING: u32 = 4;

impl Dispatcher {
    pub fn new(
        db: Database,
        collections: &[&str],
        consumers: Vec<Consumer>,
        token: Secret,
        settings: DispatchSettings,
    ) -> Dispatcher {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .build()
            .unwrap_or_default();
        let (hints, hints_rx) = tokio::sync::mpsc::channel(HINTS_BUFFER);
        Dispatcher {
            inner: Arc::new(DispatcherInner {
                db,
                collections: collections.iter().map(|c| c.to_string()).collect(),
                single: consumers.iter().map(|_| AtomicBool::new(false)).collect(),
                consumers,
                token,
                http,
                settings,
                owner: crate::ids::new_id(),
                wake: Notify::new(),
                instance: "main".to_string(),
                hints,
                hints_rx: std::sync::Mutex::new(Some(hints_rx)),
                followed: AtomicBool::new(false),
                kept: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Names this instance (`INSTANCE_ID`), for its stored change-stream positions.
    /// Only before the dispatcher is shared or started.
    pub fn for_instance(mut self, instance: &str) -> Dispatcher {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.instance = instance.to_string();
        }
        self
    }

    /// A dispatcher with no collections and no consumers, never started: for a schema
    /// built only to export its SDL.
    pub fn inert(db: &Database) -> Dispatcher {
        Dispatcher::new(
            db.clone(),
            &[],
            Vec::new(),
            Secret::new(String::new()),
            DispatchSettings::fast(),
        )
    }

    /// Names of the consumers, for the `outboxPending` of new events.
    pub fn consumer_names(&self) -> Vec<String> {
        self.inner
            .consumers
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Puts `user`'s streams in line now (after a local write of that user's events):
    /// no look over every pending document is needed.
    pub fn wake_user(&self, user: &str) {
        for ci in 0..self.inner.consumers.len() {
            self.hint((ci, user.to_string()));
        }
    }

    /// Hands a stream to the delivery loop; when it is behind, its next look finds it.
    fn hint(&self, stream: Stream) {
        if self.inner.hints.try_send(stream).is_err() {
            self.inner.wake.notify_one();
        }
    }

    /// Asks for a delivery round now (after local writes of several users). Where writes are followed
    /// on change streams this is not needed: the write is seen there, with its stream.
    pub fn wake(&self) {
        if !self.inner.followed.load(Ordering::Relaxed) {
            self.inner.wake.notify_one();
        }
    }

    fn collection(&self, i: usize) -> Collection<Document> {
        self.inner
            .db
            .collection::<Document>(&self.inner.collections[i])
    }

    /// Indexes the dispatcher's queries need on a producer collection: per consumer, the
    /// users' pending documents by their oldest pending event (only documents with one
    /// are in it, so delivered history costs nothing); and documents written before
    /// `outboxNext` existed get it.
    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        for (i, name) in self.inner.collections.iter().enumerate() {
            let coll = self.collection(i);
            coll.create_index(
                IndexModel::builder()
                    .keys(doc! { "outboxPending.c": 1, "userId": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("outbox_pending".to_string())
                            .build(),
                    )
                    .build(),
            )
            .await?;
            for consumer in &self.inner.consumers {
                let field = next_field(&consumer.name);
                coll.create_index(
                    IndexModel::builder()
                        .keys(doc! { "userId": 1, &field: 1 })
                        .options(
                            IndexOptions::builder()
                                .name(format!("outbox_next_{}", consumer.name))
                                .partial_filter_expression(doc! { &field: { "$exists": true } })
                                .build(),
                        )
                        .build(),
                )
                .await?;
                // Which users have anything pending: a sparse index holds only the
                // documents with the field, so finding them reads those alone (a
                // server that serves `$exists` only from a sparse single-field index,
                // as SecantusDB does, would otherwise scan the whole collection).
                coll.create_index(
                    IndexModel::builder()
                        .keys(doc! { &field: 1 })
                        .options(
                            IndexOptions::builder()
                                .name(format!("outbox_waiting_{}", consumer.name))
                                .sparse(true)
                                .build(),
                        )
                        .build(),
                )
                .await?;
                self.backfill(i, &consumer.name)
                    .await
                    .map_err(|e| AppError::internal(e.context(format!("outbox of {name}"))))?;
            }
        }
        Ok(())
    }

    /// Gives `outboxNext` to documents with events pending for `consumer` that lack it.
    async fn backfill(&self, coll: usize, consumer: &str) -> anyhow::Result<()> {
        let mut cursor = self
            .collection(coll)
            .find(doc! { "outboxPending.c": consumer, next_field(consumer): { "$exists": false } })
            .projection(projection())
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let loaded = Loaded::read(coll, d)?;
            self.acknowledge(loaded, consumer, &HashSet::new()).await?;
        }
        Ok(())
    }

    /// Runs delivery until the task is aborted: every (consumer, user) stream with
    /// pending events gets one batch at a time, at most `streams` at once, in turn (a
    /// stream with more goes to the back of the line); new streams are looked for on a
    /// wake-up (a local write, or another instance's seen on a change stream), when the
    /// line has room again after being full, and every poll interval.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run().await })
    }

    async fn run(&self) {
        // Where the server has change streams, every instance follows the producer
        // collections: a write by any instance puts its stream in line at once.
        let Some(mut hints) = self.inner.hints_rx.lock().ok().and_then(|mut h| h.take()) else {
            tracing::error!("this dispatcher runs already; not started again");
            return;
        };
        let mut followers: JoinSet<()> = JoinSet::new();
        if !self.inner.collections.is_empty()
            && !self.inner.consumers.is_empty()
            && crate::changes::replicated(&self.inner.db).await
        {
            self.inner.followed.store(true, Ordering::Relaxed);
            for i in 0..self.inner.collections.len() {
                let this = self.clone();
                followers.spawn(async move { this.follow(i).await });
            }
        }
        // A fair (first come, first served) semaphore: the line of waiting streams.
        let permits = Arc::new(Semaphore::new(self.inner.settings.streams));
        let mut active: HashSet<Stream> = HashSet::new();
        // Streams woken while a task of theirs ran (its batch may have been read before
        // the write): put in line again when it ends, whatever it found.
        let mut again: HashSet<Stream> = HashSet::new();
        let mut running: HashMap<tokio::task::Id, Stream> = HashMap::new();
        let mut tasks: JoinSet<anyhow::Result<bool>> = JoinSet::new();
        let mut look = true;
        let mut next_look = tokio::time::Instant::now();
        // One task per stream in the line, and at most this many: however many users
        // have events pending, memory stays bounded.
        let waiting_cap = self.inner.settings.streams * STREAMS_WAITING_PER_PERMIT;
        let mut capped = false;
        let mut idle = tokio::time::interval(self.inner.settings.poll);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut linger = tokio::time::interval(LINGER);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if look && tokio::time::Instant::now() >= next_look {
                look = false;
                let started = tokio::time::Instant::now();
                match self.streams().await {
                    Ok(streams) => {
                        for stream in streams {
                            if active.len() >= waiting_cap {
                                // The rest are found again when a place frees up.
                                capped = true;
                                break;
                            }
                            self.enqueue(
                                stream,
                                Job::Deliver,
                                &permits,
                                &mut active,
                                &mut running,
                                &mut tasks,
                                &mut again,
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot look for pending events")
                    }
                }
                next_look = tokio::time::Instant::now() + started.elapsed() * LOOK_SPACING;
            }
            tokio::select! {
                Some(done) = tasks.join_next_with_id() => {
                    let (id, result) = match done {
                        Ok((id, r)) => (id, r),
                        Err(e) => (e.id(), Err(anyhow::anyhow!("delivery task failed: {e}"))),
                    };
                    let stream = running.remove(&id);
                    let mut woken = false;
                    if let Some(s) = &stream {
                        active.remove(s);
                        woken = again.remove(s);
                    }
                    if capped {
                        capped = false;
                        look = true;
                    }
                    match result {
                        // A stream with more goes straight to the back of the line: no
                        // query for it (looking for every stream again after each batch
                        // would read every pending document each time).
                        Ok(more) if more || woken => {
                            if let Some(s) = stream {
                                self.enqueue(s, Job::Deliver, &permits, &mut active, &mut running, &mut tasks, &mut again);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if woken && let Some(s) = stream.clone() {
                                self.enqueue(s, Job::Deliver, &permits, &mut active, &mut running, &mut tasks, &mut again);
                            }
                            let (consumer, user) = stream.unwrap_or_default();
                            tracing::warn!(consumer = %self.inner.consumers.get(consumer).map(|c| c.name.as_str()).unwrap_or(""),
                                user = %user, error = %format!("{e:#}"), "event delivery failed");
                        }
                    }
                }
                Some(stream) = hints.recv() => {
                    if active.len() >= waiting_cap {
                        capped = true;
                    } else {
                        self.enqueue(stream, Job::Deliver, &permits, &mut active, &mut running, &mut tasks, &mut again);
                    }
                }
                _ = self.inner.wake.notified() => look = true,
                _ = idle.tick() => look = true,
                _ = linger.tick() => {
                    for stream in self.lingered(&active) {
                        self.enqueue(stream, Job::GiveBack, &permits, &mut active, &mut running, &mut tasks, &mut again);
                    }
                }
                _ = tokio::time::sleep_until(next_look), if look => {}
            }
        }
    }

    /// Follows the writes of producer collection `coll` on a change stream (from this
    /// instance's stored position) and hands each written document's pending streams to
    /// the delivery loop; the dispatcher's own acknowledgements (updates) are not
    /// followed. When the stream cannot continue from where it was, a look finds what
    /// it missed.
    async fn follow(&self, coll: usize) {
        let name = &self.inner.collections[coll];
        let position = crate::changes::Position::new(
            &self.inner.db,
            &format!("outbox.{name}"),
            &self.inner.instance,
        );
        let pipeline = vec![
            doc! { "$match": { "operationType": { "$in": ["insert", "replace"] } } },
            doc! { "$project": { "operationType": 1, "fullDocument.userId": 1, "fullDocument.outboxNext": 1 } },
        ];
        crate::changes::follow(
            self.collection(coll),
            pipeline,
            Some(position),
            self.inner.settings.poll,
            |seen| {
                match seen {
                    crate::changes::Seen::Restarted => self.inner.wake.notify_one(),
                    crate::changes::Seen::Change(event) => {
                        let Some(d) = event.full_document else {
                            return true;
                        };
                        let (Ok(user), Ok(next)) =
                            (d.get_str("userId"), d.get_document("outboxNext"))
                        else {
                            return true;
                        };
                        for (ci, consumer) in self.inner.consumers.iter().enumerate() {
                            if next.contains_key(&consumer.name) {
                                self.hint((ci, user.to_string()));
                            }
                        }
                    }
                }
                true
            },
        )
        .await
    }

    /// Puts `stream` in the line for a delivery permit (one task), unless a task of its
    /// own is there already; then that one is followed by another (`again`).
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        stream: Stream,
        job: Job,
        permits: &Arc<Semaphore>,
        active: &mut HashSet<Stream>,
        running: &mut HashMap<tokio::task::Id, Stream>,
        tasks: &mut JoinSet<anyhow::Result<bool>>,
        again: &mut HashSet<Stream>,
    ) {
        if !active.insert(stream.clone()) {
            if matches!(job, Job::Deliver) {
                again.insert(stream);
            }
            return;
        }
        let this = self.clone();
        let permits = permits.clone();
        let (consumer, user) = stream.clone();
        let handle = tasks.spawn(async move {
            match job {
                Job::Deliver => {
                    let _permit = permits.acquire_owned().await?;
                    this.deliver_batch(consumer, &user).await
                }
                Job::GiveBack => {
                    this.give_back(&(consumer, user)).await?;
                    Ok(false)
                }
            }
        });
        running.insert(handle.id(), stream);
    }

    /// The kept leases that have lingered with no task of their stream in line.
    fn lingered(&self, active: &HashSet<Stream>) -> Vec<Stream> {
        let Ok(kept) = self.inner.kept.lock() else {
            return Vec::new();
        };
        kept.iter()
            .filter(|(s, k)| k.since.elapsed() >= LINGER && !active.contains(*s))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The lease of `stream` kept by this instance, forgotten (it is about to be used or
    /// given back).
    fn take_kept(&self, stream: &Stream) -> Option<Kept> {
        self.inner
            .kept
            .lock()
            .ok()
            .and_then(|mut k| k.remove(stream))
    }

    fn lease_key(&self, (consumer, user): &Stream) -> String {
        format!("{}|{}", self.inner.consumers[*consumer].name, user)
    }

    /// Gives back a kept lease that lingered: free for any instance, and its failure
    /// count reset (its last delivery succeeded).
    async fn give_back(&self, stream: &Stream) -> Result<(), AppError> {
        if self.take_kept(stream).is_some() {
            self.release(&self.lease_key(stream), false, true).await?;
        }
        Ok(())
    }

    /// Every (consumer, user) with pending events (from the partial indexes).
    async fn streams(&self) -> anyhow::Result<Vec<Stream>> {
        let mut out: Vec<Stream> = Vec::new();
        for (ci, consumer) in self.inner.consumers.iter().enumerate() {
            let mut users: HashSet<String> = HashSet::new();
            for i in 0..self.inner.collections.len() {
                for u in self
                    .collection(i)
                    .distinct(
                        "userId",
                        doc! { next_field(&consumer.name): { "$exists": true } },
                    )
                    .await?
                {
                    if let Bson::String(s) = u {
                        users.insert(s);
                    }
                }
            }
            out.extend(users.into_iter().map(|u| (ci, u)));
        }
        Ok(out)
    }

    fn leases(&self) -> Collection<LeaseDoc> {
        self.inner.db.collection("outbox_leases")
    }

    /// Claims `stream` (whose lease is `key`): a lease this instance kept with at least
    /// half its time left is used as it is (no write), one with less is extended;
    /// otherwise a free or expired lease whose retry time is reached is taken. One write
    /// at most; how many attempts failed before is read only when another fails.
    /// Returns the lease: its end, and whether it was kept (the stream's last delivery
    /// succeeded, so no failure is counted in it); `None` when another instance holds it
    /// (or the stream must wait for its retry).
    async fn claim(&self, stream: &Stream, key: &str) -> Result<Option<Claimed>, AppError> {
        let now = now_ms();
        let lease = millis(self.inner.settings.lease);
        let until = now + lease;
        if let Some(kept) = self.take_kept(stream) {
            if kept.until - now > lease / 2 {
                return Ok(Some(Claimed {
                    until: kept.until,
                    kept: true,
                }));
            }
            let extended = self
                .leases()
                .update_one(
                    doc! { "_id": key, "owner": &self.inner.owner, "leaseUntil": { "$gt": now } },
                    doc! { "$set": { "leaseUntil": until } },
                )
                .await?;
            if extended.matched_count == 1 {
                return Ok(Some(Claimed { until, kept: true }));
            }
        }
        let r = self
            .leases()
            .update_one(
                // A lease is free once it has expired (a release sets it to 0). The
                // filter is plain fields, so it is served by `_id` on every server.
                doc! { "_id": key, "retryAt": { "$lte": now }, "leaseUntil": { "$lt": now } },
                doc! {
                    "$set": { "owner": &self.inner.owner, "leaseUntil": until },
                    "$setOnInsert": { "retryAt": 0_i64, "attempts": 0_i64 },
                },
            )
            .upsert(true)
            .await;
        match r {
            Ok(r) => Ok((r.matched_count == 1 || r.upserted_id.is_some())
                .then_some(Claimed { until, kept: false })),
            // Someone holds the lease (or must wait): the upsert collided with `_id`.
            Err(e) if is_duplicate_key(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps the lease of a stream just delivered (ending `until`) for its next batch.
    fn keep(&self, stream: Stream, until: i64) {
        if let Ok(mut kept) = self.inner.kept.lock() {
            kept.insert(
                stream,
                Kept {
                    until,
                    since: Instant::now(),
                },
            );
        }
    }

    /// Gives the stream's lease back: delivered (`retry` false), or failed, with the
    /// next attempt after a backoff that doubles with each failure in a row (`kept`: the
    /// lease was kept after a success, so this failure is the first).
    async fn release(&self, key: &str, retry: bool, kept: bool) -> Result<(), AppError> {
        let set = match retry {
            false => doc! { "leaseUntil": 0_i64, "attempts": 0_i64, "retryAt": 0_i64 },
            true => {
                let attempts = match kept {
                    true => 0,
                    false => self
                        .leases()
                        .find_one(doc! { "_id": key })
                        .await?
                        .map(|l| l.attempts)
                        .unwrap_or(0),
                };
                let factor = 1_u32
                    .checked_shl(attempts.clamp(0, 20) as u32)
                    .unwrap_or(u32::MAX);
                let delay = self
                    .inner
                    .settings
                    .retry_base
                    .saturating_mul(factor)
                    .min(self.inner.settings.retry_max);
                doc! { "leaseUntil": 0_i64, "attempts": attempts + 1, "retryAt": now_ms() + millis(delay) }
            }
        };
        self.leases()
            .update_one(
                doc! { "_id": key, "owner": &self.inner.owner },
                doc! { "$set": set },
            )
            .await?;
        Ok(())
    }

    /// The oldest pending events of `user` for `consumer`, at most one batch, oldest
    /// first, with the documents they are in; and whether more are pending.
    ///
    /// Per collection it reads at most `batch` documents in `outboxNext` order. A
    /// document not read has no pending event older than the last one read's
    /// `outboxNext`, so only events up to that bound are sure to come before every event
    /// not read; later ones wait for the next batch.
    async fn oldest(
        &self,
        consumer: &str,
        user: &str,
    ) -> anyhow::Result<(Vec<(Event, usize)>, Vec<Loaded>, bool)> {
        let limit = self.inner.settings.batch;
        let field = next_field(consumer);
        let mut docs: Vec<Loaded> = Vec::new();
        let mut bound: Option<String> = None;
        let mut more = false;
        for i in 0..self.inner.collections.len() {
            let read: Vec<Document> = self
                .collection(i)
                .find(doc! { "userId": user, &field: { "$exists": true } })
                .sort(doc! { &field: 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .projection(projection())
                .await?
                .try_collect()
                .await?;
            let full = read.len() >= limit;
            let first = docs.len();
            for d in read {
                docs.push(Loaded::read(i, d)?);
            }
            if full {
                more = true;
                if let Some(last) = docs[first..].last().and_then(|d| d.key(consumer))
                    && bound.as_deref().is_none_or(|b| last < b)
                {
                    bound = Some(last.to_string());
                }
            }
        }
        let mut events: Vec<(Event, usize)> = Vec::new();
        for (di, d) in docs.iter().enumerate() {
            for p in d.outbox.outbox_pending.iter().filter(|p| p.c == consumer) {
                if bound.as_deref().is_some_and(|b| p.e.as_str() > b) {
                    continue;
                }
                if let Some(ev) = d.outbox.outbox.iter().find(|e| e.id.as_str() == p.e) {
                    events.push((ev.clone(), di));
                }
            }
        }
        events.sort_by(|a, b| a.0.id.as_str().cmp(b.0.id.as_str()));
        // At most `batch` events and `MAX_BATCH_BYTES` of them (at least one).
        let mut bytes = 0;
        let fit = events
            .iter()
            .take(limit)
            .take_while(|(e, _)| {
                bytes += serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0);
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        if events.len() > fit {
            events.truncate(fit);
            more = true;
        }
        Ok((events, docs, more))
    }

    /// Records that `consumer` acknowledged the events `ids` of a document: their
    /// entries go, its `outboxNext` moves to its next pending event (entries without
    /// their event go too), and the revision moves on. Refused when the document changed
    /// since it was read (a producer added an event): read again and recomputed.
    async fn acknowledge(
        &self,
        mut d: Loaded,
        consumer: &str,
        ids: &HashSet<&str>,
    ) -> anyhow::Result<()> {
        let coll = self.collection(d.coll);
        for _ in 0..ACK_TRIES {
            // The whole array is written (under the revision check) rather than pulled
            // from: one form every server applies the same together with `outboxNext`.
            let events: HashSet<&str> = d.outbox.outbox.iter().map(|e| e.id.as_str()).collect();
            let mut outbox = d.outbox.clone();
            outbox.outbox_pending.retain(|p| {
                p.c != consumer || (!ids.contains(p.e.as_str()) && events.contains(p.e.as_str()))
            });
            outbox.refresh_next();
            let update = doc! {
                "$set": {
                    "outboxPending": bson::to_bson(&outbox.outbox_pending)?,
                    "outboxNext": bson::to_bson(&outbox.outbox_next)?,
                },
                "$inc": { "outboxRev": 1_i64 },
            };
            let filter = match d.rev {
                Some(rev) => doc! { "_id": &d.id, "outboxRev": rev },
                None => doc! { "_id": &d.id, "outboxRev": { "$exists": false } },
            };
            if coll.update_one(filter, update).await?.matched_count == 1 {
                return Ok(());
            }
            match coll
                .find_one(doc! { "_id": &d.id })
                .projection(projection())
                .await?
            {
                Some(fresh) => d = Loaded::read(d.coll, fresh)?,
                None => return Ok(()),
            }
        }
        anyhow::bail!("the document kept changing; its acknowledgement waits for the next batch")
    }

    /// Delivers the next batch of one stream; true when it has more pending.
    async fn deliver_batch(&self, ci: usize, user: &str) -> anyhow::Result<bool> {
        let consumer = &self.inner.consumers[ci];
        let stream: Stream = (ci, user.to_string());
        let key = self.lease_key(&stream);
        let Some(lease) = self.claim(&stream, &key).await? else {
            return Ok(false);
        };
        let (events, docs, more) = match self.oldest(&consumer.name, user).await {
            Ok(found) => found,
            Err(e) => {
                self.release(&key, true, lease.kept).await?;
                return Err(e);
            }
        };
        // Documents whose `outboxNext` is stale or whose entries lost their event are
        // put right (nothing of theirs is in the batch, or it would be delivered).
        let (mut to_ack, mut to_fix): (Vec<Loaded>, Vec<Loaded>) = (Vec::new(), Vec::new());
        let in_batch: HashSet<usize> = events.iter().map(|(_, di)| *di).collect();
        for (di, d) in docs.into_iter().enumerate() {
            if in_batch.contains(&di) {
                to_ack.push(d);
            } else if d.key(&consumer.name)
                != next_pending(&d.outbox.outbox_pending, &consumer.name)
                || d.outbox.outbox_pending.iter().any(|p| {
                    p.c == consumer.name && !d.outbox.outbox.iter().any(|e| e.id.as_str() == p.e)
                })
            {
                to_fix.push(d);
            }
        }
        for d in to_fix {
            self.acknowledge(d, &consumer.name, &HashSet::new()).await?;
        }
        if events.is_empty() {
            self.keep(stream, lease.until);
            return Ok(false);
        }
        let batch: Vec<&Event> = events.iter().map(|(e, _)| e).collect();
        let sent = self.send(ci, &batch).await;
        // What the consumer took is acknowledged, document by document.
        let taken: HashSet<&str> = batch[..sent.acked].iter().map(|e| e.id.as_str()).collect();
        for d in to_ack {
            if d.outbox
                .outbox_pending
                .iter()
                .any(|p| p.c == consumer.name && taken.contains(p.e.as_str()))
            {
                self.acknowledge(d, &consumer.name, &taken).await?;
            }
        }
        if sent.failed {
            self.release(&key, true, lease.kept).await?;
            return Ok(false);
        }
        self.keep(stream, lease.until);
        Ok(more || sent.acked < batch.len())
    }

    /// Posts `events` (one user's, oldest first) to the consumer: as one batch, or one
    /// by one to a consumer without the batch endpoint.
    async fn send(&self, ci: usize, events: &[&Event]) -> Sent {
        let consumer = &self.inner.consumers[ci];
        if !self.inner.single[ci].load(Ordering::Relaxed) {
            match self.post(consumer, EVENTS_BATCH_PATH, &events).await {
                Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                    tracing::info!(consumer = %consumer.name,
                        "consumer has no batch endpoint; sending one event per request");
                    self.inner.single[ci].store(true, Ordering::Relaxed);
                }
                Ok(resp) if resp.status().is_success() => {
                    let (acked, answered) = match resp.json::<BatchAnswer>().await {
                        Ok(answer) => (
                            answer
                                .results
                                .iter()
                                .zip(events)
                                .take_while(|(r, e)| {
                                    r.id.as_deref() == Some(e.id.as_str())
                                        && matches!(
                                            r.outcome.as_str(),
                                            "APPLIED" | "DUPLICATE" | "PARKED"
                                        )
                                })
                                .count(),
                            answer.results.len(),
                        ),
                        Err(e) => {
                            tracing::warn!(consumer = %consumer.name, error = %e,
                                "unreadable batch answer; will retry");
                            (0, 1)
                        }
                    };
                    // Every answered event taken, but not all sent: the consumer's time
                    // for one request ran out; the rest goes next, without backoff.
                    let failed = acked < answered || acked == 0;
                    if failed {
                        tracing::warn!(consumer = %consumer.name, acked, sent = events.len(),
                            "consumer did not take every event of a batch; will retry the rest");
                    }
                    return Sent { acked, failed };
                }
                other => {
                    Self::refused(consumer, other);
                    return Sent {
                        acked: 0,
                        failed: true,
                    };
                }
            }
        }
        for (i, event) in events.iter().enumerate() {
            match self.post(consumer, EVENTS_PATH, event).await {
                Ok(resp) if resp.status().is_success() => {}
                other => {
                    Self::refused(consumer, other);
                    return Sent {
                        acked: i,
                        failed: true,
                    };
                }
            }
        }
        Sent {
            acked: events.len(),
            failed: false,
        }
    }

    async fn post(
        &self,
        consumer: &Consumer,
        path: &str,
        body: &impl Serialize,
    ) -> reqwest::Result<reqwest::Response> {
        self.inner
            .http
            .post(format!("{}{}", consumer.url, path))
            .header(SERVICE_TOKEN_HEADER, self.inner.token.expose())
            .json(body)
            .send()
            .await
    }

    fn refused(consumer: &Consumer, answer: reqwest::Result<reqwest::Response>) {
        match answer {
            Ok(resp) => tracing::warn!(consumer = %consumer.name,
                status = resp.status().as_u16(), "consumer refused events; will retry"),
            Err(e) => tracing::info!(consumer = %consumer.name, error = %e,
                "consumer unreachable; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_stream_limits_are_bounded() {
        let s = DispatchSettings::from_vars(&[("EVENT_BATCH_MAX", "500"), ("EVENT_STREAMS", "1")])
            .unwrap();
        assert_eq!((s.batch, s.streams), (500, 1));
        let d = DispatchSettings::from_vars(&[("X", "")]).unwrap();
        assert_eq!((d.batch, d.streams), (100, 8));
        for (name, value) in [
            ("EVENT_BATCH_MAX", "0"),
            ("EVENT_BATCH_MAX", "501"),
            ("EVENT_STREAMS", "0"),
            ("EVENT_STREAMS", "65"),
            ("EVENT_STREAMS", "many"),
        ] {
            let e = DispatchSettings::from_vars(&[(name, value)]).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}
