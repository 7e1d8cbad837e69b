//! Who may touch what a household shares, decided in one place for every service.
//!
//! A service holding shared records (budgets, expenses, analytics) asks the users
//! service, on every request, for the caller's role in the household named — with the
//! caller's own access token, so it can only learn about the caller — and checks it
//! against what the operation needs ([`Need`]). Nothing is cached: a member removed or
//! demoted is refused from their next request on. The notifications service, which acts
//! on events and not for a caller, lists a household's members with the service token.

use contract::households::{HouseholdRole, MemberList, Need, Ownership, members_path};
use contract::ids::{HouseholdId, UserId};
use serde_json::json;

use crate::error::AppError;
use crate::events::SERVICE_TOKEN_HEADER;
use crate::money::Currency;
use crate::users::{AccessToken, UserDirectory};

/// The caller's place in a household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub household: HouseholdId,
    pub role: HouseholdRole,
    /// The household's currency: its shared budgets count in it.
    pub currency: Currency,
}

fn unreachable(e: impl std::fmt::Display) -> AppError {
    AppError::internal(anyhow::anyhow!("users subgraph: {e}"))
}

/// The refusal for a household the caller is not (or no longer) a member of: the same
/// as for a household that does not exist, so outsiders learn nothing.
fn not_a_member() -> AppError {
    AppError::not_found("household")
}

impl UserDirectory {
    /// The role of the caller (whose access token is `token`) in `household` and the
    /// household's currency; `None` when the caller is not a member.
    pub async fn membership(
        &self,
        household: &HouseholdId,
        token: &str,
    ) -> Result<Option<Membership>, AppError> {
        let body: serde_json::Value = self
            .http
            .post(self.graphql_url())
            .bearer_auth(token)
            .json(&json!({
                "query": "query($id: ID!) { household(id: $id) { id myRole currency } }",
                "variables": { "id": household.as_str() },
            }))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
            let code = errors[0]["extensions"]["code"].as_str().unwrap_or_default();
            return Err(match code {
                "UNAUTHENTICATED" => AppError::Unauthenticated("unknown user".into()),
                _ => unreachable(format!("household lookup refused: {}", errors[0])),
            });
        }
        let h = &body["data"]["household"];
        if h.is_null() {
            return Ok(None);
        }
        if h["id"].as_str() != Some(household.as_str()) {
            return Err(unreachable("household lookup answered another household"));
        }
        let role = h["myRole"]
            .as_str()
            .and_then(HouseholdRole::parse)
            .ok_or_else(|| unreachable("bad role"))?;
        let currency = h["currency"]
            .as_str()
            .and_then(|c| Currency::parse(c).ok())
            .ok_or_else(|| unreachable("bad household currency"))?;
        Ok(Some(Membership {
            household: household.clone(),
            role,
            currency,
        }))
    }

    /// Every member of `household` with their role, read with the service token;
    /// empty when the household does not exist (any more).
    pub async fn household_members(&self, household: &HouseholdId) -> Result<MemberList, AppError> {
        let token = self
            .service_token
            .as_ref()
            .ok_or_else(|| unreachable("no service token to list household members"))?;
        let response = self
            .http
            .get(self.internal_url(&members_path(household)))
            .header(SERVICE_TOKEN_HEADER, token.expose())
            .send()
            .await
            .map_err(unreachable)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(MemberList {
                household_id: household.clone(),
                members: Vec::new(),
            });
        }
        if !response.status().is_success() {
            return Err(unreachable(format!(
                "household members answered {}",
                response.status()
            )));
        }
        let list: MemberList = response.json().await.map_err(unreachable)?;
        if &list.household_id != household {
            return Err(unreachable("household members of another household"));
        }
        Ok(list)
    }
}

/// The caller and their membership of `household`, refused unless their role meets
/// `need`: `NOT_FOUND` for an outsider (as for no such household), `FORBIDDEN` for a
/// member whose role falls short.
pub async fn authorize(
    ctx: &async_graphql::Context<'_>,
    household: &HouseholdId,
    need: Need,
) -> Result<(UserId, Membership), AppError> {
    let user = crate::auth::caller_id(ctx)?;
    let token = ctx
        .data_opt::<AccessToken>()
        .ok_or_else(AppError::unauthenticated)?;
    let users = crate::server::context_data::<UserDirectory>(ctx)?;
    let membership = users
        .membership(household, &token.0)
        .await?
        .ok_or_else(not_a_member)?;
    if !need.met_by(membership.role) {
        return Err(AppError::Forbidden(need.refusal().into()));
    }
    Ok((user, membership))
}

/// The caller may read what `household` shares; `false` for outsiders and removed
/// members (whom the household does not exist for) and any other refusal of the role.
pub async fn may_read(
    ctx: &async_graphql::Context<'_>,
    household: &HouseholdId,
) -> Result<bool, AppError> {
    match authorize(ctx, household, Need::Read).await {
        Ok(_) => Ok(true),
        Err(AppError::NotFound(_) | AppError::Forbidden(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whose records a list shows: the caller's own, or, with `household`, what is
/// shared with that household (for its members; refused as [`authorize`] refuses).
pub async fn list_owner(
    ctx: &async_graphql::Context<'_>,
    household: Option<&HouseholdId>,
) -> Result<Ownership, AppError> {
    match household {
        None => Ok(Ownership::User(crate::auth::caller_id(ctx)?)),
        Some(h) => {
            authorize(ctx, h, Need::Read).await?;
            Ok(Ownership::Household(h.clone()))
        }
    }
}

/// A household id a client sent, as a validation error of `field` when it is not one.
pub fn household_id(field: &str, text: &str) -> Result<HouseholdId, AppError> {
    HouseholdId::parse(text).map_err(|e| AppError::validation(field, e.to_string()))
}
