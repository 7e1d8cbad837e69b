//! Households: who may do what with what a household shares. Every service that holds
//! shared records reads roles and ownership from here, so the rules are written once.

use serde::{Deserialize, Serialize};

use crate::ids::{HouseholdId, UserId};

/// A member's role in a household.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HouseholdRole {
    /// Everything: invites, roles, removals, shared budgets. A household always has one.
    Owner,
    /// Adds expenses to the household's shared budgets and reads its shared figures.
    Member,
    /// Reads the household's shared figures only.
    Viewer,
}

impl HouseholdRole {
    pub const ALL: [HouseholdRole; 3] = [
        HouseholdRole::Owner,
        HouseholdRole::Member,
        HouseholdRole::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HouseholdRole::Owner => "OWNER",
            HouseholdRole::Member => "MEMBER",
            HouseholdRole::Viewer => "VIEWER",
        }
    }

    pub fn parse(text: &str) -> Option<HouseholdRole> {
        HouseholdRole::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// May read what the household shares (every role).
    pub fn can_read(self) -> bool {
        true
    }

    /// May add and change shared expenses.
    pub fn can_write(self) -> bool {
        matches!(self, HouseholdRole::Owner | HouseholdRole::Member)
    }

    /// May invite, change roles, remove members and manage shared budgets.
    pub fn can_manage(self) -> bool {
        self == HouseholdRole::Owner
    }
}

/// Whose a budget or an expense is: one person's, or a household's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Ownership {
    User(UserId),
    Household(HouseholdId),
}

impl Ownership {
    /// A household's, when `household` is given; the user's own otherwise.
    pub fn of(user: &UserId, household: Option<&HouseholdId>) -> Ownership {
        match household {
            Some(h) => Ownership::Household(h.clone()),
            None => Ownership::User(user.clone()),
        }
    }

    pub fn household(&self) -> Option<&HouseholdId> {
        match self {
            Ownership::Household(h) => Some(h),
            Ownership::User(_) => None,
        }
    }
}

/// What an operation on something a household shares needs of the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read the shared figures (every role).
    Read,
    /// Add or change shared expenses (owners and members).
    Write,
    /// Create, change or delete shared budgets (owners).
    Manage,
}

impl Need {
    /// True when `role` may do what this need names.
    pub fn met_by(self, role: HouseholdRole) -> bool {
        match self {
            Need::Read => role.can_read(),
            Need::Write => role.can_write(),
            Need::Manage => role.can_manage(),
        }
    }

    /// What a refusal says.
    pub fn refusal(self) -> &'static str {
        match self {
            Need::Read => "only the household's members can see this",
            Need::Write => {
                "only the household's owners and members can add or change shared expenses"
            }
            Need::Manage => "only the household's owners can manage its budgets",
        }
    }
}

/// One member of a household as the users service lists it to the other services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberEntry {
    pub user_id: UserId,
    pub role: HouseholdRole,
}

/// The answer of the users service's internal members route
/// (`GET /internal/households/{id}/members`, service token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberList {
    pub household_id: HouseholdId,
    pub members: Vec<MemberEntry>,
}

/// The path of that route for `household`.
pub fn members_path(household: &HouseholdId) -> String {
    format!("/internal/households/{household}/members")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roles_read_back_and_rank_their_rights() {
        for r in HouseholdRole::ALL {
            assert_eq!(HouseholdRole::parse(r.as_str()), Some(r));
            assert!(r.can_read());
        }
        assert_eq!(HouseholdRole::parse("owner"), None);
        assert!(HouseholdRole::Member.can_write() && !HouseholdRole::Viewer.can_write());
        assert!(HouseholdRole::Owner.can_manage() && !HouseholdRole::Member.can_manage());
        let matrix = [
            (Need::Read, [true, true, true]),
            (Need::Write, [true, true, false]),
            (Need::Manage, [true, false, false]),
        ];
        for (need, allowed) in matrix {
            for (role, allowed) in HouseholdRole::ALL.into_iter().zip(allowed) {
                assert_eq!(need.met_by(role), allowed, "{need:?} by {role:?}");
            }
        }
    }

    #[test]
    fn ownership_is_tagged_on_the_wire() {
        let o = Ownership::Household(HouseholdId::from_trusted("h1"));
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({ "kind": "HOUSEHOLD", "id": "h1" })
        );
        assert_eq!(o.household().unwrap().as_str(), "h1");
    }
}
