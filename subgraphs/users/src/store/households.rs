//! Households and their invitations. A household is one document (members inside,
//! `memberIds` beside them for lookups) replaced as a whole under a version check, so
//! two owners changing it at once cannot lose each other's change.

use chrono::{DateTime, Utc};
use contract::households::HouseholdRole;
use contract::ids::{HouseholdId, InvitationId, UserId};
use futures::TryStreamExt;
use kit::error::unreadable;
use kit::{AppError, Currency};
use mongodb::bson::{self, doc};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::domain::household::{Household, Invitation, InvitationStatus, Member};
use crate::domain::{Email, User};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberDoc {
    pub user_id: String,
    pub role: String,
    pub joined_at: bson::DateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub currency: String,
    pub members: Vec<MemberDoc>,
    /// The members' ids, indexed: whose households a query looks for.
    pub member_ids: Vec<String>,
    pub created_at: bson::DateTime,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub household_id: String,
    pub household_name: String,
    pub invitee_id: String,
    pub invited_by: String,
    pub role: String,
    /// `PENDING`, `ACCEPTED`, `DECLINED` or `REVOKED` (expiry is read from `expiresAt`).
    pub status: String,
    pub created_at: bson::DateTime,
    pub expires_at: bson::DateTime,
}

fn role(record: &str, id: &str, text: &str) -> Result<HouseholdRole, AppError> {
    HouseholdRole::parse(text).ok_or_else(|| unreadable(record, id, "role", text))
}

impl HouseholdDoc {
    fn of(h: &Household) -> HouseholdDoc {
        HouseholdDoc {
            id: h.id.to_string(),
            name: h.name.clone(),
            currency: h.currency.code().to_string(),
            members: h
                .members
                .iter()
                .map(|m| MemberDoc {
                    user_id: m.user_id.to_string(),
                    role: m.role.as_str().to_string(),
                    joined_at: bson::DateTime::from_chrono(m.joined_at),
                })
                .collect(),
            member_ids: h.members.iter().map(|m| m.user_id.to_string()).collect(),
            created_at: bson::DateTime::from_chrono(h.created_at),
            version: h.version,
        }
    }

    fn read(self) -> Result<Household, AppError> {
        let currency = Currency::parse(&self.currency)
            .map_err(|_| unreadable("household", &self.id, "currency", &self.currency))?;
        let members = self
            .members
            .iter()
            .map(|m| {
                Ok(Member {
                    user_id: UserId::from_trusted(&m.user_id),
                    role: role("household", &self.id, &m.role)?,
                    joined_at: m.joined_at.to_chrono(),
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        Ok(Household {
            id: HouseholdId::from_trusted(self.id),
            name: self.name,
            currency,
            members,
            created_at: self.created_at.to_chrono(),
            version: self.version,
        })
    }
}

impl InvitationDoc {
    fn of(i: &Invitation) -> InvitationDoc {
        InvitationDoc {
            id: i.id.to_string(),
            household_id: i.household_id.to_string(),
            household_name: i.household_name.clone(),
            invitee_id: i.invitee.to_string(),
            invited_by: i.invited_by.to_string(),
            role: i.role.as_str().to_string(),
            status: i.status.as_str().to_string(),
            created_at: bson::DateTime::from_chrono(i.created_at),
            expires_at: bson::DateTime::from_chrono(i.expires_at),
        }
    }

    fn read(self) -> Result<Invitation, AppError> {
        let status = InvitationStatus::parse(&self.status)
            .ok_or_else(|| unreadable("invitation", &self.id, "status", &self.status))?;
        Ok(Invitation {
            role: role("invitation", &self.id, &self.role)?,
            id: InvitationId::from_trusted(self.id),
            household_id: HouseholdId::from_trusted(self.household_id),
            household_name: self.household_name,
            invitee: UserId::from_trusted(self.invitee_id),
            invited_by: UserId::from_trusted(self.invited_by),
            status,
            created_at: self.created_at.to_chrono(),
            expires_at: self.expires_at.to_chrono(),
        })
    }
}

impl Store {
    pub async fn insert_household(&self, h: &Household) -> Result<(), AppError> {
        self.households.insert_one(HouseholdDoc::of(h)).await?;
        Ok(())
    }

    pub async fn household(&self, id: &HouseholdId) -> Result<Option<Household>, AppError> {
        self.households
            .find_one(doc! { "_id": id.as_str() })
            .await?
            .map(HouseholdDoc::read)
            .transpose()
    }

    /// The households `user` belongs to, oldest first.
    pub async fn households_of(&self, user: &UserId) -> Result<Vec<Household>, AppError> {
        let docs: Vec<HouseholdDoc> = self
            .households
            // `$in` rather than plain equality: nx-27017 0.8.1 answers an equality on an
            // indexed array field with nothing (scripts/repro/nx_array_index_equality.py).
            .find(doc! { "memberIds": { "$in": [user.as_str()] } })
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await?
            .try_collect()
            .await?;
        docs.into_iter().map(HouseholdDoc::read).collect()
    }

    /// Writes `h` if nobody changed it since it was read (at `h.version`); false when
    /// someone did (read again and retry).
    pub async fn save_household(&self, h: &Household) -> Result<bool, AppError> {
        let mut next = HouseholdDoc::of(h);
        next.version = h.version + 1;
        let r = self
            .households
            .replace_one(doc! { "_id": h.id.as_str(), "version": h.version }, &next)
            .await?;
        Ok(r.matched_count == 1)
    }

    /// Deletes an emptied household, if still at `version`.
    pub async fn delete_household(&self, h: &Household) -> Result<bool, AppError> {
        let r = self
            .households
            .delete_one(doc! { "_id": h.id.as_str(), "version": h.version })
            .await?;
        Ok(r.deleted_count == 1)
    }

    pub async fn insert_invitation(&self, i: &Invitation) -> Result<(), AppError> {
        self.invitations.insert_one(InvitationDoc::of(i)).await?;
        Ok(())
    }

    pub async fn invitation(&self, id: &InvitationId) -> Result<Option<Invitation>, AppError> {
        self.invitations
            .find_one(doc! { "_id": id.as_str() })
            .await?
            .map(InvitationDoc::read)
            .transpose()
    }

    /// Invitations still open at `now`: of a household, or to a person.
    pub async fn open_invitations(
        &self,
        household: Option<&HouseholdId>,
        invitee: Option<&UserId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>, AppError> {
        let mut filter = doc! {
            "status": InvitationStatus::Pending.as_str(),
            "expiresAt": { "$gt": bson::DateTime::from_chrono(now) },
        };
        if let Some(h) = household {
            filter.insert("householdId", h.as_str());
        }
        if let Some(u) = invitee {
            filter.insert("inviteeId", u.as_str());
        }
        let docs: Vec<InvitationDoc> = self
            .invitations
            .find(filter)
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(100)
            .await?
            .try_collect()
            .await?;
        docs.into_iter().map(InvitationDoc::read).collect()
    }

    /// Moves a pending, unexpired invitation to `to`; false when it was not pending (or
    /// had expired) any more.
    pub async fn settle_invitation(
        &self,
        id: &InvitationId,
        to: InvitationStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let r = self
            .invitations
            .update_one(
                doc! {
                    "_id": id.as_str(),
                    "status": InvitationStatus::Pending.as_str(),
                    "expiresAt": { "$gt": bson::DateTime::from_chrono(now) },
                },
                doc! { "$set": { "status": to.as_str() } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// The user a username or an email names.
    pub async fn user_by_login(&self, text: &str) -> Result<Option<User>, AppError> {
        let text = text.trim();
        if text.contains('@') {
            return match Email::parse(text) {
                Ok(email) => self.user_by_email_key(&email.key()).await,
                Err(_) => Ok(None),
            };
        }
        self.users
            .find_one(doc! { "usernameKey": text.to_lowercase() })
            .await?
            .map(User::try_from)
            .transpose()
    }
}
