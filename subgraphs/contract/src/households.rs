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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Ownership {
    User(UserId),
    Household(HouseholdId),
}

impl Ownership {
    pub fn household(&self) -> Option<&HouseholdId> {
        match self {
            Ownership::Household(h) => Some(h),
            Ownership::User(_) => None,
        }
    }
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
