//! `/api/auth/*` and `/api/users/profile`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::call::{Anonymous, Authed, Caller, field, run};
use super::error::{ApiError, ErrorBody};
use super::input::Body;
use super::ops;
use super::shapes::{AuthResponse, Profile, ProfileUpdated, UserSummary};
use super::{body_bytes, schemas};

use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    access_token: String,
    refresh_token: String,
    user: PayloadUser,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadUser {
    id: String,
    username: String,
    email: String,
    currency: String,
    first_name: Option<String>,
}

pub(super) const AUTH_FIELDS: &str =
    "accessToken refreshToken user { id username email currency firstName }";

fn auth_response(message: &str, p: Payload, with_first_name: bool) -> AuthResponse {
    AuthResponse {
        message: message.to_owned(),
        token: p.access_token,
        refresh_token: p.refresh_token,
        user: UserSummary {
            id: p.user.id,
            username: p.user.username,
            email: p.user.email,
            currency: p.user.currency,
            first_name: if with_first_name {
                Some(p.user.first_name.unwrap_or_default())
            } else {
                None
            },
        },
    }
}

/// Creates an account.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth",
    request_body = schemas::RegisterBody,
    responses((status = 201, body = AuthResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    Anonymous(caller): Anonymous,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let mut input = Map::new();
    for f in ["username", "email", "password"] {
        input.insert(f.into(), Value::String(body.required_string(f)?));
    }
    body.copy_strings(
        &["currency", "firstName", "lastName", "timezone"],
        &mut input,
    )?;
    let q: &str = &ops::REGISTER;
    let mut data = run(&state, &caller, q, json!({ "input": input })).await?;
    let p: Payload = field(&mut data, "register")?;
    Ok((
        StatusCode::CREATED,
        Json(auth_response("User registered successfully", p, false)),
    ))
}

/// Signs in.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body = schemas::LoginBody,
    responses((status = 200, body = AuthResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    Anonymous(caller): Anonymous,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AuthResponse>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    sign_in(
        &state,
        &caller,
        &body,
        &ops::LOGIN,
        "login",
        ["email", "password"],
    )
    .await
}

/// A sign-in step: the two body strings become the operation's variables of the same
/// names, and the tokens it answers become the legacy login response.
async fn sign_in(
    state: &Arc<AppState>,
    caller: &Caller,
    body: &Body,
    q: &str,
    root: &str,
    fields: [&str; 2],
) -> Result<Json<AuthResponse>, ApiError> {
    let mut vars = Map::new();
    for f in fields {
        vars.insert(f.into(), Value::String(body.required_string(f)?));
    }
    let mut data = run(state, caller, q, Value::Object(vars)).await?;
    let p: Payload = field(&mut data, root)?;
    Ok(Json(auth_response("Login successful", p, true)))
}

/// The second step of signing in, when `/api/auth/login` answered 401
/// `TWO_FACTOR_REQUIRED` (its `details[0].challenge`): that challenge and a code from the
/// authenticator app or a recovery code.
#[utoipa::path(post, path = "/api/auth/login/code", tag = "auth",
    request_body = schemas::LoginCodeBody,
    responses((status = 200, body = AuthResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn login_with_code(
    State(state): State<Arc<AppState>>,
    Anonymous(caller): Anonymous,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AuthResponse>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let q: &str = &ops::LOGIN_WITH_CODE;
    sign_in(
        &state,
        &caller,
        &body,
        q,
        "loginWithCode",
        ["challenge", "code"],
    )
    .await
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/users/profile", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody)))]
pub async fn get_profile(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<Profile>, ApiError> {
    let q: &str = &ops::PROFILE;
    let mut data = run(&state, &caller, q, json!({})).await?;
    let me: Option<Profile> = field(&mut data, "me")?;
    me.map(Json)
        .ok_or_else(|| ApiError::unauthenticated("Authentication required"))
}

/// Updates the caller's profile.
#[utoipa::path(put, path = "/api/users/profile", tag = "users", security(("bearer" = [])),
    request_body = schemas::ProfileBody,
    responses((status = 200, body = ProfileUpdated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn update_profile(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ProfileUpdated>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let mut input = Map::new();
    body.copy_strings(
        &["firstName", "lastName", "currency", "timezone"],
        &mut input,
    )?;
    if let Some(v) = body.amount("monthlyIncome")? {
        input.insert("monthlyIncome".into(), Value::String(v));
    } else if body.is_null("monthlyIncome") {
        input.insert("monthlyIncome".into(), Value::Null);
    }
    let q: &str = &ops::UPDATE_PROFILE;
    let mut data = run(&state, &caller, q, json!({ "input": input })).await?;
    let profile: Profile = field(&mut data, "updateProfile")?;
    Ok(Json(ProfileUpdated {
        message: "Profile updated successfully".into(),
        profile,
    }))
}
