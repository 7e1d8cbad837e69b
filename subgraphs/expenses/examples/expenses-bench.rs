//! Benchmark (not a test): seeds 100,000 expenses for one user with bulk inserts, then
//! prints the latency of `expenses(first: 20)` with filters and of `expenseSummary`
//! over a year, through real HTTP and GraphQL, next to the same queries sent straight
//! to the database with the driver (the peer, to show what our layers add).
//!
//! `MONGODB_URI=mongodb://127.0.0.1:27888 cargo run --release -p expenses --example expenses-bench`
//! Options: `BENCH_EXPENSES` (default 100000), `BENCH_RUNS` (default 30).

use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use contract::ids::{ExpenseId, UserId};
use expenses::domain::{
    DayRange, EXPENSE_CATEGORIES as CATEGORIES, Expense, ListFilter, PaymentMethod, TxType,
};
use futures::TryStreamExt;
use kit::events::DispatchSettings;
use kit::money::{Currency, Money};
use kit::testing::{FakeUsers, TestDb, TestServer, test_config, test_user};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed_expense(user: &UserId, i: usize, start: NaiveDate) -> Expense {
    // Deterministic spread: two years of dates, ten categories, 1 in 10 an income.
    let h = (i as u64).wrapping_mul(2_654_435_761) % 1_000_003;
    let date = start + Days::new(h % 731);
    let id = ExpenseId::new();
    let income = i.is_multiple_of(10);
    let category = if income {
        "salary"
    } else {
        CATEGORIES[(h % 10) as usize]
    };
    let usd = Currency::parse("USD").expect("a currency");
    let now = expenses::domain::instant(chrono::Utc::now());
    Expense {
        idem_key: format!("id:{id}"),
        id,
        user_id: user.clone(),
        kind: if income {
            TxType::Income
        } else {
            TxType::Expense
        },
        amount: Money::from_minor(100 + (h % 20_000) as i64, usd).expect("an amount"),
        category: category.to_string(),
        description: format!("expense {i} at shop {}", h % 97),
        date,
        payment_method: Some(PaymentMethod::ALL[(h % 5) as usize]),
        tags: if h.is_multiple_of(3) {
            vec!["work".to_string()]
        } else {
            vec![]
        },
        recurrence: None,
        recurring_from: None,
        household: None,
        idem_hash: None,
        version: 1,
        deleted: false,
        created_at: now,
        updated_at: now,
    }
}

struct Stats {
    p50: Duration,
    p95: Duration,
    mean: Duration,
}

async fn measure<F, Fut>(runs: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..2 {
        f().await;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / runs.max(1) as u32;
    Stats {
        p50: times[runs / 2],
        p95: times[(runs * 95 / 100).min(runs - 1)],
        mean,
    }
}

fn ms(d: Duration) -> String {
    format!("{:8.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env_num("BENCH_EXPENSES", 100_000);
    let runs = env_num("BENCH_RUNS", 30).max(1);
    let config = test_config(expenses::SERVICE);
    let db = TestDb::new(&config).await;
    let (_users, users_server) = FakeUsers::start().await;
    let mut settings = expenses::Settings::from_vars(&[("EVENT_CONSUMERS", "")], config)?;
    settings.users.url = users_server.url("/graphql");
    settings.consumers = Vec::new();
    settings.dispatch = DispatchSettings::fast();
    let service =
        kit::bootstrap::start::<expenses::service::Expenses>(&settings, db.db.clone()).await?;
    let server = TestServer::start(service.router.clone()).await;
    let (user, token) = test_user();
    let user_id = UserId::from_trusted(user.as_str());

    println!("seeding {total} expenses for one user (bulk inserts of 5000)...");
    let t = Instant::now();
    let start = NaiveDate::from_ymd_opt(2023, 1, 1).expect("a valid date");
    let mut batch = Vec::with_capacity(5000);
    for i in 0..total {
        batch.push(seed_expense(&user_id, i, start));
        if batch.len() == 5000 || i + 1 == total {
            service.store.insert_many(&batch).await?;
            batch.clear();
        }
    }
    let seeded = t.elapsed();
    println!(
        "seeded in {:.1} s ({:.0} documents/s)\n",
        seeded.as_secs_f64(),
        total as f64 / seeded.as_secs_f64()
    );

    let http = reqwest::Client::new();
    let url = server.url("/graphql");
    let gql = |query: &'static str, variables: Value| {
        let http = http.clone();
        let url = url.clone();
        let token = token.clone();
        async move {
            let body: Value = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            assert!(body.get("errors").is_none(), "{body}");
            body
        }
    };
    let list = "query($f: ExpenseFilter, $after: String) { expenses(first: 20, filter: $f, after: $after) { edges { cursor node { id amount category date description } } pageInfo { endCursor hasNextPage } } }";
    let list_count = "query($f: ExpenseFilter) { expenses(first: 20, filter: $f) { edges { node { id amount } } totalCount } }";
    let summary = "query { expenseSummary(from: \"2024-01-01\", to: \"2024-12-31\") { totalIncome totalExpenses balance byCategory { category total count } } }";

    let first = gql(list, json!({})).await;
    let cursor = first["data"]["expenses"]["pageInfo"]["endCursor"].clone();
    let cases: Vec<(&str, &'static str, Value)> = vec![
        ("expenses(first: 20)", list, json!({})),
        ("  page 2 (after cursor)", list, json!({ "after": cursor })),
        (
            "  category + year",
            list,
            json!({ "f": { "category": "food", "from": "2024-01-01", "to": "2024-12-31" } }),
        ),
        (
            "  type + amount range + tag",
            list,
            json!({ "f": { "type": "EXPENSE", "minAmount": "50", "maxAmount": "120", "tag": "work" } }),
        ),
        (
            "  search \"shop 42\"",
            list,
            json!({ "f": { "search": "shop 42" } }),
        ),
        (
            "  category + year, with totalCount",
            list_count,
            json!({ "f": { "category": "food", "from": "2024-01-01", "to": "2024-12-31" } }),
        ),
    ];
    println!(
        "{:<40} {:>11} {:>11} {:>11}",
        "GraphQL over HTTP", "p50", "p95", "mean"
    );
    for (name, q, vars) in &cases {
        let s = measure(runs, || {
            let vars = vars.clone();
            let gql = &gql;
            async move {
                gql(q, vars).await;
            }
        })
        .await;
        println!("{name:<40} {} {} {}", ms(s.p50), ms(s.p95), ms(s.mean));
    }
    let sum_runs = (runs / 3).max(3);
    let s_sum = measure(sum_runs, || async {
        gql(summary, json!({})).await;
    })
    .await;
    println!(
        "{:<40} {} {} {}",
        "expenseSummary(2024)",
        ms(s_sum.p50),
        ms(s_sum.p95),
        ms(s_sum.mean)
    );

    // The peer: the same queries straight to the database.
    let coll = db.db.collection::<Document>("expenses");
    let year = DayRange {
        from: NaiveDate::from_ymd_opt(2024, 1, 1),
        until: NaiveDate::from_ymd_opt(2025, 1, 1),
    };
    let filter = ListFilter {
        category_keys: Some(vec!["food".to_string()]),
        days: year,
        ..ListFilter::default()
    };
    let q = expenses::store::filter_document(
        &filter,
        &contract::households::Ownership::User(user_id.clone()),
        None,
    );
    let s_list = measure(runs, || {
        let coll = coll.clone();
        let q = q.clone();
        async move {
            let _: Vec<Document> = coll
                .find(q)
                .sort(doc! { "sortKey": -1 })
                .limit(21)
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("docs");
        }
    })
    .await;
    let ours = measure(runs, || async {
        gql(list, cases[2].2.clone()).await;
    })
    .await;
    let s_agg = measure(sum_runs, || async {
        let _ = service
            .store
            .summary(&user_id, Currency::parse("USD").expect("a currency"), year)
            .await
            .expect("summary");
    })
    .await;
    println!(
        "\n{:<40} {:>11} {:>11} {:>11}",
        "driver only (peer)", "p50", "p95", "mean"
    );
    println!(
        "{:<40} {} {} {}",
        "find category + year, limit 21",
        ms(s_list.p50),
        ms(s_list.p95),
        ms(s_list.mean)
    );
    println!(
        "{:<40} {} {} {}",
        "aggregate summary 2024",
        ms(s_agg.p50),
        ms(s_agg.p95),
        ms(s_agg.mean)
    );
    println!(
        "\nratio GraphQL/driver (p50): list {:.2}x, summary {:.2}x",
        ours.p50.as_secs_f64() / s_list.p50.as_secs_f64(),
        s_sum.p50.as_secs_f64() / s_agg.p50.as_secs_f64()
    );
    server.stop().await;
    drop(service);
    Ok(())
}
