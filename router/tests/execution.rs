//! Planner/executor behaviour over real subgraphs: "supergraph + operation ->
//! expected plan and response" snapshots, plus explicit assertions.

mod common;

use common::{StackOptions, plan_of, start_stack};
use serde_json::json;

#[tokio::test]
async fn entity_join_across_three_subgraphs() {
    let stack = start_stack(StackOptions::default()).await;
    let q = "{ topProducts(first: 2) { upc name reviews { body author { id name } } } }";
    insta::assert_snapshot!(plan_of(&stack, q));
    let resp = stack.query(q).await;
    assert_eq!(
        resp["data"]["topProducts"][0]["reviews"][0]["author"]["name"],
        "Ada Lovelace"
    );
    assert!(resp.get("errors").is_none(), "{resp}");
    insta::assert_json_snapshot!(resp);
}

#[tokio::test]
async fn requires_sends_required_fields_in_representations() {
    let stack = start_stack(StackOptions::default()).await;
    let q = "{ topProducts { upc shippingEstimate inStock } }";
    insta::assert_snapshot!(plan_of(&stack, q));
    let resp = stack.query(q).await;
    assert_eq!(
        resp["data"]["topProducts"],
        json!([
            {"upc": "1", "shippingEstimate": 50, "inStock": true},
            {"upc": "2", "shippingEstimate": 0, "inStock": false},
            {"upc": "3", "shippingEstimate": 25, "inStock": true},
        ])
    );
}

#[tokio::test]
async fn provides_avoids_a_fetch_to_the_owner() {
    let stack = start_stack(StackOptions::default()).await;
    let q = "{ topProducts(first: 1) { reviews { author { username } } } }";
    let plan = plan_of(&stack, q);
    assert!(!plan.contains("\"users\""), "{plan}");
    insta::assert_snapshot!(plan);
    let before = stack.hits("users");
    let resp = stack.query(q).await;
    assert_eq!(
        resp["data"]["topProducts"][0]["reviews"],
        json!([{"author": {"username": "@ada"}}, {"author": {"username": "@alan"}}])
    );
    assert_eq!(stack.hits("users"), before);
}

#[tokio::test]
async fn unions_and_interfaces_with_fragments_and_typename() {
    let stack = start_stack(StackOptions::default()).await;
    let q = r#"
      query Search {
        search { __typename ... on Product { upc inStock } ... on Category { name } }
        named { ...N ... on Category { size } }
      }
      fragment N on Named { __typename name }
    "#;
    insta::assert_snapshot!(plan_of(&stack, q));
    let resp = stack
        .post(json!({"query": q, "operationName": "Search"}))
        .await
        .1;
    assert_eq!(
        resp["data"],
        json!({
            "search": [
                {"__typename": "Product", "upc": "1", "inStock": true},
                {"__typename": "Category", "name": "Furniture"}
            ],
            "named": [
                {"__typename": "Category", "name": "Outdoor", "size": 0},
                {"__typename": "Product", "name": "Chair"}
            ]
        }),
        "{resp}"
    );
}

#[tokio::test]
async fn skip_and_include_follow_variables() {
    let stack = start_stack(StackOptions::default()).await;
    let q = r#"query($withReviews: Boolean!, $noStock: Boolean!) {
        product(upc: "1") {
          name
          reviews @include(if: $withReviews) { body }
          inStock @skip(if: $noStock)
        }
      }"#;
    insta::assert_snapshot!(plan_of(&stack, q));
    let before = stack.hits("reviews");
    let resp = stack
        .post(json!({"query": q, "variables": {"withReviews": false, "noStock": false}}))
        .await
        .1;
    assert_eq!(
        resp["data"],
        json!({"product": {"name": "Table", "inStock": true}}),
        "{resp}"
    );
    assert_eq!(
        stack.hits("reviews"),
        before,
        "no reviews fetch when excluded"
    );
    let resp = stack
        .post(json!({"query": q, "variables": {"withReviews": true, "noStock": true}}))
        .await
        .1;
    assert_eq!(
        resp["data"],
        json!({"product": {"name": "Table", "reviews": [{"body": "Love it!"}, {"body": "Prefer something else."}]}}),
        "{resp}"
    );
}

#[tokio::test]
async fn aliases_keep_response_keys_and_order() {
    let stack = start_stack(StackOptions::default()).await;
    let q = r#"{ b: product(upc: "2") { title: name n: name } a: product(upc: "1") { upc stock: inStock } }"#;
    let (_, resp) = stack.post(json!({"query": q})).await;
    assert_eq!(
        serde_json::to_string(&resp).expect("json"),
        r#"{"data":{"b":{"title":"Couch","n":"Couch"},"a":{"upc":"1","stock":true}}}"#
    );
}

#[tokio::test]
async fn nullable_field_error_keeps_path_and_sibling_data() {
    let stack = start_stack(StackOptions::default()).await;
    let resp = stack.query("{ me { name secret } }").await;
    assert_eq!(
        resp["data"],
        json!({"me": {"name": "Ada Lovelace", "secret": null}})
    );
    assert_eq!(resp["errors"][0]["path"], json!(["me", "secret"]));
    insta::assert_json_snapshot!(resp);
}

#[tokio::test]
async fn non_null_entity_error_propagates_to_nearest_nullable_parent() {
    let stack = start_stack(StackOptions::default()).await;
    let resp = stack
        .query(r#"{ product(upc: "3") { name warehouse } topProducts(first: 1) { upc } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"product": null, "topProducts": [{"upc": "1"}]}),
        "{resp}"
    );
    assert_eq!(
        resp["errors"][0]["path"],
        json!(["product", "warehouse"]),
        "{resp}"
    );
    insta::assert_json_snapshot!(resp);
}

#[tokio::test]
async fn down_subgraph_gives_partial_data_and_unavailable_error() {
    let stack = start_stack(StackOptions {
        down: vec!["inventory"],
        ..Default::default()
    })
    .await;
    let (status, resp) = stack
        .post(json!({"query": r#"{ product(upc: "1") { name inStock } me { name } }"#}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(resp["data"]["me"], json!({"name": "Ada Lovelace"}));
    assert_eq!(
        resp["data"]["product"],
        json!(null),
        "inStock is non-null, so product is nulled"
    );
    let codes: Vec<&str> = resp["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["extensions"]["code"].as_str())
        .collect();
    assert!(codes.contains(&"SUBGRAPH_UNAVAILABLE"), "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["serviceName"], "inventory");
    insta::assert_json_snapshot!(resp);
}

#[tokio::test]
async fn slow_subgraph_times_out_with_its_name() {
    let mut config = router::Config::default();
    config.subgraphs.insert(
        "reviews".into(),
        router::config::SubgraphConfig {
            url: None,
            timeout_ms: Some(200),
        },
    );
    let stack = start_stack(StackOptions {
        delay_ms: [("reviews", 2_000)].into_iter().collect(),
        config: Some(config),
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    let resp = stack.query(r#"{ me { name reviews { body } } }"#).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(1_500));
    assert_eq!(resp["data"], json!({"me": null}), "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["code"], "SUBGRAPH_TIMEOUT");
    assert_eq!(resp["errors"][0]["extensions"]["serviceName"], "reviews");
}

#[tokio::test]
async fn entity_representations_are_deduplicated() {
    let stack = start_stack(StackOptions::default()).await;
    // Reviews r1 and r4 are both about product 1; users 1 and 2 each write two reviews.
    let q = "{ users { reviews { product { name } author { name } } } }";
    let resp = stack.query(q).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(
        resp["data"]["users"][1]["reviews"][1]["product"]["name"],
        "Table"
    );
    insta::assert_json_snapshot!(resp);
    // Four reviews, three products and two authors: each entity is sent once.
    assert_eq!(stack.subgraphs["products"].representations_sent(), [3]);
    assert_eq!(stack.subgraphs["users"].representations_sent(), [2]);
}

#[tokio::test]
async fn invalid_operations_are_rejected_without_subgraph_calls() {
    let stack = start_stack(StackOptions::default()).await;
    let before: usize = ["users", "products", "inventory", "reviews"]
        .iter()
        .map(|n| stack.hits(n))
        .sum();
    let (status, resp) = stack.post(json!({"query": "{ me { nope } }"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        resp["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert!(resp.get("data").is_none());
    let (status, resp) = common::post_json(
        &stack.router_url,
        json!({"query": "{ me { "}),
        &[("accept", "application/graphql-response+json")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        resp["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    let (_, resp) = stack
        .post(json!({"query": "query($n: Int!) { topProducts(first: $n) { upc } }", "variables": {"n": "x"}}))
        .await;
    assert_eq!(resp["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    let after: usize = ["users", "products", "inventory", "reviews"]
        .iter()
        .map(|n| stack.hits(n))
        .sum();
    assert_eq!(before, after);
}

#[tokio::test]
async fn introspection_is_answered_by_the_router() {
    let stack = start_stack(StackOptions::default()).await;
    let before = stack.hits("users");
    let resp = stack
        .query(r#"{ __schema { queryType { name } types { name kind } } __type(name: "Product") { fields { name type { kind ofType { name } } } } }"#)
        .await;
    assert_eq!(resp["data"]["__schema"]["queryType"]["name"], "Query");
    let types = resp["data"]["__schema"]["types"].as_array().expect("types");
    assert!(types.iter().any(|t| t["name"] == "Review"));
    assert!(
        !types.iter().any(|t| t["name"] == "join__Graph"),
        "federation internals are hidden"
    );
    let fields = resp["data"]["__type"]["fields"].as_array().expect("fields");
    assert!(fields.iter().any(|f| f["name"] == "shippingEstimate"));
    assert_eq!(stack.hits("users"), before);
}

#[tokio::test]
async fn get_requests_run_queries_but_not_mutations() {
    let stack = start_stack(StackOptions::default()).await;
    let url = format!(
        "{}?query={}",
        stack.router_url, "%7B%20me%20%7B%20id%20%7D%20%7D"
    );
    let resp: serde_json::Value = reqwest::get(&url)
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(resp["data"]["me"]["id"], "1");
    let resp = reqwest::Client::new()
        .get(&stack.router_url)
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    assert!(resp.text().await.expect("html").contains("graphiql"));
}

#[tokio::test]
async fn identical_in_flight_subgraph_queries_are_sent_once() {
    let stack = start_stack(StackOptions {
        delay_ms: [("products", 300)].into_iter().collect(),
        ..Default::default()
    })
    .await;
    let q = "{ topProducts(first: 2) { upc name } }";
    let before = stack.hits("products");
    let responses = futures::future::join_all((0..8).map(|_| stack.query(q))).await;
    for r in &responses {
        assert_eq!(r["data"]["topProducts"][1]["name"], "Couch", "{r}");
    }
    let shared = stack.hits("products") - before;
    assert!(
        shared < 8,
        "8 identical concurrent queries made {shared} subgraph calls"
    );
    // Finished requests are not cached: the next one reaches the subgraph again.
    stack.query(q).await;
    assert_eq!(stack.hits("products"), before + shared + 1);
}
