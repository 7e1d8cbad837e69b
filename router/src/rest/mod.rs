//! The legacy REST shim under `/api` (API.md's REST table). Every route runs one
//! GraphQL operation through the router's own pipeline
//! ([`crate::edge::execute_operation`]): same auth, limits, rate limiting,
//! metrics and errors as `POST /graphql`.

pub mod analytics;
pub mod budgets;
pub mod call;
pub mod doc;
pub mod error;
pub mod expenses;
pub mod households;
pub mod input;
pub mod notifications;
pub mod ops;
pub mod shapes;
pub mod users;

use contract::ErrorCode;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::state::AppState;
use doc::CommonResponses;
use error::ApiError;

/// Largest CSV accepted by `POST /api/expenses/import`.
pub const IMPORT_BODY_LIMIT: usize = 5 * 1024 * 1024;

pub fn router() -> Router<Arc<AppState>> {
    // The document does not change while the router runs: written once, here.
    let doc = ApiDoc::openapi();
    let doc_json = doc.to_json().map(Bytes::from).map_err(|e| e.to_string());
    // A browsable view of the document (Scalar; its script is loaded by URL).
    let doc_html = Html(Bytes::from(utoipa_scalar::Scalar::new(doc).to_html()));
    Router::new()
        .route("/api/auth/register", post(users::register))
        .route("/api/auth/login", post(users::login))
        .route("/api/auth/login/code", post(users::login_with_code))
        .route(
            "/api/users/profile",
            get(users::get_profile).put(users::update_profile),
        )
        .route("/api/expenses", get(expenses::list).post(expenses::create))
        .route("/api/expenses/summary", get(expenses::summary))
        .route(
            "/api/expenses/summary/by-category",
            get(expenses::summary_by_category),
        )
        .route("/api/expenses/export.csv", get(expenses::export_csv))
        .route(
            "/api/expenses/import",
            // A little room over 5 MiB for a multipart-free body's framing.
            post(expenses::import_csv).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT + 1024)),
        )
        .route(
            "/api/expenses/{id}",
            get(expenses::get_one)
                .put(expenses::update)
                .delete(expenses::delete),
        )
        .route("/api/budgets", get(budgets::list).post(budgets::create))
        .route("/api/budgets/alerts", get(budgets::alerts))
        .route("/api/budgets/alerts/{id}/read", put(budgets::alert_read))
        .route(
            "/api/budgets/{id}",
            put(budgets::update).delete(budgets::delete),
        )
        .route(
            "/api/households",
            get(households::list).post(households::create),
        )
        .route("/api/households/invitations", get(households::invitations))
        .route(
            "/api/households/invitations/{id}",
            axum::routing::delete(households::revoke),
        )
        .route(
            "/api/households/invitations/{id}/accept",
            post(households::accept),
        )
        .route(
            "/api/households/invitations/{id}/decline",
            post(households::decline),
        )
        .route("/api/households/{id}", get(households::get_one))
        .route("/api/households/{id}/invitations", post(households::invite))
        .route("/api/households/{id}/leave", post(households::leave))
        .route(
            "/api/households/{id}/members/{userId}",
            put(households::change_role).delete(households::remove_member),
        )
        .route(
            "/api/analytics/monthly-summary",
            get(analytics::monthly_summary),
        )
        .route("/api/analytics/trends", get(analytics::trends))
        .route(
            "/api/analytics/category-analysis",
            get(analytics::category_analysis),
        )
        .route(
            "/api/analytics/daily-pattern",
            get(analytics::daily_pattern),
        )
        .route("/api/analytics/top-expenses", get(analytics::top_expenses))
        .route("/api/analytics/insights", get(analytics::insights))
        .route("/api/notifications", get(notifications::list))
        .route(
            "/api/notifications/unread-count",
            get(notifications::unread_count),
        )
        .route(
            "/api/notifications/read-all",
            put(notifications::mark_all_read),
        )
        .route(
            "/api/notifications/{id}/read",
            put(notifications::mark_read),
        )
        .route(
            "/api/notifications/{id}",
            axum::routing::delete(notifications::delete),
        )
        .route(
            "/api/openapi.json",
            get(move || std::future::ready(openapi_json(doc_json.clone()))),
        )
        .route(
            "/api/docs",
            get(move || std::future::ready(doc_html.clone())),
        )
        .route("/api", axum::routing::any(not_found))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such route")
}

/// A known route with another method (axum adds the `Allow` header).
async fn method_not_allowed() -> ApiError {
    ApiError::coded(
        ErrorCode::MethodNotAllowed,
        "This route does not take this method",
    )
}

/// The body bytes, or 413 in the REST error shape when over the limit.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "PAYLOAD_TOO_LARGE", "The request body is too large")
        } else {
            ApiError::coded(ErrorCode::BadRequest, r.body_text())
        }
    })
}

pub(crate) fn query_params(
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    params
        .map(|Query(p)| p)
        .map_err(|r| ApiError::coded(ErrorCode::BadRequest, r.body_text()))
}

/// An integer query parameter within `min..=max`.
pub(crate) fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    match params.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                name,
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}

pub(crate) fn bool_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<bool>, ApiError> {
    match params.get(name).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if s == "true" || s == "1" => Ok(Some(true)),
        Some(s) if s == "false" || s == "0" => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid(name, "must be true or false")),
    }
}

/// Request bodies, for the document only (handlers read fields one by one). The
/// examples are valid requests; the constraints are the ones the services check that a
/// schema can say (the rest, such as known currencies and categories, they check too).
pub mod schemas {
    // Described, never built: their fields are read by nobody.
    #![allow(dead_code)]

    use super::shapes::Amount;
    use utoipa::ToSchema;

    /// A whole percentage of the budget, 1 to 1000.
    pub struct Percent;

    impl utoipa::PartialSchema for Percent {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Integer)
                .minimum(Some(1))
                .maximum(Some(1000))
                .description(Some("A whole percentage of the budget"))
                .into()
        }
    }

    impl ToSchema for Percent {}

    /// `expense` or `income` (any case).
    #[derive(ToSchema)]
    pub enum TransactionType {
        #[schema(rename = "expense")]
        Expense,
        #[schema(rename = "income")]
        Income,
        #[schema(rename = "EXPENSE")]
        ExpenseUpper,
        #[schema(rename = "INCOME")]
        IncomeUpper,
    }

    /// `week`, `month` or `year` (any case).
    #[derive(ToSchema)]
    pub enum AnalysisPeriod {
        #[schema(rename = "week")]
        Week,
        #[schema(rename = "month")]
        Month,
        #[schema(rename = "year")]
        Year,
        #[schema(rename = "WEEK")]
        WeekUpper,
        #[schema(rename = "MONTH")]
        MonthUpper,
        #[schema(rename = "YEAR")]
        YearUpper,
    }

    /// `weekly`, `monthly` or `yearly` (any case).
    #[derive(ToSchema)]
    pub enum BudgetPeriod {
        #[schema(rename = "weekly")]
        Weekly,
        #[schema(rename = "monthly")]
        Monthly,
        #[schema(rename = "yearly")]
        Yearly,
        #[schema(rename = "WEEKLY")]
        WeeklyUpper,
        #[schema(rename = "MONTHLY")]
        MonthlyUpper,
        #[schema(rename = "YEARLY")]
        YearlyUpper,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase", example = json!({
        "username": "ada", "email": "ada@example.com", "password": "correct horse battery",
        "currency": "EUR", "firstName": "Ada", "timezone": "Europe/London"
    }))]
    pub struct RegisterBody {
        #[schema(pattern = "^[A-Za-z0-9_.-]{3,32}$")]
        username: String,
        #[schema(format = Email, max_length = 254)]
        email: String,
        #[schema(min_length = 8, max_length = 128)]
        password: String,
        /// ISO 4217 code (default USD).
        currency: Option<String>,
        #[schema(max_length = 100)]
        first_name: Option<String>,
        #[schema(max_length = 100)]
        last_name: Option<String>,
        /// IANA timezone (default UTC).
        timezone: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
    pub struct LoginBody {
        #[schema(min_length = 1)]
        email: String,
        #[schema(min_length = 1)]
        password: String,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"challenge": "the challenge from the login answer", "code": "123456"}))]
    pub struct LoginCodeBody {
        #[schema(min_length = 1)]
        challenge: String,
        /// Six digits from the authenticator app, or a recovery code.
        #[schema(min_length = 1)]
        code: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase", example = json!({
        "firstName": "Ada", "currency": "EUR", "timezone": "Europe/Paris", "monthlyIncome": 4200.5
    }))]
    pub struct ProfileBody {
        #[schema(max_length = 100)]
        first_name: Option<String>,
        #[schema(max_length = 100)]
        last_name: Option<String>,
        /// ISO 4217 code.
        currency: Option<String>,
        /// IANA timezone.
        timezone: Option<String>,
        /// A number or a decimal string; null clears it.
        monthly_income: Option<Amount>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase", example = json!({
        "amount": 12.5, "description": "lunch", "category": "food", "type": "expense",
        "date": "2024-05-01", "paymentMethod": "card", "tags": ["work"]
    }))]
    pub struct ExpenseBody {
        /// A number or a decimal string.
        amount: Amount,
        #[schema(min_length = 1, max_length = 500)]
        description: String,
        /// A built-in category or one of the caller's own.
        category: Option<String>,
        #[schema(rename = "type")]
        kind: Option<TransactionType>,
        /// ISO 4217 code (default: the caller's currency).
        currency: Option<String>,
        /// `YYYY-MM-DD`; an RFC 3339 date-time is cut to its date.
        #[schema(format = Date)]
        date: Option<String>,
        /// `cash`, `card`, `bank_transfer`, `mobile` or `other`.
        payment_method: Option<String>,
        #[schema(max_items = 10)]
        tags: Option<Vec<String>>,
    }

    /// An expense change: only the fields given change; `paymentMethod: null` clears it.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase", example = json!({"amount": "13.75", "description": "lunch with Bob"}))]
    pub struct ExpenseUpdateBody {
        /// A number or a decimal string.
        amount: Option<Amount>,
        #[schema(min_length = 1, max_length = 500)]
        description: Option<String>,
        category: Option<String>,
        #[schema(rename = "type")]
        kind: Option<TransactionType>,
        currency: Option<String>,
        /// `YYYY-MM-DD`; an RFC 3339 date-time is cut to its date.
        #[schema(format = Date)]
        date: Option<String>,
        payment_method: Option<String>,
        #[schema(max_items = 10)]
        tags: Option<Vec<String>>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase", example = json!({
        "amount": 300, "category": "food", "period": "monthly", "alertThreshold": 80
    }))]
    pub struct BudgetBody {
        /// A number or a decimal string.
        amount: Amount,
        /// Absent or null: all spending.
        category: Option<String>,
        /// ISO 4217 code (default: the caller's currency).
        currency: Option<String>,
        /// Default `monthly`.
        period: Option<BudgetPeriod>,
        /// Percent at which to warn (the original's single threshold); also warns at 100.
        alert_threshold: Option<Percent>,
        /// Percents at which to warn.
        #[schema(min_items = 1, max_items = 5)]
        alert_thresholds: Option<Vec<Percent>>,
    }

    /// A budget change: only the fields given change; `category: null` makes it cover all
    /// spending. The currency of a budget is fixed when it is created.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase", example = json!({"amount": 350, "alertThresholds": [50, 90, 100]}))]
    pub struct BudgetUpdateBody {
        /// A number or a decimal string.
        amount: Option<Amount>,
        category: Option<String>,
        period: Option<BudgetPeriod>,
        /// Percent at which to warn (the original's single threshold); also warns at 100.
        alert_threshold: Option<Percent>,
        /// Percents at which to warn.
        #[schema(min_items = 1, max_items = 5)]
        alert_thresholds: Option<Vec<Percent>>,
    }

    /// `owner`, `member` or `viewer` (any case).
    #[derive(ToSchema)]
    pub enum HouseholdRole {
        #[schema(rename = "owner")]
        Owner,
        #[schema(rename = "member")]
        Member,
        #[schema(rename = "viewer")]
        Viewer,
        #[schema(rename = "OWNER")]
        OwnerUpper,
        #[schema(rename = "MEMBER")]
        MemberUpper,
        #[schema(rename = "VIEWER")]
        ViewerUpper,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"name": "Flat 4B", "currency": "EUR"}))]
    pub struct HouseholdBody {
        /// Trimmed; 1 to 64 characters, no control characters.
        #[schema(min_length = 1, max_length = 64)]
        name: String,
        /// ISO 4217 code; shared budgets count in it.
        #[schema(min_length = 3, max_length = 3)]
        currency: String,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"user": "bob@example.com", "role": "member"}))]
    pub struct InvitationBody {
        /// The username or the email of the person to invite.
        #[schema(min_length = 1, max_length = 254)]
        user: String,
        /// The role they get on accepting (default `member`).
        role: Option<HouseholdRole>,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"role": "viewer"}))]
    pub struct RoleBody {
        role: HouseholdRole,
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Smart Expense Tracker — legacy REST API", version = "1"),
    paths(
        users::register, users::login, users::login_with_code, users::get_profile, users::update_profile,
        expenses::list, expenses::create, expenses::get_one, expenses::update, expenses::delete,
        expenses::summary, expenses::summary_by_category, expenses::export_csv, expenses::import_csv,
        budgets::list, budgets::create, budgets::update, budgets::delete, budgets::alerts, budgets::alert_read,
        analytics::monthly_summary, analytics::trends, analytics::category_analysis,
        analytics::daily_pattern, analytics::top_expenses, analytics::insights,
        notifications::list, notifications::mark_read, notifications::mark_all_read,
        notifications::delete, notifications::unread_count,
        households::list, households::create, households::get_one, households::invitations,
        households::invite, households::accept, households::decline, households::revoke,
        households::leave, households::change_role, households::remove_member,
    ),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

fn openapi_json(doc: Result<Bytes, String>) -> Response {
    match doc {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "INTERNAL",
            format!("OpenAPI document: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_routes_register_without_conflicts() {
        let _ = router();
    }

    #[test]
    fn the_openapi_document_is_3_1_and_lists_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/api/auth/register",
            "/api/auth/login",
            "/api/auth/login/code",
            "/api/users/profile",
            "/api/expenses",
            "/api/expenses/{id}",
            "/api/expenses/summary",
            "/api/expenses/summary/by-category",
            "/api/expenses/export.csv",
            "/api/expenses/import",
            "/api/budgets",
            "/api/budgets/{id}",
            "/api/budgets/alerts",
            "/api/budgets/alerts/{id}/read",
            "/api/analytics/monthly-summary",
            "/api/analytics/trends",
            "/api/analytics/category-analysis",
            "/api/analytics/daily-pattern",
            "/api/analytics/top-expenses",
            "/api/analytics/insights",
            "/api/notifications",
            "/api/notifications/{id}",
            "/api/notifications/{id}/read",
            "/api/notifications/read-all",
            "/api/notifications/unread-count",
            "/api/households",
            "/api/households/{id}",
            "/api/households/invitations",
            "/api/households/{id}/invitations",
            "/api/households/invitations/{id}",
            "/api/households/invitations/{id}/accept",
            "/api/households/invitations/{id}/decline",
            "/api/households/{id}/leave",
            "/api/households/{id}/members/{userId}",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        let amount = &doc["components"]["schemas"]["Expense"]["properties"]["amount"];
        let amount = match amount["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => amount,
        };
        assert_eq!(amount["type"], "number");
    }

    #[test]
    fn integer_parameters_out_of_range_are_a_400_naming_the_parameter() {
        let params: HashMap<String, String> = [("limit".to_owned(), "500".to_owned())].into();
        let e = int_param(&params, "limit", 1, 100).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.details[0]["field"], "limit");
    }
}
