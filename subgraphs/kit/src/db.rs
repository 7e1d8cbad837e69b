//! The MongoDB connection: one client per process, pinged at start-up.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

use crate::error::{AppError, is_duplicate_key};

/// Start-up failure to reach the database; the message never carries the password.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach MongoDB at {uri}: {reason}")]
pub struct ConnectError {
    pub uri: String,
    pub reason: String,
}

/// `mongodb://user:pass@host/...` → `mongodb://user:***@host/...`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((creds, host)) => {
            let user = creds.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => uri.to_string(),
    }
}

/// Connects, pings, and returns the service's database.
pub async fn connect(uri: &str, database: &str) -> Result<Database, ConnectError> {
    connect_with(uri, database, |_| {}).await
}

/// [`connect`], with the client's options changed by `tweak` before the client is made
/// (tests use it to watch the commands sent).
pub async fn connect_with(
    uri: &str,
    database: &str,
    tweak: impl FnOnce(&mut ClientOptions),
) -> Result<Database, ConnectError> {
    let fail = |reason: String| ConnectError {
        uri: redact_uri(uri),
        reason,
    };
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if options.server_selection_timeout.is_none() {
        options.server_selection_timeout = Some(Duration::from_secs(5));
    }
    if options.connect_timeout.is_none() {
        options.connect_timeout = Some(Duration::from_secs(5));
    }
    options.app_name.get_or_insert_with(|| database.to_string());
    tweak(&mut options);
    let client = Client::with_options(options).map_err(|e| fail(e.to_string()))?;
    let db = client.database(database);
    ping(&db).await.map_err(|e| fail(e.to_string()))?;
    Ok(db)
}

/// A database handle that never connects: for building a schema (e.g. to export its
/// SDL) where no query runs. The driver connects lazily, so nothing is sent.
pub fn unconnected(name: &str) -> Database {
    let options = ClientOptions::builder()
        .hosts(vec![mongodb::options::ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port: Some(9),
        }])
        .build();
    Client::with_options(options)
        .expect("options without a URI to parse are always valid")
        .database(name)
}

/// An index named `name` on `keys`.
pub fn index(keys: Document, name: &str, unique: bool) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_string())
                .unique(unique)
                .build(),
        )
        .build()
}

/// How many times a write is tried when it keeps losing optimistic-concurrency races.
pub const MAX_WRITE_ATTEMPTS: usize = 8;

/// Runs `attempt` — read, change, write only if nobody wrote in between — until it wins:
/// `Ok(Some(v))` was written, `Ok(None)` lost the race and reads again. After
/// [`MAX_WRITE_ATTEMPTS`] lost races the answer is `CONFLICT`, naming `what`.
pub async fn optimistic<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, AppError>>,
{
    for _ in 0..MAX_WRITE_ATTEMPTS {
        if let Some(written) = attempt().await? {
            return Ok(written);
        }
    }
    Err(AppError::conflict(
        format!("the {what} is being changed by another request; try again"),
        None,
    ))
}

/// Inserts `doc`; `Ok(false)` when a unique index already holds its key.
pub async fn insert_new<T: serde::Serialize + Send + Sync>(
    collection: &Collection<T>,
    doc: &T,
) -> Result<bool, AppError> {
    match collection.insert_one(doc).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn ping(db: &Database) -> mongodb::error::Result<()> {
    db.run_command(doc! { "ping": 1 }).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://app:s3cret@db.example:27017/x?tls=true"),
            "mongodb://app:***@db.example:27017/x?tls=true"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_without_the_password() {
        // Port 9 (discard) on loopback: nothing listens there.
        let err = connect(
            "mongodb://me:topsecret@127.0.0.1:9/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
            "x",
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach MongoDB at mongodb://me:***@127.0.0.1:9"),
            "{text}"
        );
        assert!(!text.contains("topsecret"));
    }
}
