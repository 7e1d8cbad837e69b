//! Households in GraphQL: `households`, `household(id)`, invitations, and the
//! mutations that change them. Every resolver takes the caller from the verified token
//! and leaves the decision to the household rules.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use contract::households::HouseholdRole as Role;
use contract::ids::{HouseholdId, InvitationId, UserId};
use kit::AppError;

use crate::domain::household::{Household as HouseholdRecord, Invitation, parse_household_name};
use crate::households::Households;

/// A member's role.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum HouseholdRole {
    /// Everything: invitations, roles, removals, shared budgets.
    Owner,
    /// Adds expenses to shared budgets; reads the shared figures.
    Member,
    /// Reads the shared figures only.
    Viewer,
}

impl From<HouseholdRole> for Role {
    fn from(r: HouseholdRole) -> Role {
        match r {
            HouseholdRole::Owner => Role::Owner,
            HouseholdRole::Member => Role::Member,
            HouseholdRole::Viewer => Role::Viewer,
        }
    }
}

impl From<Role> for HouseholdRole {
    fn from(r: Role) -> HouseholdRole {
        match r {
            Role::Owner => HouseholdRole::Owner,
            Role::Member => HouseholdRole::Member,
            Role::Viewer => HouseholdRole::Viewer,
        }
    }
}

/// Where an invitation stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    Expired,
}

fn household_id(id: &ID) -> Result<HouseholdId, AppError> {
    HouseholdId::parse(id).map_err(|e| AppError::validation("id", e.to_string()))
}

fn invitation_id(id: &ID) -> Result<InvitationId, AppError> {
    InvitationId::parse(id).map_err(|e| AppError::validation("id", e.to_string()))
}

fn user_id(field: &str, id: &ID) -> Result<UserId, AppError> {
    UserId::parse(id).map_err(|e| AppError::validation(field, e.to_string()))
}

/// A household, as one of its members sees it.
pub struct Household {
    record: HouseholdRecord,
    viewer: UserId,
}

/// One member: their name as they gave it, and their role. Also an entity (by
/// household and user), so another subgraph can name who added a shared record; it
/// resolves for the household's members only.
#[derive(SimpleObject)]
pub struct HouseholdMember {
    household_id: ID,
    user_id: ID,
    username: String,
    first_name: Option<String>,
    last_name: Option<String>,
    role: HouseholdRole,
    joined_at: DateTime<Utc>,
}

#[Object]
impl Household {
    async fn id(&self) -> ID {
        ID(self.record.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.record.name
    }
    /// ISO 4217 code: shared budgets count in it.
    async fn currency(&self) -> &str {
        self.record.currency.code()
    }
    /// The caller's role here.
    async fn my_role(&self) -> HouseholdRole {
        self.record
            .role_of(&self.viewer)
            .map(HouseholdRole::from)
            .unwrap_or(HouseholdRole::Viewer)
    }
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<HouseholdMember>> {
        let households = ctx.data::<Households>()?;
        let ids: Vec<UserId> = self
            .record
            .members
            .iter()
            .map(|m| m.user_id.clone())
            .collect();
        let mut users = households.store().users_by_ids(&ids).await?;
        Ok(self
            .record
            .members
            .iter()
            .map(|m| HouseholdMember::of(&self.record, m, users.remove(&m.user_id)))
            .collect())
    }
    /// Open invitations (owners see them; others get an empty list).
    async fn invitations(&self, ctx: &Context<'_>) -> Result<Vec<HouseholdInvitation>> {
        let households = ctx.data::<Households>()?;
        let now = households.now();
        Ok(households
            .invitations_of(&self.viewer, &self.record)
            .await?
            .into_iter()
            .map(|i| HouseholdInvitation::of(i, now))
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }
}

impl HouseholdMember {
    fn of(
        household: &HouseholdRecord,
        m: &crate::domain::household::Member,
        user: Option<crate::domain::User>,
    ) -> HouseholdMember {
        HouseholdMember {
            household_id: ID(household.id.to_string()),
            user_id: ID(m.user_id.to_string()),
            username: user
                .as_ref()
                .map(|u| u.username.as_str().to_string())
                .unwrap_or_default(),
            first_name: user.as_ref().and_then(|u| u.first_name.clone()),
            last_name: user.as_ref().and_then(|u| u.last_name.clone()),
            role: m.role.into(),
            joined_at: m.joined_at,
        }
    }
}

/// An invitation to join a household with a role; open for 7 days.
#[derive(SimpleObject)]
pub struct HouseholdInvitation {
    id: ID,
    household_id: ID,
    household_name: String,
    invitee_id: ID,
    invited_by_id: ID,
    role: HouseholdRole,
    status: InvitationStatus,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl HouseholdInvitation {
    fn of(i: Invitation, now: DateTime<Utc>) -> HouseholdInvitation {
        use crate::domain::household::InvitationStatus as S;
        let status = match i.status_at(now) {
            S::Pending => InvitationStatus::Pending,
            S::Accepted => InvitationStatus::Accepted,
            S::Declined => InvitationStatus::Declined,
            S::Revoked => InvitationStatus::Revoked,
            S::Expired => InvitationStatus::Expired,
        };
        HouseholdInvitation {
            id: ID(i.id.to_string()),
            household_id: ID(i.household_id.to_string()),
            household_name: i.household_name,
            invitee_id: ID(i.invitee.to_string()),
            invited_by_id: ID(i.invited_by.to_string()),
            role: i.role.into(),
            status,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

#[derive(InputObject)]
pub struct CreateHouseholdInput {
    name: String,
    /// ISO 4217 code; shared budgets count in it.
    currency: String,
}

#[derive(Default)]
pub struct HouseholdQuery;

#[Object]
impl HouseholdQuery {
    /// The households the caller belongs to.
    async fn households(&self, ctx: &Context<'_>) -> Result<Option<Vec<Household>>> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        Ok(Some(
            households
                .list(&me)
                .await?
                .into_iter()
                .map(|record| Household {
                    record,
                    viewer: me.clone(),
                })
                .collect(),
        ))
    }

    /// One of the caller's households (null for any other id).
    async fn household(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Household>> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        Ok(households
            .get(&me, &household_id(&id)?)
            .await?
            .map(|record| Household { record, viewer: me }))
    }

    /// Open invitations to the caller.
    async fn household_invitations(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<Vec<HouseholdInvitation>>> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        let now = households.now();
        Ok(Some(
            households
                .invitations_to(&me)
                .await?
                .into_iter()
                .map(|i| HouseholdInvitation::of(i, now))
                .collect(),
        ))
    }

    /// Entity resolution for `Household`: members only; anyone else gets null.
    #[graphql(entity)]
    async fn find_household_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Household>> {
        let me = kit::auth::caller_id(ctx)?;
        let Ok(id) = HouseholdId::parse(&id) else {
            return Ok(None);
        };
        let households = ctx.data::<Households>()?;
        Ok(households
            .get(&me, &id)
            .await?
            .map(|record| Household { record, viewer: me }))
    }

    /// Entity resolution for `HouseholdMember` (a member's name on a shared record):
    /// for the household's members only, and only while the person is a member; anyone
    /// else gets null.
    #[graphql(entity)]
    async fn find_household_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(key)] household_id: ID,
        #[graphql(key)] user_id: ID,
    ) -> Result<Option<HouseholdMember>> {
        let me = kit::auth::caller_id(ctx)?;
        let (Ok(hid), Ok(uid)) = (HouseholdId::parse(&household_id), UserId::parse(&user_id))
        else {
            return Ok(None);
        };
        let households = ctx.data::<Households>()?;
        let Some(record) = households.get(&me, &hid).await? else {
            return Ok(None);
        };
        let Some(m) = record.members.iter().find(|m| m.user_id == uid) else {
            return Ok(None);
        };
        let mut users = households
            .store()
            .users_by_ids(std::slice::from_ref(&uid))
            .await?;
        Ok(Some(HouseholdMember::of(&record, m, users.remove(&uid))))
    }
}

#[derive(Default)]
pub struct HouseholdMutation;

#[Object]
impl HouseholdMutation {
    /// A new household with the caller as its owner.
    async fn create_household(
        &self,
        ctx: &Context<'_>,
        input: CreateHouseholdInput,
    ) -> Result<Household> {
        let me = kit::auth::caller_id(ctx)?;
        let name = parse_household_name(&input.name)?;
        let currency = crate::domain::parse_currency(&input.currency)?;
        let households = ctx.data::<Households>()?;
        let record = households.create(&me, name, currency).await?;
        Ok(Household { record, viewer: me })
    }

    /// Invites the person `user` names (a username or an email). Owners only.
    async fn invite_to_household(
        &self,
        ctx: &Context<'_>,
        household_id: ID,
        user: String,
        #[graphql(default_with = "HouseholdRole::Member")] role: HouseholdRole,
    ) -> Result<HouseholdInvitation> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        let id = self::household_id(&household_id)?;
        let i = households.invite(&me, &id, &user, role.into()).await?;
        Ok(HouseholdInvitation::of(i, households.now()))
    }

    /// Joins the household of an invitation to the caller.
    async fn accept_household_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<Household> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        let record = households.accept(&me, &invitation_id(&id)?).await?;
        Ok(Household { record, viewer: me })
    }

    async fn decline_household_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        Ok(households.decline(&me, &invitation_id(&id)?).await?)
    }

    /// Withdraws an open invitation. Owners only.
    async fn revoke_household_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        Ok(households.revoke(&me, &invitation_id(&id)?).await?)
    }

    /// Leaves a household (the last owner makes someone else an owner first, unless
    /// they are the last member).
    async fn leave_household(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        Ok(households.leave(&me, &household_id(&id)?).await?)
    }

    /// Gives a member a role. Owners only; a household keeps at least one owner.
    async fn change_household_role(
        &self,
        ctx: &Context<'_>,
        household_id: ID,
        user_id: ID,
        role: HouseholdRole,
    ) -> Result<Household> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        let record = households
            .change_role(
                &me,
                &self::household_id(&household_id)?,
                &self::user_id("userId", &user_id)?,
                role.into(),
            )
            .await?;
        Ok(Household { record, viewer: me })
    }

    /// Removes a member. Owners only.
    async fn remove_household_member(
        &self,
        ctx: &Context<'_>,
        household_id: ID,
        user_id: ID,
    ) -> Result<Household> {
        let me = kit::auth::caller_id(ctx)?;
        let households = ctx.data::<Households>()?;
        let record = households
            .remove(
                &me,
                &self::household_id(&household_id)?,
                &self::user_id("userId", &user_id)?,
            )
            .await?;
        Ok(Household { record, viewer: me })
    }
}
