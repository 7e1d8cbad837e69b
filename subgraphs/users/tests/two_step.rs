#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Two-step sign-in end to end with a pinned clock: enrolment, a password then a code,
//! wrong codes locking the account like wrong passwords, no code accepted twice,
//! recovery codes spent once, and turning it off with a current code.

mod support;

use kit::testing::first_error_code;
use serde_json::{Value, json};
use support::{App, start};
use users::domain::totp::TotpSecret;

const PASSWORD: &str = "correct horse battery";
const LOGIN: &str = "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken user { id } } }";
const WITH_CODE: &str = "mutation($c: String!, $code: String!) { loginWithCode(challenge: $c, code: $code) { accessToken refreshToken user { username } } }";
const STATUS: &str = "{ me { totpEnabled recoveryCodesLeft } }";

impl App {
    /// Registers `name` and returns the access token.
    async fn register(&self, name: &str) -> String {
        let q = "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }";
        let input = json!({ "input": { "username": name, "email": format!("{name}@example.com"), "password": PASSWORD } });
        self.gql.ok(q, input, None).await["register"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Enrols and confirms; returns the secret and the recovery codes.
    async fn turn_on(&self, token: &str) -> (TotpSecret, Vec<String>) {
        let e = self
            .gql
            .ok(
                "mutation { enrollTotp { secret otpauthUri } }",
                json!({}),
                Some(token),
            )
            .await;
        let secret = TotpSecret::from_base32(e["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
        let codes = self
            .gql
            .ok(
                "mutation($code: String!) { confirmTotp(code: $code) }",
                json!({ "code": secret.code_at(self.clock.now()) }),
                Some(token),
            )
            .await["confirmTotp"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        // The code just used is spent: sign-ins start at the next step.
        self.advance(30);
        (secret, codes)
    }

    async fn login(&self, name: &str, password: &str) -> Value {
        self.gql
            .request(
                LOGIN,
                json!({ "email": format!("{name}@example.com"), "password": password }),
                None,
            )
            .await
    }

    /// A password sign-in that must ask for a code: the challenge.
    async fn challenge(&self, name: &str) -> String {
        let r = self.login(name, PASSWORD).await;
        assert_eq!(first_error_code(&r), "TWO_FACTOR_REQUIRED", "{r}");
        assert!(
            r["data"]["login"].is_null(),
            "no tokens before the code: {r}"
        );
        let ext = &r["errors"][0]["extensions"];
        assert_eq!(ext["expiresIn"], 300, "{r}");
        ext["challenge"].as_str().unwrap().to_string()
    }

    async fn with_code(&self, challenge: &str, code: &str) -> Value {
        self.gql
            .request(WITH_CODE, json!({ "c": challenge, "code": code }), None)
            .await
    }
}

#[tokio::test]
async fn enrolment_is_confirmed_by_a_first_code_and_gives_ten_recovery_codes() {
    let app = start().await;
    let token = app.register("tessa").await;
    let status = app.gql.ok(STATUS, json!({}), Some(&token)).await;
    assert_eq!(status["me"]["totpEnabled"], false);

    let e = app
        .gql
        .ok(
            "mutation { enrollTotp { secret otpauthUri } }",
            json!({}),
            Some(&token),
        )
        .await;
    let secret_text = e["enrollTotp"]["secret"].as_str().unwrap();
    let uri = e["enrollTotp"]["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains("tessa") && uri.contains(secret_text), "{uri}");
    assert!(uri.contains("issuer=Smart"), "{uri}");
    // Not on until confirmed: the password alone still signs in.
    let r = app.login("tessa", PASSWORD).await;
    assert!(r["data"]["login"]["accessToken"].is_string(), "{r}");

    let confirm = "mutation($code: String!) { confirmTotp(code: $code) }";
    let wrong = app
        .gql
        .request(confirm, json!({ "code": "000000" }), Some(&token))
        .await;
    let secret = TotpSecret::from_base32(secret_text).unwrap();
    if secret.code_at(app.clock.now()) != "000000" {
        assert_eq!(first_error_code(&wrong), "VALIDATION_FAILED", "{wrong}");
    }
    let codes = app
        .gql
        .ok(
            confirm,
            json!({ "code": secret.code_at(app.clock.now()) }),
            Some(&token),
        )
        .await;
    let codes = codes["confirmTotp"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<&str> =
        codes.iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 10, "{codes:?}");
    let status = app.gql.ok(STATUS, json!({}), Some(&token)).await;
    assert_eq!(
        status["me"],
        json!({ "totpEnabled": true, "recoveryCodesLeft": 10 })
    );
    // While on, a new enrolment is refused (the secret is never replaced silently).
    let again = app
        .gql
        .request(
            "mutation { enrollTotp { secret } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(first_error_code(&again), "CONFLICT", "{again}");
    // Without a token, nothing.
    let anonymous = app
        .gql
        .request("mutation { enrollTotp { secret } }", json!({}), None)
        .await;
    assert_eq!(
        first_error_code(&anonymous),
        "UNAUTHENTICATED",
        "{anonymous}"
    );
}

#[tokio::test]
async fn login_asks_for_a_code_and_accepts_each_code_once() {
    let app = start().await;
    let token = app.register("carl").await;
    let (secret, _) = app.turn_on(&token).await;

    let challenge = app.challenge("carl").await;
    let code = secret.code_at(app.clock.now());
    let r = app.with_code(&challenge, &code).await;
    assert_eq!(
        r["data"]["loginWithCode"]["user"]["username"], "carl",
        "{r}"
    );
    assert!(r["data"]["loginWithCode"]["accessToken"].is_string());

    // The same code again, with a fresh challenge, within its window: refused.
    let challenge = app.challenge("carl").await;
    let replay = app.with_code(&challenge, &code).await;
    assert_eq!(first_error_code(&replay), "UNAUTHENTICATED", "{replay}");
    // A challenge is single use too.
    app.advance(30);
    let next = secret.code_at(app.clock.now());
    let ok = app.with_code(&challenge, &next).await;
    assert!(
        ok["data"]["loginWithCode"]["accessToken"].is_string(),
        "{ok}"
    );
    let twice = app.with_code(&challenge, &next).await;
    assert_eq!(first_error_code(&twice), "UNAUTHENTICATED", "{twice}");

    // A challenge expires after five minutes.
    app.advance(30);
    let challenge = app.challenge("carl").await;
    app.advance(301);
    let late = app
        .with_code(&challenge, &secret.code_at(app.clock.now()))
        .await;
    assert_eq!(first_error_code(&late), "UNAUTHENTICATED", "{late}");
    // A made-up challenge or a malformed code: coded errors, no tokens.
    let made_up = app.with_code("nope", "123456").await;
    assert_eq!(first_error_code(&made_up), "UNAUTHENTICATED", "{made_up}");
    let challenge = app.challenge("carl").await;
    let malformed = app.with_code(&challenge, "12ab").await;
    assert_eq!(
        first_error_code(&malformed),
        "VALIDATION_FAILED",
        "{malformed}"
    );
}

#[tokio::test]
async fn wrong_codes_count_toward_the_login_lockout() {
    let app = start().await;
    let token = app.register("wendy").await;
    let (secret, _) = app.turn_on(&token).await;
    let right = secret.code_at(app.clock.now());
    let wrong = if right == "111111" {
        "222222"
    } else {
        "111111"
    };
    for _ in 0..5 {
        let challenge = app.challenge("wendy").await;
        let r = app.with_code(&challenge, wrong).await;
        assert_eq!(first_error_code(&r), "UNAUTHENTICATED", "{r}");
    }
    // Locked: even the right password and code are refused for the window.
    let r = app.login("wendy", PASSWORD).await;
    assert_eq!(first_error_code(&r), "RATE_LIMITED", "{r}");
    // Fifteen minutes later the account opens again.
    app.advance(15 * 60 + 1);
    let challenge = app.challenge("wendy").await;
    let r = app
        .with_code(&challenge, &secret.code_at(app.clock.now()))
        .await;
    assert!(r["data"]["loginWithCode"]["accessToken"].is_string(), "{r}");
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = start().await;
    let token = app.register("rory").await;
    let (_, codes) = app.turn_on(&token).await;

    let challenge = app.challenge("rory").await;
    // Typed in capitals without its dash: still the same code.
    let typed = codes[3].replace('-', "").to_uppercase();
    let r = app.with_code(&challenge, &typed).await;
    assert!(r["data"]["loginWithCode"]["accessToken"].is_string(), "{r}");

    let challenge = app.challenge("rory").await;
    let again = app.with_code(&challenge, &codes[3]).await;
    assert_eq!(first_error_code(&again), "UNAUTHENTICATED", "{again}");
    let status = app.gql.ok(STATUS, json!({}), Some(&token)).await;
    assert_eq!(status["me"]["recoveryCodesLeft"], 9);
    // Another one still works.
    let r = app.with_code(&challenge, &codes[4]).await;
    assert!(r["data"]["loginWithCode"]["accessToken"].is_string(), "{r}");
}

#[tokio::test]
async fn turning_it_off_needs_a_current_code() {
    let app = start().await;
    let token = app.register("otto").await;
    let (secret, codes) = app.turn_on(&token).await;
    let disable = "mutation($code: String!) { disableTotp(code: $code) }";
    let current = secret.code_at(app.clock.now());
    let stale = secret.code_at(app.clock.now() - chrono::Duration::seconds(120));
    for bad in [stale.as_str(), codes[0].as_str()] {
        if bad == current {
            continue;
        }
        let r = app
            .gql
            .request(disable, json!({ "code": bad }), Some(&token))
            .await;
        assert_eq!(first_error_code(&r), "VALIDATION_FAILED", "{bad}: {r}");
    }
    let status = app.gql.ok(STATUS, json!({}), Some(&token)).await;
    assert_eq!(status["me"]["totpEnabled"], true);

    let off = app
        .gql
        .ok(disable, json!({ "code": current }), Some(&token))
        .await;
    assert_eq!(off["disableTotp"], true);
    let r = app.login("otto", PASSWORD).await;
    assert!(r["data"]["login"]["accessToken"].is_string(), "{r}");
    let status = app.gql.ok(STATUS, json!({}), Some(&token)).await;
    assert_eq!(
        status["me"],
        json!({ "totpEnabled": false, "recoveryCodesLeft": 0 })
    );
}
