//! An in-memory async-graphql subgraph on a loopback port, for the benchmark commands.

use async_graphql::{EmptyMutation, EmptySubscription, Schema};

/// Serves `query` as a federation subgraph on 127.0.0.1:0; returns its URL and SDL.
pub async fn serve<Q: async_graphql::ObjectType + 'static>(query: Q) -> (String, String) {
    let schema = Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let sdl = schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post_service(async_graphql_axum::GraphQL::new(schema)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind subgraph");
    let url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("subgraph serves");
    });
    (url, sdl)
}
