//! Hostile documents sent straight to each subgraph (no router in front): each gets a
//! coded refusal and the service keeps answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::stack::ProductStack;

async fn post(url: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("the subgraph is still there")
        .json()
        .await
        .expect("a JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deep_nesting_and_alias_floods_are_refused_and_every_subgraph_stays_up() {
    let stack = ProductStack::start().await;
    let deep_list = format!(
        "{{ __type(name: {}\"x\"{}) {{ name }} }}",
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let deep_object = format!(
        "{{ __type(name: {}\"x\"{}) {{ name }} }}",
        "{a: ".repeat(1500),
        "}".repeat(1500)
    );
    let aliases: String = (0..10_000).map(|i| format!("a{i}: __typename ")).collect();
    let flood = format!("{{ {aliases} }}");
    // 1,000 root fields without one alias: each through its own fragment.
    let spreads: String = (0..1_000).map(|i| format!("...F{i} ")).collect();
    let fragments: String = (0..1_000)
        .map(|i| format!("fragment F{i} on Query {{ __type(name: \"T{i}\") {{ name }} }} "))
        .collect();
    let root_fields = format!("{{ {spreads} }} {fragments}");
    for name in ["users", "expenses", "budgets", "analytics", "notifications"] {
        let url = stack.subgraph_url(name).to_owned();
        for (what, query) in [
            ("a list nested 2,000 deep", &deep_list),
            ("an object nested 1,500 deep", &deep_object),
            ("10,000 aliases", &flood),
            ("1,000 root fields through fragments", &root_fields),
        ] {
            let answer = post(&url, query).await;
            assert_eq!(
                answer["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
                "{what} at {name}: {answer}"
            );
        }
        let alive = post(&url, "{ __typename }").await;
        assert_eq!(alive["data"]["__typename"], "Query", "{name}: {alive}");
    }
}
