//! Response shapes of the legacy API. GraphQL data is read into these types and
//! written back with the original field names; `Amount` writes a JSON number from
//! the subgraph's exact decimal text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::input::is_decimal;

/// An exact decimal written as a JSON number with the very digits of the
/// subgraph's `Decimal` string (`"12.50"` → `12.50`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Amount(pub String);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if is_decimal(&self.0) {
            match RawValue::from_string(self.0.clone()) {
                Ok(raw) => raw.serialize(serializer),
                Err(_) => serializer.serialize_str(&self.0),
            }
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Amount)
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some("Exact decimal, written with the stored digits"))
            .into()
    }
}

impl ToSchema for Amount {}

/// An expense: the GraphQL field names plus `_id` (= `id`) for legacy clients.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expense {
    #[serde(rename = "_id", default)]
    pub legacy_id: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: Amount,
    pub currency: String,
    pub category: String,
    pub description: String,
    pub date: String,
    pub payment_method: Option<String>,
    pub tags: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub recurrence: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl Expense {
    pub fn with_legacy_id(mut self) -> Self {
        self.legacy_id = self.id.clone();
        self
    }
}

/// The GraphQL selection that fills [`Expense`].
pub const EXPENSE_FIELDS: &str = "id type amount currency category description date paymentMethod tags recurrence { frequency endDate } createdAt updatedAt";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    #[serde(rename = "_id", default)]
    pub legacy_id: String,
    pub id: String,
    pub category: Option<String>,
    pub amount: Amount,
    pub currency: String,
    pub period: String,
    pub alert_thresholds: Vec<i64>,
    pub period_start: String,
    pub period_end: String,
    pub spent: Amount,
    pub remaining: Amount,
    pub percent_used: f64,
}

impl Budget {
    pub fn with_legacy_id(mut self) -> Self {
        self.legacy_id = self.id.clone();
        self
    }
}

pub const BUDGET_FIELDS: &str = "id category amount currency period alertThresholds periodStart periodEnd spent remaining percentUsed";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetAlert {
    #[serde(rename = "_id", default)]
    pub legacy_id: String,
    pub id: String,
    #[serde(default)]
    pub budget_id: String,
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub budget: Option<IdOnly>,
    pub threshold: i64,
    pub percent_used: f64,
    pub severity: String,
    pub message: String,
    pub period_start: String,
    pub read: bool,
    pub created_at: String,
}

impl BudgetAlert {
    pub fn normalised(mut self) -> Self {
        self.legacy_id = self.id.clone();
        if let Some(b) = self.budget.take() {
            self.budget_id = b.id;
        }
        self
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    pub id: String,
}

pub const ALERT_FIELDS: &str =
    "id budget { id } threshold percentUsed severity message periodStart read createdAt";

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub email: String,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: String,
    pub username: String,
    pub email: String,
    pub currency: String,
    pub timezone: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub monthly_income: Option<Amount>,
    pub created_at: String,
}

pub const PROFILE_FIELDS: &str =
    "id username email currency timezone firstName lastName monthlyIncome createdAt";

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub message: String,
    pub token: String,
    pub refresh_token: String,
    pub user: UserSummary,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileUpdated {
    pub message: String,
    pub profile: Profile,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub total_income: Amount,
    pub total_expenses: Amount,
    pub balance: Amount,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseList {
    pub expenses: Vec<Expense>,
    pub summary: Totals,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CategoryTotal {
    pub category: String,
    pub total: Amount,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategorySummary {
    pub summary: Vec<CategoryTotal>,
    pub total_income: Amount,
    pub total_expenses: Amount,
    pub balance: Amount,
}

/// A GraphQL connection as the subgraphs return it (`edges { node }`, `pageInfo`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    pub edges: Vec<Edge<T>>,
    pub page_info: PageInfo,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Edge<T> {
    pub node: T,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

impl<T> Connection<T> {
    /// The nodes, and the cursor of the next page when there is one.
    pub fn into_page(self) -> (Vec<T>, Option<String>) {
        let next = if self.page_info.has_next_page {
            self.page_info.end_cursor
        } else {
            None
        };
        (self.edges.into_iter().map(|e| e.node).collect(), next)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<BudgetAlert>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn amounts_are_written_as_numbers_with_the_exact_digits() {
        let t = Totals {
            total_income: Amount("12.5".into()),
            total_expenses: Amount("0.10".into()),
            balance: Amount("12345678901234567890.01".into()),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"totalIncome":12.5,"totalExpenses":0.10,"balance":12345678901234567890.01}"#
        );
    }

    #[test]
    fn a_non_decimal_amount_is_written_as_a_string_not_raw_json() {
        let s = serde_json::to_string(&Amount("1,2]".into())).unwrap();
        assert_eq!(s, r#""1,2]""#);
    }

    #[test]
    fn expense_from_graphql_gets_the_legacy_id() {
        let node = serde_json::json!({"id": "e1", "type": "EXPENSE", "amount": "12.50", "currency": "USD",
            "category": "food", "description": "lunch", "date": "2024-05-01", "paymentMethod": null,
            "tags": [], "recurrence": null, "createdAt": "2024-05-01T10:00:00Z", "updatedAt": "2024-05-01T10:00:00Z"});
        let e: Expense = serde_json::from_value(node).unwrap();
        let out = serde_json::to_string(&e.with_legacy_id()).unwrap();
        assert!(
            out.starts_with(r#"{"_id":"e1","id":"e1","type":"EXPENSE","amount":12.50,"#),
            "{out}"
        );
    }
}
