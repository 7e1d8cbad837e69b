//! The budgets the insights' pace rule looks at, read from the budgets subgraph with
//! the caller's own access token (so only the caller's budgets). `BUDGETS_URL`
//! (default `http://127.0.0.1:3003/graphql`). When the budgets subgraph does not
//! answer, the pace insight is left out; the other insights still come.

use std::time::Duration;

use chrono::NaiveDate;
use kit::money::{Currency, Total};
use serde_json::json;

use crate::domain::BudgetFact;

#[derive(Clone)]
pub struct BudgetsClient {
    pub url: String,
    http: reqwest::Client,
}

impl BudgetsClient {
    pub fn new(url: String) -> BudgetsClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        BudgetsClient { url, http }
    }

    /// The caller's budgets in `currency` (others cannot be compared).
    pub async fn budgets(
        &self,
        token: &str,
        currency: Currency,
    ) -> anyhow::Result<Vec<BudgetFact>> {
        let body: serde_json::Value = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .json(&json!({ "query": "{ budgets { category amount currency periodStart periodEnd spent } }" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let list = body["data"]["budgets"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("budgets subgraph answered without budgets: {body}"))?;
        let date = |v: &serde_json::Value| {
            v.as_str()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        };
        let mut out = Vec::new();
        for b in list {
            if b["currency"].as_str() != Some(currency.code()) {
                continue;
            }
            let money = |v: &serde_json::Value| {
                v.as_str()
                    .and_then(|t| Total::parse(t, currency).ok())
                    .map(|t| t.minor())
            };
            let (Some(amount), Some(spent), Some(start), Some(end)) = (
                money(&b["amount"]),
                money(&b["spent"]),
                date(&b["periodStart"]),
                date(&b["periodEnd"]),
            ) else {
                continue;
            };
            out.push(BudgetFact {
                category: b["category"].as_str().map(str::to_string),
                amount_minor: amount,
                spent_minor: spent,
                period_start: start,
                period_end: end,
            });
        }
        Ok(out)
    }
}
