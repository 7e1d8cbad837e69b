//! The users subgraph on a real server with a pinned clock, for the tests that move time.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use kit::clock::Clock;
use kit::testing::{Gql, TestDb, TestServer, test_config};

pub struct App {
    _server: TestServer,
    pub gql: Gql,
    _db: TestDb,
    pub clock: Clock,
}

/// Ten seconds into a 30-second step, a day ahead of the real time: a server's TTL
/// monitor (which reads the real clock) must not remove what the pinned clock still
/// holds open.
pub fn start_time() -> DateTime<Utc> {
    let ahead = Utc::now().timestamp() + 24 * 3600;
    Utc.timestamp_opt(ahead - ahead % 30 + 10, 0)
        .single()
        .expect("a valid instant")
}

/// The service over its own test database, its clock pinned at [`start_time`].
pub async fn start() -> App {
    let config = test_config(users::SERVICE);
    let db = TestDb::new(&config).await;
    let clock = Clock::fixed(start_time());
    let app = users::app_at(&config, db.db.clone(), clock.clone())
        .await
        .expect("the users app starts");
    let server = TestServer::start(app).await;
    let gql = Gql::new(server.url("/graphql"));
    App {
        _server: server,
        gql,
        _db: db,
        clock,
    }
}

impl App {
    /// Moves the pinned clock on by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.clock
            .set(self.clock.now() + chrono::Duration::seconds(seconds));
    }
}
