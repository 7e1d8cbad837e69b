//! The household operations: create, invite (by username or email), accept, decline,
//! revoke, leave, change roles and remove members. Who may do what is decided by the
//! domain's rules (`domain::household`); this layer reads, applies and writes.

use contract::households::HouseholdRole;
use contract::ids::{HouseholdId, InvitationId, UserId};
use kit::clock::Clock;
use kit::{AppError, AppResult, Currency, ErrorCode};

use crate::domain::household::{
    Household, INVITATION_TTL, Invitation, InvitationStatus, MAX_HOUSEHOLDS,
    MAX_PENDING_INVITATIONS,
};
use crate::store::Store;

/// Attempts at a change that lost a race with another change of the same household.
const ATTEMPTS: usize = 5;

#[derive(Clone)]
pub struct Households {
    store: Store,
    clock: Clock,
}

fn limit(message: String) -> AppError {
    AppError::Refused {
        code: ErrorCode::LimitReached,
        message,
        field: None,
    }
}

fn no_invitation() -> AppError {
    AppError::not_found("invitation")
}

impl Households {
    pub fn new(store: Store, clock: Clock) -> Households {
        Households { store, clock }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    async fn check_room_for(&self, user: &UserId) -> AppResult<()> {
        if self.store.households_of(user).await?.len() >= MAX_HOUSEHOLDS {
            return Err(limit(format!(
                "a person belongs to at most {MAX_HOUSEHOLDS} households"
            )));
        }
        Ok(())
    }

    pub async fn create(
        &self,
        owner: &UserId,
        name: String,
        currency: Currency,
    ) -> AppResult<Household> {
        self.check_room_for(owner).await?;
        let h = Household::new(name, currency, owner.clone(), self.clock.now());
        self.store.insert_household(&h).await?;
        tracing::info!(household = %h.id, user_id = %owner, "household created");
        Ok(h)
    }

    pub async fn list(&self, user: &UserId) -> AppResult<Vec<Household>> {
        self.store.households_of(user).await
    }

    /// The household, if `user` is a member (outsiders: `None`, as for no household).
    pub async fn get(&self, user: &UserId, id: &HouseholdId) -> AppResult<Option<Household>> {
        Ok(self
            .store
            .household(id)
            .await?
            .filter(|h| h.role_of(user).is_some()))
    }

    /// A member's household or `NOT_FOUND`.
    async fn member_view(&self, user: &UserId, id: &HouseholdId) -> AppResult<Household> {
        self.get(user, id)
            .await?
            .ok_or_else(|| AppError::not_found("household"))
    }

    /// Applies `change` to the household and writes it, reading again when another
    /// change got in first. A change that empties the household deletes it.
    async fn update<T>(
        &self,
        id: &HouseholdId,
        mut change: impl FnMut(&mut Household) -> AppResult<T>,
    ) -> AppResult<(Household, T)> {
        for _ in 0..ATTEMPTS {
            let mut h = self
                .store
                .household(id)
                .await?
                .ok_or_else(|| AppError::not_found("household"))?;
            let out = change(&mut h)?;
            let written = if h.members.is_empty() {
                self.store.delete_household(&h).await?
            } else {
                self.store.save_household(&h).await?
            };
            if written {
                h.version += 1;
                return Ok((h, out));
            }
        }
        Err(AppError::conflict(
            "the household is being changed by someone else; try again",
            None,
        ))
    }

    /// Invites the person a username or an email names, with `role`. Owners only.
    pub async fn invite(
        &self,
        actor: &UserId,
        id: &HouseholdId,
        who: &str,
        role: HouseholdRole,
    ) -> AppResult<Invitation> {
        let h = self.member_view(actor, id).await?;
        h.manager(actor)?;
        let invitee = self
            .store
            .user_by_login(who)
            .await?
            .ok_or_else(|| AppError::not_found("user with this username or email"))?;
        if h.role_of(&invitee.id).is_some() {
            return Err(AppError::conflict(
                "this person is already a member",
                Some("user"),
            ));
        }
        let now = self.clock.now();
        let open = self.store.open_invitations(Some(id), None, now).await?;
        if open.iter().any(|i| i.invitee == invitee.id) {
            return Err(AppError::conflict(
                "this person already has an open invitation",
                Some("user"),
            ));
        }
        if open.len() >= MAX_PENDING_INVITATIONS {
            return Err(limit(format!(
                "a household has at most {MAX_PENDING_INVITATIONS} open invitations"
            )));
        }
        let invitation = Invitation {
            id: InvitationId::new(),
            household_id: h.id.clone(),
            household_name: h.name.clone(),
            invitee: invitee.id,
            invited_by: actor.clone(),
            role,
            status: InvitationStatus::Pending,
            created_at: now,
            expires_at: now + INVITATION_TTL,
        };
        self.store.insert_invitation(&invitation).await?;
        Ok(invitation)
    }

    /// Open invitations to `user`.
    pub async fn invitations_to(&self, user: &UserId) -> AppResult<Vec<Invitation>> {
        self.store
            .open_invitations(None, Some(user), self.clock.now())
            .await
    }

    /// Open invitations of a household (owners see them; others see none).
    pub async fn invitations_of(
        &self,
        viewer: &UserId,
        h: &Household,
    ) -> AppResult<Vec<Invitation>> {
        if !h.role_of(viewer).is_some_and(HouseholdRole::can_manage) {
            return Ok(Vec::new());
        }
        self.store
            .open_invitations(Some(&h.id), None, self.clock.now())
            .await
    }

    /// The invitation, if it is addressed to `user`.
    async fn mine(&self, user: &UserId, id: &InvitationId) -> AppResult<Invitation> {
        self.store
            .invitation(id)
            .await?
            .filter(|i| &i.invitee == user)
            .ok_or_else(no_invitation)
    }

    fn still_open(i: &Invitation, now: chrono::DateTime<chrono::Utc>) -> AppResult<()> {
        match i.status_at(now) {
            InvitationStatus::Pending => Ok(()),
            other => Err(AppError::conflict(
                format!("the invitation is {}", other.as_str().to_lowercase()),
                None,
            )),
        }
    }

    pub async fn accept(&self, user: &UserId, id: &InvitationId) -> AppResult<Household> {
        let now = self.clock.now();
        let invitation = self.mine(user, id).await?;
        Self::still_open(&invitation, now)?;
        self.check_room_for(user).await?;
        if !self
            .store
            .settle_invitation(id, InvitationStatus::Accepted, now)
            .await?
        {
            return Err(AppError::conflict("the invitation is no longer open", None));
        }
        let (h, ()) = self
            .update(&invitation.household_id, |h| {
                h.join(user, invitation.role, now)
            })
            .await?;
        tracing::info!(household = %h.id, user_id = %user, "joined a household");
        Ok(h)
    }

    pub async fn decline(&self, user: &UserId, id: &InvitationId) -> AppResult<bool> {
        let now = self.clock.now();
        let invitation = self.mine(user, id).await?;
        Self::still_open(&invitation, now)?;
        self.store
            .settle_invitation(id, InvitationStatus::Declined, now)
            .await
    }

    /// Withdraws an open invitation. Owners of its household only.
    pub async fn revoke(&self, actor: &UserId, id: &InvitationId) -> AppResult<bool> {
        let now = self.clock.now();
        let invitation = self.store.invitation(id).await?.ok_or_else(no_invitation)?;
        let h = self
            .get(actor, &invitation.household_id)
            .await?
            .ok_or_else(no_invitation)?;
        h.manager(actor)?;
        Self::still_open(&invitation, now)?;
        self.store
            .settle_invitation(id, InvitationStatus::Revoked, now)
            .await
    }

    pub async fn leave(&self, user: &UserId, id: &HouseholdId) -> AppResult<bool> {
        self.member_view(user, id).await?;
        self.update(id, |h| h.leave(user)).await?;
        tracing::info!(household = %id, user_id = %user, "left a household");
        Ok(true)
    }

    pub async fn change_role(
        &self,
        actor: &UserId,
        id: &HouseholdId,
        target: &UserId,
        role: HouseholdRole,
    ) -> AppResult<Household> {
        self.member_view(actor, id).await?;
        Ok(self
            .update(id, |h| h.change_role(actor, target, role))
            .await?
            .0)
    }

    pub async fn remove(
        &self,
        actor: &UserId,
        id: &HouseholdId,
        target: &UserId,
    ) -> AppResult<Household> {
        self.member_view(actor, id).await?;
        let (h, ()) = self.update(id, |h| h.remove(actor, target)).await?;
        tracing::info!(household = %id, user_id = %target, "removed from a household");
        Ok(h)
    }
}

/// The internal route the other services list a household's members on
/// (`GET /internal/households/{id}/members`, service token only): the notifications
/// service reaches every member of a household with its shared budget's alerts.
pub fn internal_routes(households: Households, token: kit::config::Secret) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/internal/households/{id}/members", get(members_route))
        .with_state(std::sync::Arc::new((households, token)))
}

async fn members_route(
    axum::extract::State(state): axum::extract::State<
        std::sync::Arc<(Households, kit::config::Secret)>,
    >,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use contract::households::{MemberEntry, MemberList};
    use kit::events::internal_answer as answer;
    let (households, token) = &*state;
    if !kit::events::has_service_token(&headers, token) {
        return kit::events::service_credential_required();
    }
    let Ok(id) = HouseholdId::parse(&id) else {
        return answer(StatusCode::NOT_FOUND, "NOT_FOUND", "household not found");
    };
    match households.store.household(&id).await {
        Ok(Some(h)) => axum::Json(MemberList {
            household_id: h.id,
            members: h
                .members
                .into_iter()
                .map(|m| MemberEntry {
                    user_id: m.user_id,
                    role: m.role,
                })
                .collect(),
        })
        .into_response(),
        Ok(None) => answer(StatusCode::NOT_FOUND, "NOT_FOUND", "household not found"),
        Err(e) => {
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(e)), "household members");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL",
                "the household could not be read",
            )
        }
    }
}
