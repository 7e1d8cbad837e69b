#![allow(clippy::unwrap_used, clippy::expect_used)]

use kit::testing::{TestDb, TestServer, assert_sdl_matches_committed, test_config};

#[test]
fn sdl_matches_committed_file() {
    assert_sdl_matches_committed(
        analytics::SERVICE,
        &kit::federation_sdl(&analytics::schema()),
    );
}

#[tokio::test]
async fn health_and_ready_answer_when_the_database_is_up() {
    let config = test_config(analytics::SERVICE);
    let db = TestDb::new(&config).await;
    let server = TestServer::start(analytics::app(&config, db.db.clone()).await.unwrap()).await;
    let http = reqwest::Client::new();
    for path in ["/health", "/ready"] {
        let resp = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    server.stop().await;
}
