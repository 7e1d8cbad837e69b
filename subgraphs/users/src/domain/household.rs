//! Households: a name, a currency and members with roles; invitations to join. The rules
//! of who may change what are here, pure, so they are tested without a database.

use chrono::{DateTime, Utc};
use contract::households::HouseholdRole;
use contract::ids::{HouseholdId, InvitationId, UserId};
use kit::{AppError, Currency};

/// Invitations expire after this long.
pub const INVITATION_TTL: chrono::Duration = chrono::Duration::days(7);
/// Most members of one household.
pub const MAX_MEMBERS: usize = 20;
/// Most households one person belongs to.
pub const MAX_HOUSEHOLDS: usize = 10;
/// Most open invitations of one household.
pub const MAX_PENDING_INVITATIONS: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: UserId,
    pub role: HouseholdRole,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Household {
    pub id: HouseholdId,
    pub name: String,
    pub currency: Currency,
    pub members: Vec<Member>,
    pub created_at: DateTime<Utc>,
    /// Bumped by every change (optimistic concurrency).
    pub version: i64,
}

/// The answer to anyone who is not a member: the household does not exist for them.
fn unknown() -> AppError {
    AppError::not_found("household")
}

/// A household's name: trimmed, 1 to 64 characters, no control characters.
pub fn parse_household_name(input: &str) -> Result<String, AppError> {
    let s = input.trim();
    let n = s.chars().count();
    if n == 0 || n > 64 || s.chars().any(char::is_control) {
        return Err(AppError::validation(
            "name",
            "must be 1 to 64 characters, without control characters",
        ));
    }
    Ok(s.to_string())
}

impl Household {
    pub fn new(name: String, currency: Currency, owner: UserId, now: DateTime<Utc>) -> Household {
        Household {
            id: HouseholdId::new(),
            name,
            currency,
            members: vec![Member {
                user_id: owner,
                role: HouseholdRole::Owner,
                joined_at: now,
            }],
            created_at: now,
            version: 0,
        }
    }

    pub fn role_of(&self, user: &UserId) -> Option<HouseholdRole> {
        self.members
            .iter()
            .find(|m| &m.user_id == user)
            .map(|m| m.role)
    }

    /// The caller's role, if they may read the household (any member); outsiders get
    /// `NOT_FOUND`, as for a household that does not exist.
    pub fn reader(&self, user: &UserId) -> Result<HouseholdRole, AppError> {
        self.role_of(user).ok_or_else(unknown)
    }

    /// The caller's role, if it lets them manage the household (owners); other members
    /// get `FORBIDDEN`, outsiders `NOT_FOUND`.
    pub fn manager(&self, user: &UserId) -> Result<HouseholdRole, AppError> {
        let role = self.reader(user)?;
        if role.can_manage() {
            Ok(role)
        } else {
            Err(AppError::Forbidden(
                "only an owner of the household may do this".into(),
            ))
        }
    }

    fn owners(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.role == HouseholdRole::Owner)
            .count()
    }

    fn last_owner_refusal() -> AppError {
        AppError::conflict(
            "a household keeps at least one owner; make someone else an owner first",
            Some("role"),
        )
    }

    /// `actor` (an owner) gives `target` (a member) `role`; the last owner cannot step
    /// down.
    pub fn change_role(
        &mut self,
        actor: &UserId,
        target: &UserId,
        role: HouseholdRole,
    ) -> Result<(), AppError> {
        self.manager(actor)?;
        let current = self
            .role_of(target)
            .ok_or_else(|| AppError::not_found("member"))?;
        if current == HouseholdRole::Owner && role != HouseholdRole::Owner && self.owners() == 1 {
            return Err(Self::last_owner_refusal());
        }
        if let Some(m) = self.members.iter_mut().find(|m| &m.user_id == target) {
            m.role = role;
        }
        Ok(())
    }

    /// `actor` (an owner) removes `target`; an owner cannot remove themselves this way
    /// (they leave).
    pub fn remove(&mut self, actor: &UserId, target: &UserId) -> Result<(), AppError> {
        self.manager(actor)?;
        if actor == target {
            return Err(AppError::validation(
                "userId",
                "to leave a household, use leaveHousehold",
            ));
        }
        self.role_of(target)
            .ok_or_else(|| AppError::not_found("member"))?;
        self.members.retain(|m| &m.user_id != target);
        Ok(())
    }

    /// `user` leaves. The last owner may leave only as the last member (the household
    /// then ends); otherwise they make someone else an owner first. True when the
    /// household is left empty.
    pub fn leave(&mut self, user: &UserId) -> Result<bool, AppError> {
        let role = self.reader(user)?;
        if role == HouseholdRole::Owner && self.owners() == 1 && self.members.len() > 1 {
            return Err(Self::last_owner_refusal());
        }
        self.members.retain(|m| &m.user_id != user);
        Ok(self.members.is_empty())
    }

    /// Adds `user` with `role` (accepting an invitation).
    pub fn join(
        &mut self,
        user: &UserId,
        role: HouseholdRole,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        if self.role_of(user).is_some() {
            return Ok(());
        }
        if self.members.len() >= MAX_MEMBERS {
            return Err(AppError::Refused {
                code: kit::ErrorCode::LimitReached,
                message: format!("a household has at most {MAX_MEMBERS} members"),
                field: None,
            });
        }
        self.members.push(Member {
            user_id: user.clone(),
            role,
            joined_at: now,
        });
        Ok(())
    }
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    Expired,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "PENDING",
            InvitationStatus::Accepted => "ACCEPTED",
            InvitationStatus::Declined => "DECLINED",
            InvitationStatus::Revoked => "REVOKED",
            InvitationStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(text: &str) -> Option<InvitationStatus> {
        [
            InvitationStatus::Pending,
            InvitationStatus::Accepted,
            InvitationStatus::Declined,
            InvitationStatus::Revoked,
            InvitationStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub id: InvitationId,
    pub household_id: HouseholdId,
    pub household_name: String,
    pub invitee: UserId,
    pub invited_by: UserId,
    pub role: HouseholdRole,
    /// As stored: `PENDING` past `expires_at` reads as [`InvitationStatus::Expired`]
    /// through [`Invitation::status_at`].
    pub status: InvitationStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Invitation {
    pub fn status_at(&self, now: DateTime<Utc>) -> InvitationStatus {
        if self.status == InvitationStatus::Pending && self.expires_at <= now {
            InvitationStatus::Expired
        } else {
            self.status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn user(n: &str) -> UserId {
        UserId::from_trusted(n)
    }

    fn house() -> Household {
        let mut h = Household::new("Home".into(), Currency::USD, user("o"), at());
        h.join(&user("m"), HouseholdRole::Member, at()).unwrap();
        h.join(&user("v"), HouseholdRole::Viewer, at()).unwrap();
        h
    }

    #[test]
    fn only_owners_manage_and_outsiders_see_nothing() {
        let h = house();
        assert!(h.manager(&user("o")).is_ok());
        assert_eq!(
            h.manager(&user("m")).unwrap_err().code(),
            kit::ErrorCode::Forbidden
        );
        assert_eq!(
            h.manager(&user("v")).unwrap_err().code(),
            kit::ErrorCode::Forbidden
        );
        assert_eq!(
            h.reader(&user("x")).unwrap_err().code(),
            kit::ErrorCode::NotFound
        );
        assert_eq!(h.reader(&user("v")).unwrap(), HouseholdRole::Viewer);
    }

    #[test]
    fn a_household_always_keeps_an_owner() {
        let mut h = house();
        let e = h
            .change_role(&user("o"), &user("o"), HouseholdRole::Member)
            .unwrap_err();
        assert_eq!(e.code(), kit::ErrorCode::Conflict);
        assert_eq!(
            h.leave(&user("o")).unwrap_err().code(),
            kit::ErrorCode::Conflict
        );
        h.change_role(&user("o"), &user("m"), HouseholdRole::Owner)
            .unwrap();
        assert!(!h.leave(&user("o")).unwrap());
        assert_eq!(h.role_of(&user("o")), None);
        assert_eq!(h.role_of(&user("m")), Some(HouseholdRole::Owner));
        // A member cannot promote themselves.
        let e = h
            .change_role(&user("v"), &user("v"), HouseholdRole::Owner)
            .unwrap_err();
        assert_eq!(e.code(), kit::ErrorCode::Forbidden);
    }

    #[test]
    fn removing_and_leaving() {
        let mut h = house();
        assert_eq!(
            h.remove(&user("m"), &user("v")).unwrap_err().code(),
            kit::ErrorCode::Forbidden
        );
        h.remove(&user("o"), &user("v")).unwrap();
        assert_eq!(h.role_of(&user("v")), None);
        assert_eq!(
            h.remove(&user("o"), &user("v")).unwrap_err().code(),
            kit::ErrorCode::NotFound
        );
        assert!(h.remove(&user("o"), &user("o")).is_err());
        assert!(!h.leave(&user("m")).unwrap());
        // The last member may leave: the household ends.
        assert!(h.leave(&user("o")).unwrap());
    }

    #[test]
    fn households_are_bounded_and_names_checked() {
        let mut h = house();
        for i in 3..MAX_MEMBERS {
            h.join(&user(&format!("u{i}")), HouseholdRole::Viewer, at())
                .unwrap();
        }
        let e = h
            .join(&user("one-too-many"), HouseholdRole::Viewer, at())
            .unwrap_err();
        assert_eq!(e.code(), kit::ErrorCode::LimitReached);
        assert_eq!(parse_household_name("  Home  ").unwrap(), "Home");
        assert!(parse_household_name("").is_err());
        assert!(parse_household_name(&"x".repeat(65)).is_err());
        assert!(parse_household_name("a\u{0}b").is_err());
    }

    #[test]
    fn a_pending_invitation_expires() {
        let i = Invitation {
            id: InvitationId::new(),
            household_id: HouseholdId::new(),
            household_name: "Home".into(),
            invitee: user("i"),
            invited_by: user("o"),
            role: HouseholdRole::Member,
            status: InvitationStatus::Pending,
            created_at: at(),
            expires_at: at() + INVITATION_TTL,
        };
        assert_eq!(i.status_at(at()), InvitationStatus::Pending);
        assert_eq!(
            i.status_at(at() + INVITATION_TTL),
            InvitationStatus::Expired
        );
    }
}
