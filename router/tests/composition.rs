//! The committed supergraph must equal the composition of the committed subgraph SDLs.

mod common;

use std::path::PathBuf;

use router::compose::{ComposeError, SubgraphSdl, compose_supergraph, read_schema_dir};
use router::supergraph::Supergraph;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema")
}

#[test]
fn committed_supergraph_matches_composed_subgraphs() {
    let dir = schema_dir();
    let subgraphs = read_schema_dir(&dir).expect("schema dir readable");
    let composed = compose_supergraph(&subgraphs).expect("committed subgraphs compose");
    let committed =
        std::fs::read_to_string(dir.join("supergraph.graphql")).expect("supergraph committed");
    assert!(
        committed == composed,
        "schema/supergraph.graphql is out of date: run `cargo run -p router -- compose`"
    );
}

#[test]
fn composition_is_deterministic_whatever_the_input_order() {
    let mut subgraphs = read_schema_dir(&schema_dir()).expect("schema dir readable");
    let first = compose_supergraph(&subgraphs).expect("composes");
    subgraphs.reverse();
    let second = compose_supergraph(&subgraphs).expect("composes");
    assert_eq!(first, second);
}

#[test]
fn committed_supergraph_plans_a_cross_subgraph_query() {
    let sdl = std::fs::read_to_string(schema_dir().join("supergraph.graphql")).expect("supergraph");
    let sg = Supergraph::parse(&sdl).expect("loads");
    let doc = graphql_tools_parse(
        "{ me { username expenses(first: 5) { edges { node { amount category } } } } }",
    );
    let normalized = hive_router_query_planner::ast::normalization::normalize_operation(
        &sg.planner.supergraph,
        &doc,
        None,
    )
    .expect("normalises");
    let plan = sg
        .plan(&normalized.operation, std::time::Duration::from_secs(5))
        .expect("plans");
    let printed = format!("{plan}");
    assert!(printed.contains("service: \"users\""), "{printed}");
    assert!(printed.contains("service: \"expenses\""), "{printed}");
}

fn graphql_tools_parse(q: &str) -> graphql_tools::static_graphql::query::Document {
    graphql_tools::parser::parse_query::<String>(q)
        .expect("parses")
        .into_static()
}

#[test]
fn composition_errors_name_the_subgraph_and_the_field() {
    let a = SubgraphSdl {
        name: "alpha".into(),
        url: "http://alpha/graphql".into(),
        sdl: r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Query { thing: Thing }
type Thing @key(fields: "id") @shareable { id: ID! size: Int }"#
            .into(),
    };
    let b = SubgraphSdl {
        name: "beta".into(),
        url: "http://beta/graphql".into(),
        sdl: r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])
type Thing @key(fields: "id") @shareable { id: ID! size: String }"#
            .into(),
    };
    let err = compose_supergraph(&[a.clone(), b]).expect_err("conflicting field types");
    let msg = err.to_string();
    assert!(matches!(err, ComposeError::Composition(_)), "{msg}");
    assert!(
        msg.contains("Thing.size") || (msg.contains("Thing") && msg.contains("size")),
        "{msg}"
    );

    let broken = SubgraphSdl {
        name: "gamma".into(),
        url: "http://g/graphql".into(),
        sdl: "type Query {".into(),
    };
    let err = compose_supergraph(&[a, broken]).expect_err("parse error");
    assert!(err.to_string().contains("gamma"), "{err}");
}

#[tokio::test]
async fn live_composition_fetches_sdl_from_running_subgraphs() {
    let users = common::serve_schema("users", common::subgraphs::users::schema(), 0).await;
    let reviews = common::serve_schema("reviews", common::subgraphs::reviews::schema(), 0).await;
    let mut live = Vec::new();
    for s in [&users, &reviews] {
        let fetched = router::compose::fetch_live_sdl(&s.name, &s.url)
            .await
            .expect("_service { sdl }");
        assert!(fetched.sdl.contains("@key"), "{}", fetched.sdl);
        live.push(fetched);
    }
    let composed = compose_supergraph(&live).expect("live SDLs compose");
    assert!(
        composed.contains("reviews: [Review!]! @join__field(graph: REVIEWS)"),
        "{composed}"
    );
    let err = router::compose::fetch_live_sdl("nobody", "http://127.0.0.1:9/graphql")
        .await
        .expect_err("nothing listens on port 9");
    assert!(err.to_string().contains("nobody"));
}
