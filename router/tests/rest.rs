//! The legacy REST shim over the real product: five subgraphs and the router on
//! loopback, real HTTP, the original `/api` routes and shapes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::rest::{Reply, Rest};

#[tokio::test]
async fn legacy_clients_register_log_in_and_keep_exact_amounts() {
    use reqwest::Method;
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let (token, user_id) = (ada.token, ada.user_id);

    let Reply { status, body, .. } = rest
        .send(
            Method::POST,
            "/api/auth/login",
            None,
            &[],
            Some(json!({ "email": "ada@example.com", "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], user_id.as_str());
    assert!(body["token"].is_string() && body["refreshToken"].is_string());

    // A number amount and a string amount, both kept exactly.
    let Reply {
        status, raw, body, ..
    } = rest
        .post(
            "/api/expenses",
            &token,
            json!({ "amount": 12.5, "description": "lunch", "category": "food" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(raw.contains("12.5"), "{raw}");
    assert!(!raw.contains("12.49"), "{raw}");
    let first_id = body["id"].as_str().unwrap().to_string();
    let Reply { status, body, .. } = rest
        .post(
            "/api/expenses",
            &token,
            json!({ "amount": "0.10", "description": "gum", "category": "food",
                    "type": "expense" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The list and its summary: 12.50 + 0.10 = 12.60 exactly.
    let Reply {
        status, raw, body, ..
    } = rest.get("/api/expenses", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expenses"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(
        body["summary"]["totalExpenses"].as_f64(),
        Some(12.6),
        "{raw}"
    );
    assert!(!raw.contains("12.600000"), "{raw}");

    // The legacy user-id header must match the token's user.
    let Reply { status, body, .. } = rest
        .send(
            Method::GET,
            "/api/expenses",
            Some(&token),
            &[("user-id", "someone-else")],
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].is_string() && body["code"].is_string(),
        "{body}"
    );
    let Reply { status, .. } = rest
        .send(
            Method::GET,
            "/api/expenses",
            Some(&token),
            &[("user-id", &user_id)],
            None,
        )
        .await;
    assert_eq!(status, 200);

    // Without a token: 401. Bad input: 400 naming the field, nothing written.
    let Reply { status, body, .. } = rest
        .send(Method::GET, "/api/expenses", None, &[], None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "UNAUTHENTICATED");
    let Reply { status, body, .. } = rest
        .post(
            "/api/expenses",
            &token,
            json!({ "amount": "1e3", "description": "x", "category": "food" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "VALIDATION_FAILED");
    let Reply { body, .. } = rest.get("/api/expenses", &token).await;
    assert_eq!(body["expenses"].as_array().unwrap().len(), 2);

    // Another user cannot read the first user's expense.
    let other = rest.register("bob").await.token;
    let Reply { status, body, .. } = rest.get(&format!("/api/expenses/{first_id}"), &other).await;
    assert_eq!(status, 404, "{body}");
    let Reply { status, body, .. } = rest.get("/api/expenses", &other).await;
    assert_eq!(status, 200);
    assert_eq!(body["expenses"], json!([]));
}

#[tokio::test]
async fn the_openapi_document_lists_the_legacy_routes() {
    let rest = Rest::start().await;
    let Reply { status, body, .. } = rest
        .send(reqwest::Method::GET, "/api/openapi.json", None, &[], None)
        .await;
    assert_eq!(status, 200);
    assert!(
        body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{body}"
    );
    let paths = body["paths"].as_object().unwrap();
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/expenses",
        "/api/budgets",
        "/api/households",
        "/api/households/{id}/members/{userId}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }

    let Reply {
        status,
        headers,
        raw,
        ..
    } = rest
        .send(reqwest::Method::GET, "/api/docs", None, &[], None)
        .await;
    assert_eq!(status, 200);
    assert!(
        headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert!(raw.contains("Smart Expense Tracker"), "{raw}");
}

#[tokio::test]
async fn retried_creates_are_idempotent_taken_names_conflict_and_legacy_spellings_work() {
    use reqwest::Method;
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let t = ada.token.as_str();

    // The same Idempotency-Key twice: one expense, the same answer both times.
    let body = json!({ "amount": "7.25", "description": "taxi", "category": "transport",
                       "type": "expense", "date": "2025-03-05T23:30:00-05:00" });
    let key = [("Idempotency-Key", "taxi-2025-03-05")];
    let first = rest
        .send(
            Method::POST,
            "/api/expenses",
            Some(t),
            &key,
            Some(body.clone()),
        )
        .await
        .expect(201);
    let again = rest
        .send(Method::POST, "/api/expenses", Some(t), &key, Some(body))
        .await;
    assert!(again.status == 200 || again.status == 201, "{}", again.raw);
    assert_eq!(again.body["id"], first.body["id"]);
    // An RFC 3339 date-time is read as its date; `expense` is the lower-case spelling.
    assert_eq!(first.body["date"], "2025-03-05");
    assert_eq!(first.body["type"], "EXPENSE");
    let list = rest.get("/api/expenses", t).await.expect(200);
    assert_eq!(list.body["expenses"].as_array().unwrap().len(), 1);

    // An income in the original lower-case spelling, and a weekly budget likewise.
    let income = rest
        .post(
            "/api/expenses",
            t,
            json!({ "amount": 100, "description": "refund", "type": "income", "date": "2025-03-06" }),
        )
        .await
        .expect(201);
    assert_eq!(income.body["type"], "INCOME");
    let weekly = rest
        .post(
            "/api/budgets",
            t,
            json!({ "amount": 50, "period": "weekly" }),
        )
        .await
        .expect(201);
    assert_eq!(weekly.body["period"], "WEEKLY");

    // A taken username or email is a 409, and creates nothing.
    let taken = rest
        .send(
            Method::POST,
            "/api/auth/register",
            None,
            &[],
            Some(json!({ "username": "ADA", "email": "other@example.com",
                         "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.raw);
    assert_eq!(taken.body["code"], "CONFLICT", "{}", taken.raw);
    let login = rest
        .send(
            Method::POST,
            "/api/auth/login",
            None,
            &[],
            Some(json!({ "email": "other@example.com", "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(login.status, 401, "{}", login.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_step_sign_in_works_through_graphql_and_the_legacy_login() {
    use reqwest::Method;
    use users::domain::totp::TotpSecret;
    let rest = Rest::start().await;
    let tia = rest.register("tia").await;
    let gql = rest.stack.gql();
    let enrolment = gql
        .ok(
            "mutation { enrollTotp { secret otpauthUri } }",
            json!({}),
            Some(&tia.token),
        )
        .await;
    let secret =
        TotpSecret::from_base32(enrolment["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let codes = gql
        .ok(
            "mutation($code: String!) { confirmTotp(code: $code) }",
            json!({ "code": secret.code_at(chrono::Utc::now()) }),
            Some(&tia.token),
        )
        .await;
    let recovery: Vec<&str> = codes["confirmTotp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(recovery.len(), 10);

    // GraphQL: the password alone gives no tokens, only a challenge.
    let answer = gql
        .request(
            "mutation { login(email: \"tia@example.com\", password: \"correct horse battery\") { accessToken } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "TWO_FACTOR_REQUIRED",
        "{answer}"
    );
    assert!(answer["errors"][0]["extensions"]["challenge"].is_string());

    // REST: 401 TWO_FACTOR_REQUIRED with the challenge, then the code route.
    let login = || {
        rest.send(
            Method::POST,
            "/api/auth/login",
            None,
            &[],
            Some(json!({ "email": "tia@example.com", "password": "correct horse battery" })),
        )
    };
    let Reply { status, body, .. } = login().await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "TWO_FACTOR_REQUIRED", "{body}");
    assert!(body.get("token").is_none(), "{body}");
    let challenge = body["details"][0]["challenge"].as_str().unwrap().to_owned();
    assert_eq!(body["details"][0]["expiresIn"], 300, "{body}");
    let with_code = |code: &str| {
        rest.send(
            Method::POST,
            "/api/auth/login/code",
            None,
            &[],
            Some(json!({ "challenge": challenge, "code": code })),
        )
    };
    let wrong = with_code("abcde-abcde").await;
    assert_eq!(wrong.status, 401, "{}", wrong.raw);
    assert_eq!(wrong.body["code"], "UNAUTHENTICATED");
    let malformed = with_code("12").await;
    assert_eq!(malformed.status, 400, "{}", malformed.raw);
    let ok = with_code(recovery[0]).await.expect(200);
    assert_eq!(ok.body["user"]["id"], tia.user_id.as_str());
    assert!(ok.body["token"].is_string() && ok.body["refreshToken"].is_string());
    // The challenge is spent; so is the recovery code.
    let again = with_code(recovery[1]).await;
    assert_eq!(again.status, 401, "{}", again.raw);
    let Reply { body, .. } = login().await;
    let challenge = body["details"][0]["challenge"].as_str().unwrap().to_owned();
    let reused = rest
        .send(
            Method::POST,
            "/api/auth/login/code",
            None,
            &[],
            Some(json!({ "challenge": challenge, "code": recovery[0] })),
        )
        .await;
    assert_eq!(reused.status, 401, "{}", reused.raw);
}
