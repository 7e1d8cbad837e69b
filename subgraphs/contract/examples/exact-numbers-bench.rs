//! Prints how fast `contract::json::keep_exact_numbers` reads request bodies, beside
//! `serde_json` parsing the same bodies (a benchmark command, not a test):
//! `cargo run -p contract --release --example exact-numbers-bench`.

use std::time::Instant;

fn body(numbers: usize, exact: bool) -> String {
    let amount = if exact {
        "12.35"
    } else {
        "12.34999999999999999999"
    };
    let items: Vec<String> = (0..numbers)
        .map(|i| format!(r#"{{"amount": {amount}, "n": {i}, "description": "item {i}"}}"#))
        .collect();
    format!(
        r#"{{"query": "mutation($items: [X!]!) {{ f(items: $items) }}", "variables": {{"items": [{}]}}}}"#,
        items.join(",")
    )
}

fn rate(bytes: usize, runs: usize, f: impl Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    (bytes * runs) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    for (exact, what) in [(true, "numbers kept"), (false, "numbers rewritten")] {
        let text = body(20_000, exact);
        let bytes = text.len();
        let runs = 20;
        let rewrite = rate(bytes, runs, || {
            std::hint::black_box(contract::json::keep_exact_numbers(text.as_bytes()));
        });
        let parse = rate(bytes, runs, || {
            let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            std::hint::black_box(v);
        });
        let both = rate(bytes, runs, || {
            let t = contract::json::keep_exact_numbers(text.as_bytes());
            let v: serde_json::Value = serde_json::from_slice(&t).expect("valid JSON");
            std::hint::black_box(v);
        });
        println!(
            "{what}: {:.1} MiB body, rewrite {rewrite:.0} MB/s, serde_json parse {parse:.0} MB/s, \
             rewrite + parse {both:.0} MB/s ({:.2}x the parse alone)",
            bytes as f64 / 1048576.0,
            parse / both
        );
    }
}
