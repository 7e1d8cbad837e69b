//! `/api/households*`: households shared by several people — their members and roles,
//! and invitations to join them. Who may do what is decided by the users service (owners
//! manage; members and viewers read; anyone else finds no household); the routes only
//! read the request, run the operation and write the answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use contract::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::call::{Authed, Caller, field, run};
use super::error::{ApiError, ErrorBody};
use super::input::Body;
use super::ops;
use super::shapes::MessageResponse;
use super::{body_bytes, schemas};
use crate::state::AppState;

/// The roles, as the GraphQL enum spells them (requests may use lower case).
const ROLES: &[&str] = &["OWNER", "MEMBER", "VIEWER"];

/// Longest username or email an invitation may name (an email's longest form).
const MAX_LOGIN_LEN: usize = 254;

macro_rules! invitation_fields {
    () => {
        "id householdId householdName inviteeId invitedById role status createdAt expiresAt"
    };
}

/// The GraphQL selection that fills [`HouseholdInvitation`].
pub(super) const INVITATION_FIELDS: &str = invitation_fields!();

/// The GraphQL selection that fills [`Household`].
pub(super) const HOUSEHOLD_FIELDS: &str = concat!(
    "id name currency myRole members { userId username firstName lastName role joinedAt } invitations { ",
    invitation_fields!(),
    " } createdAt"
);

/// A household as one of its members sees it: the GraphQL field names plus `_id`
/// (= `id`), as every resource of this API has.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Household {
    #[serde(rename = "_id", default)]
    pub legacy_id: String,
    pub id: String,
    pub name: String,
    /// ISO 4217 code; shared budgets count in it.
    pub currency: String,
    /// The caller's role here: `OWNER`, `MEMBER` or `VIEWER`.
    pub my_role: String,
    pub members: Vec<HouseholdMember>,
    /// Open invitations (owners see them; other members get an empty list).
    pub invitations: Vec<HouseholdInvitation>,
    pub created_at: String,
}

impl Household {
    fn normalised(mut self) -> Self {
        self.legacy_id = self.id.clone();
        self.invitations = self
            .invitations
            .into_iter()
            .map(HouseholdInvitation::normalised)
            .collect();
        self
    }
}

/// One member: their name as they gave it, and their role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdMember {
    pub user_id: String,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `OWNER`, `MEMBER` or `VIEWER`.
    pub role: String,
    pub joined_at: String,
}

/// An invitation to join a household with a role; open for 7 days.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdInvitation {
    #[serde(rename = "_id", default)]
    pub legacy_id: String,
    pub id: String,
    pub household_id: String,
    pub household_name: String,
    /// The invited person's user id.
    pub invitee_id: String,
    pub invited_by_id: String,
    /// The role the invitee gets on accepting: `OWNER`, `MEMBER` or `VIEWER`.
    pub role: String,
    /// `PENDING`, `ACCEPTED`, `DECLINED`, `REVOKED` or `EXPIRED`.
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
}

impl HouseholdInvitation {
    fn normalised(mut self) -> Self {
        self.legacy_id = self.id.clone();
        self
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HouseholdList {
    /// The households the caller belongs to.
    pub households: Vec<Household>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    /// Open invitations to the caller.
    pub invitations: Vec<HouseholdInvitation>,
}

/// The ids in a household route's path (`{id}`, and `{userId}` where there is one).
/// Each must be an id as the product issues them (a UUID): anything else is a 400 that
/// names the path parameter, before any service is asked.
pub struct HouseholdPath(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for HouseholdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = match Path::<BTreeMap<String, String>>::from_request_parts(parts, state).await
        {
            Ok(Path(params)) => params,
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let text = e.body_text();
                let name = match e.kind() {
                    axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    _ => "id".to_owned(),
                };
                return Err(ApiError::invalid(&name, text));
            }
            Err(rejection) => return Err(ApiError::invalid("id", rejection.body_text())),
        };
        // In name order (`id` before `userId`): the same field is named every time.
        for (name, value) in &params {
            if !contract::ids::is_valid_id(value) {
                return Err(ApiError::invalid(name, "must be an id (a UUID)"));
            }
        }
        Ok(Self(params))
    }
}

impl HouseholdPath {
    fn get(&self, name: &str) -> Result<&str, ApiError> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::invalid(name, "is required"))
    }
}

async fn household_op(
    state: &Arc<AppState>,
    caller: &Caller,
    q: &str,
    root: &str,
    variables: Value,
) -> Result<Household, ApiError> {
    let mut data = run(state, caller, q, variables).await?;
    let h: Household = field(&mut data, root)?;
    Ok(h.normalised())
}

/// Runs a mutation answering a Boolean; `false` (a change that lost a race with
/// another) is a 409.
async fn boolean_op(
    state: &Arc<AppState>,
    caller: &Caller,
    q: &str,
    root: &str,
    id: &str,
    done: &str,
) -> Result<Json<MessageResponse>, ApiError> {
    let mut data = run(state, caller, q, json!({ "id": id })).await?;
    if field::<bool>(&mut data, root)? {
        Ok(Json(MessageResponse {
            message: done.to_owned(),
        }))
    } else {
        Err(ApiError::coded(
            ErrorCode::Conflict,
            "The invitation is no longer open",
        ))
    }
}

/// The households the caller belongs to.
#[utoipa::path(get, path = "/api/households", tag = "households", security(("bearer" = [])),
    responses((status = 200, body = HouseholdList, links(
            ("get" = (operation_ref = "#/paths/~1api~1households~1{id}/get", parameters(("id" = "$response.body#/households/0/id")))))),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<HouseholdList>, ApiError> {
    let q: &str = &ops::HOUSEHOLDS;
    let mut data = run(&state, &caller, q, json!({})).await?;
    let households: Option<Vec<Household>> = field(&mut data, "households")?;
    Ok(Json(HouseholdList {
        households: households
            .unwrap_or_default()
            .into_iter()
            .map(Household::normalised)
            .collect(),
    }))
}

/// Creates a household with the caller as its owner.
#[utoipa::path(post, path = "/api/households", tag = "households", security(("bearer" = [])),
    request_body = schemas::HouseholdBody,
    responses((status = 201, body = Household, links(
            ("get" = (operation_ref = "#/paths/~1api~1households~1{id}/get", parameters(("id" = "$response.body#/id")))),
            ("invite" = (operation_ref = "#/paths/~1api~1households~1{id}~1invitations/post", parameters(("id" = "$response.body#/id")))),
            ("leave" = (operation_ref = "#/paths/~1api~1households~1{id}~1leave/post", parameters(("id" = "$response.body#/id")))),
            ("changeRole" = (operation_ref = "#/paths/~1api~1households~1{id}~1members~1{userId}/put",
                parameters(("id" = "$response.body#/id"), ("userId" = "$response.body#/members/0/userId")))),
            ("removeMember" = (operation_ref = "#/paths/~1api~1households~1{id}~1members~1{userId}/delete",
                parameters(("id" = "$response.body#/id"), ("userId" = "$response.body#/members/0/userId")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "The caller already belongs to the most households one person may (`LIMIT_REACHED`)", body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Household>), ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let input = json!({
        "name": body.required_string("name")?,
        "currency": body.required_string("currency")?,
    });
    let q: &str = &ops::CREATE_HOUSEHOLD;
    let h = household_op(
        &state,
        &caller,
        q,
        "createHousehold",
        json!({ "input": input }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(h)))
}

/// One of the caller's households, with its members (and, for owners, its open
/// invitations). Anyone who is not a member gets a 404, as for no household.
#[utoipa::path(get, path = "/api/households/{id}", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    responses((status = 200, body = Household), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
) -> Result<Json<Household>, ApiError> {
    let q: &str = &ops::HOUSEHOLD;
    let mut data = run(&state, &caller, q, json!({ "id": path.get("id")? })).await?;
    let h: Option<Household> = field(&mut data, "household")?;
    h.map(|h| Json(h.normalised()))
        .ok_or_else(|| ApiError::not_found("Household not found"))
}

/// Open invitations to the caller.
#[utoipa::path(get, path = "/api/households/invitations", tag = "households", security(("bearer" = [])),
    responses((status = 200, body = InvitationList, links(
            ("accept" = (operation_ref = "#/paths/~1api~1households~1invitations~1{id}~1accept/post", parameters(("id" = "$response.body#/invitations/0/id")))),
            ("decline" = (operation_ref = "#/paths/~1api~1households~1invitations~1{id}~1decline/post", parameters(("id" = "$response.body#/invitations/0/id")))))),
        (status = 401, body = ErrorBody)))]
pub async fn invitations(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<InvitationList>, ApiError> {
    let q: &str = &ops::HOUSEHOLD_INVITATIONS;
    let mut data = run(&state, &caller, q, json!({})).await?;
    let list: Option<Vec<HouseholdInvitation>> = field(&mut data, "householdInvitations")?;
    Ok(Json(InvitationList {
        invitations: list
            .unwrap_or_default()
            .into_iter()
            .map(HouseholdInvitation::normalised)
            .collect(),
    }))
}

/// Invites the person `user` names (a username or an email) with a role (default
/// `member`). Owners only.
#[utoipa::path(post, path = "/api/households/{id}/invitations", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")), request_body = schemas::InvitationBody,
    responses((status = 201, body = HouseholdInvitation, links(
            ("revoke" = (operation_ref = "#/paths/~1api~1households~1invitations~1{id}/delete", parameters(("id" = "$response.body#/id")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "The caller is a member but not an owner of the household (or the legacy `user-id` header names another user than the token)", body = ErrorBody),
        (status = 404, description = "No such household of the caller's, or no user with this username or email", body = ErrorBody),
        (status = 409, description = "The person is already a member or already invited, or the household has the most open invitations it may (`LIMIT_REACHED`)", body = ErrorBody)))]
pub async fn invite(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<HouseholdInvitation>), ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let user = body.required_string("user")?;
    if user.chars().count() > MAX_LOGIN_LEN {
        return Err(ApiError::invalid(
            "user",
            format!("must be at most {MAX_LOGIN_LEN} characters"),
        ));
    }
    let role = body
        .enum_value("role", ROLES)?
        .unwrap_or_else(|| "MEMBER".to_owned());
    let q: &str = &ops::INVITE_TO_HOUSEHOLD;
    let vars = json!({ "householdId": path.get("id")?, "user": user.trim(), "role": role });
    let mut data = run(&state, &caller, q, vars).await?;
    let i: HouseholdInvitation = field(&mut data, "inviteToHousehold")?;
    Ok((StatusCode::CREATED, Json(i.normalised())))
}

/// Accepts an invitation to the caller: they join its household with its role.
#[utoipa::path(post, path = "/api/households/invitations/{id}/accept", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    responses((status = 200, body = Household),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such invitation to the caller", body = ErrorBody),
        (status = 409, description = "The invitation is no longer open, or the household or the caller is at a limit (`LIMIT_REACHED`)", body = ErrorBody)))]
pub async fn accept(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
) -> Result<Json<Household>, ApiError> {
    let q: &str = &ops::ACCEPT_HOUSEHOLD_INVITATION;
    let h = household_op(
        &state,
        &caller,
        q,
        "acceptHouseholdInvitation",
        json!({ "id": path.get("id")? }),
    )
    .await?;
    Ok(Json(h))
}

/// Declines an invitation to the caller.
#[utoipa::path(post, path = "/api/households/invitations/{id}/decline", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    responses((status = 200, body = MessageResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such invitation to the caller", body = ErrorBody),
        (status = 409, description = "The invitation is no longer open", body = ErrorBody)))]
pub async fn decline(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
) -> Result<Json<MessageResponse>, ApiError> {
    let q: &str = &ops::DECLINE_HOUSEHOLD_INVITATION;
    boolean_op(
        &state,
        &caller,
        q,
        "declineHouseholdInvitation",
        path.get("id")?,
        "Invitation declined",
    )
    .await
}

/// Withdraws an open invitation. Owners of its household only.
#[utoipa::path(delete, path = "/api/households/invitations/{id}", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    responses((status = 200, body = MessageResponse),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The caller is a member but not an owner of the invitation's household (or the legacy `user-id` header names another user than the token)", body = ErrorBody),
        (status = 404, description = "No such invitation of a household of the caller's", body = ErrorBody),
        (status = 409, description = "The invitation is no longer open", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
) -> Result<Json<MessageResponse>, ApiError> {
    let q: &str = &ops::REVOKE_HOUSEHOLD_INVITATION;
    boolean_op(
        &state,
        &caller,
        q,
        "revokeHouseholdInvitation",
        path.get("id")?,
        "Invitation revoked",
    )
    .await
}

/// The caller leaves a household. The last owner makes someone else an owner first,
/// unless they are the last member (the household then ends).
#[utoipa::path(post, path = "/api/households/{id}/leave", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    responses((status = 200, body = MessageResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The caller is the last owner and others are still members", body = ErrorBody)))]
pub async fn leave(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
) -> Result<Json<MessageResponse>, ApiError> {
    let q: &str = &ops::LEAVE_HOUSEHOLD;
    let mut data = run(&state, &caller, q, json!({ "id": path.get("id")? })).await?;
    // The service answers true or an error.
    let _: bool = field(&mut data, "leaveHousehold")?;
    Ok(Json(MessageResponse {
        message: "You left the household".to_owned(),
    }))
}

/// Gives a member a role. Owners only; a household keeps at least one owner.
#[utoipa::path(put, path = "/api/households/{id}/members/{userId}", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)"), ("userId" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    request_body = schemas::RoleBody,
    responses((status = 200, body = Household),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "The caller is a member but not an owner of the household (or the legacy `user-id` header names another user than the token)", body = ErrorBody),
        (status = 404, description = "No such household of the caller's, or no such member of it", body = ErrorBody),
        (status = 409, description = "The change would leave the household without an owner", body = ErrorBody)))]
pub async fn change_role(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Household>, ApiError> {
    let body = Body::parse(&headers, &body_bytes(body)?)?;
    let role = body
        .enum_value("role", ROLES)?
        .ok_or_else(|| ApiError::invalid("role", "is required"))?;
    let q: &str = &ops::CHANGE_HOUSEHOLD_ROLE;
    let vars =
        json!({ "householdId": path.get("id")?, "userId": path.get("userId")?, "role": role });
    let h = household_op(&state, &caller, q, "changeHouseholdRole", vars).await?;
    Ok(Json(h))
}

/// Removes a member (to leave a household oneself, `POST /api/households/{id}/leave`).
/// Owners only; answers the household as it is now.
#[utoipa::path(delete, path = "/api/households/{id}/members/{userId}", tag = "households", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)"), ("userId" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "An id (a UUID)")),
    responses((status = 200, body = Household),
        (status = 400, description = "`userId` is the caller's own (they leave instead), or an id is not an id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The caller is a member but not an owner of the household (or the legacy `user-id` header names another user than the token)", body = ErrorBody),
        (status = 404, description = "No such household of the caller's, or no such member of it", body = ErrorBody),
        (status = 409, description = "The household was being changed by someone else; try again", body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    path: HouseholdPath,
) -> Result<Json<Household>, ApiError> {
    let q: &str = &ops::REMOVE_HOUSEHOLD_MEMBER;
    let vars = json!({ "householdId": path.get("id")?, "userId": path.get("userId")? });
    let h = household_op(&state, &caller, q, "removeHouseholdMember", vars).await?;
    Ok(Json(h))
}
