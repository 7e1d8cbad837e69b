//! The stored documents and their mapping to and from the domain, in one place. Field
//! names and stored texts are those the collections have always held.
//!
//! A stored value that does not read back (an unknown type, channel, status or
//! timezone, a malformed date or time) is an internal error naming the record, the
//! field and the value: never a default.

use chrono::{DateTime, Utc};
use contract::events::AlertSeverity;
use contract::ids::{AlertId, BudgetId, DeliveryId, NotificationId, UserId};
use kit::AppError;
use kit::error::unreadable;
use kit::scalars::Date;
use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::domain::{
    AlertInfo, Channel, Delivery, DeliveryStatus, Notification, NotificationType,
    PhoneVerification, Preferences, Priority, PushDevice, QuietHours, local_time,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    /// Same as `_id`; indexed with `userId`.
    pub key: String,
    pub user_id: String,
    pub source_key: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    pub channels: Vec<String>,
    #[serde(deserialize_with = "lenient_bool")]
    pub read: bool,
    pub created_at: bson::DateTime,
    /// The alert, for budget alert notifications.
    pub alert: Option<AlertData>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertData {
    pub alert_id: String,
    pub budget_id: String,
    pub category: Option<String>,
    pub threshold: i64,
    pub percent_used: f64,
    pub severity: String,
    pub period_start: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub notification_id: String,
    pub user_id: String,
    pub channel: String,
    /// Email address or URL, fixed when the notification was made.
    pub target: String,
    /// `PENDING`, `SENT` or `FAILED`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Epoch milliseconds (numbers compare the same everywhere).
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub lease_until_ms: i64,
    pub done_ms: Option<i64>,
    /// W3C `traceparent` (absent when traces were not exported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreferencesDoc {
    #[serde(rename = "_id")]
    pub user_id: String,
    pub disabled_channels: Vec<String>,
    /// Channels off by default that the user switched on.
    #[serde(default)]
    pub enabled_channels: Vec<String>,
    pub disabled_types: Vec<String>,
    /// `TYPE|CHANNEL`: the type goes to the channel although it does not by default.
    #[serde(default)]
    pub type_channels_on: Vec<String>,
    /// `TYPE|CHANNEL`: the type does not go to the channel although it does by default.
    #[serde(default)]
    pub type_channels_off: Vec<String>,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    /// The verified phone number (E.164).
    #[serde(default)]
    pub phone: Option<String>,
    /// `HH:MM` local times.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    pub timezone: String,
}

/// A browser's push subscription (`push_devices`, one per endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PushDeviceDoc {
    /// Hex SHA-256 of the endpoint.
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub name: Option<String>,
    pub created_ms: i64,
}

/// A phone number waiting for its code (`phone_verifications`, one per user).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhoneVerificationDoc {
    #[serde(rename = "_id")]
    pub user_id: String,
    pub phone: String,
    pub code_hash: String,
    pub expires_ms: i64,
    pub attempts: i64,
    pub sent_ms: Vec<i64>,
}

/// Reads a boolean also when stored as a number: nx-27017 stores the `true` of a
/// `$set` as `1` (real MongoDB keeps the boolean; both read the same here).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match bson::Bson::deserialize(d)? {
        bson::Bson::Boolean(b) => Ok(b),
        bson::Bson::Int32(n) => Ok(n != 0),
        bson::Bson::Int64(n) => Ok(n != 0),
        other => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

/// Reads one stored value of a record with `read`, or says which one did not read.
struct Reader<'a> {
    record: &'static str,
    id: &'a str,
}

impl Reader<'_> {
    fn value<T>(
        &self,
        field: &str,
        text: &str,
        read: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, AppError> {
        read(text).ok_or_else(|| unreadable(self.record, self.id, field, text))
    }

    fn values<T>(
        &self,
        field: &str,
        texts: &[String],
        read: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, AppError> {
        texts.iter().map(|t| self.value(field, t, &read)).collect()
    }

    fn millis(&self, field: &str, ms: i64) -> Result<DateTime<Utc>, AppError> {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| unreadable(self.record, self.id, field, ms.to_string()))
    }

    fn missing(&self, field: &str, because: &str) -> AppError {
        AppError::internal(anyhow::anyhow!(
            "{} {}: stored {field} is missing while {because} is set",
            self.record,
            self.id
        ))
    }
}

fn severity(text: &str) -> Option<AlertSeverity> {
    [AlertSeverity::Warning, AlertSeverity::Critical]
        .into_iter()
        .find(|s| s.as_str() == text)
}

impl TryFrom<NotificationDoc> for Notification {
    type Error = AppError;

    fn try_from(d: NotificationDoc) -> Result<Notification, AppError> {
        let r = Reader {
            record: "notification",
            id: &d.id,
        };
        if d.key != d.id {
            return Err(unreadable(r.record, r.id, "key", &d.key));
        }
        let kind = r.value("type", &d.kind, NotificationType::parse)?;
        let priority = r.value("priority", &d.priority, Priority::parse)?;
        let channels = r.values("channels", &d.channels, Channel::parse)?;
        let alert = match &d.alert {
            None => None,
            Some(a) => Some(AlertInfo {
                alert_id: AlertId::from_trusted(a.alert_id.as_str()),
                budget_id: BudgetId::from_trusted(a.budget_id.as_str()),
                category: a.category.clone(),
                threshold: a.threshold,
                percent_used: a.percent_used,
                severity: r.value("alert.severity", &a.severity, severity)?,
                period_start: r
                    .value("alert.periodStart", &a.period_start, |t| {
                        Date::parse(t).ok()
                    })?
                    .0,
            }),
        };
        Ok(Notification {
            id: NotificationId::from_trusted(d.id),
            user_id: UserId::from_trusted(d.user_id),
            source_key: d.source_key,
            kind,
            title: d.title,
            message: d.message,
            priority,
            channels,
            read: d.read,
            created_at: d.created_at.to_chrono(),
            alert,
        })
    }
}

impl NotificationDoc {
    pub fn of(n: &Notification) -> NotificationDoc {
        NotificationDoc {
            id: n.id.to_string(),
            key: n.id.to_string(),
            user_id: n.user_id.to_string(),
            source_key: n.source_key.clone(),
            kind: n.kind.as_str().to_string(),
            title: n.title.clone(),
            message: n.message.clone(),
            priority: n.priority.as_str().to_string(),
            channels: n.channels.iter().map(|c| c.as_str().to_string()).collect(),
            read: n.read,
            created_at: bson::DateTime::from_chrono(n.created_at),
            alert: n.alert.as_ref().map(|a| AlertData {
                alert_id: a.alert_id.to_string(),
                budget_id: a.budget_id.to_string(),
                category: a.category.clone(),
                threshold: a.threshold,
                percent_used: a.percent_used,
                severity: a.severity.as_str().to_string(),
                period_start: a.period_start.to_string(),
            }),
        }
    }
}

impl TryFrom<DeliveryDoc> for Delivery {
    type Error = AppError;

    fn try_from(d: DeliveryDoc) -> Result<Delivery, AppError> {
        let r = Reader {
            record: "delivery",
            id: &d.id,
        };
        let channel = r.value("channel", &d.channel, Channel::parse)?;
        let status = r.value("status", &d.status, DeliveryStatus::parse)?;
        let created_at = r.millis("createdMs", d.created_ms)?;
        let next_attempt_at = r.millis("nextAttemptMs", d.next_attempt_ms)?;
        let finished_at = d.done_ms.map(|ms| r.millis("doneMs", ms)).transpose()?;
        Ok(Delivery {
            id: DeliveryId::from_trusted(d.id),
            notification_id: NotificationId::from_trusted(d.notification_id),
            user_id: UserId::from_trusted(d.user_id),
            channel,
            target: d.target,
            status,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at,
            next_attempt_at,
            finished_at,
            trace: d.trace,
        })
    }
}

impl DeliveryDoc {
    /// The document of a delivery as first written: not leased.
    pub fn of(d: &Delivery) -> DeliveryDoc {
        DeliveryDoc {
            id: d.id.to_string(),
            notification_id: d.notification_id.to_string(),
            user_id: d.user_id.to_string(),
            channel: d.channel.as_str().to_string(),
            target: d.target.clone(),
            status: d.status.as_str().to_string(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            created_ms: d.created_at.timestamp_millis(),
            next_attempt_ms: d.next_attempt_at.timestamp_millis(),
            lease_until_ms: 0,
            done_ms: d.finished_at.map(|at| at.timestamp_millis()),
            trace: d.trace.clone(),
        }
    }
}

impl TryFrom<PreferencesDoc> for Preferences {
    type Error = AppError;

    fn try_from(d: PreferencesDoc) -> Result<Preferences, AppError> {
        let r = Reader {
            record: "preferences",
            id: &d.user_id,
        };
        let time = |field: &str, text: &str| r.value(field, text, |t| local_time(field, t).ok());
        let quiet_hours = match (&d.quiet_start, &d.quiet_end) {
            (Some(start), Some(end)) => Some(QuietHours {
                start: time("quietStart", start)?,
                end: time("quietEnd", end)?,
            }),
            (None, None) => None,
            (Some(_), None) => return Err(r.missing("quietEnd", "quietStart")),
            (None, Some(_)) => return Err(r.missing("quietStart", "quietEnd")),
        };
        let type_channel = |text: &str| {
            let (kind, channel) = text.split_once('|')?;
            Some((NotificationType::parse(kind)?, Channel::parse(channel)?))
        };
        let mut type_channels = Vec::new();
        for (field, texts, on) in [
            ("typeChannelsOn", &d.type_channels_on, true),
            ("typeChannelsOff", &d.type_channels_off, false),
        ] {
            for (kind, channel) in r.values(field, texts, type_channel)? {
                type_channels.push((kind, channel, on));
            }
        }
        Ok(Preferences {
            disabled_channels: r.values(
                "disabledChannels",
                &d.disabled_channels,
                Channel::parse,
            )?,
            enabled_channels: r.values("enabledChannels", &d.enabled_channels, Channel::parse)?,
            type_channels,
            phone: d.phone,
            disabled_types: r.values(
                "disabledTypes",
                &d.disabled_types,
                NotificationType::parse,
            )?,
            quiet_hours,
            timezone: r.value("timezone", &d.timezone, |t| t.parse().ok())?,
            email: d.email,
            webhook_url: d.webhook_url,
        })
    }
}

impl PreferencesDoc {
    pub fn of(user: &UserId, p: &Preferences) -> PreferencesDoc {
        PreferencesDoc {
            user_id: user.to_string(),
            disabled_channels: p
                .disabled_channels
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            enabled_channels: p
                .enabled_channels
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            disabled_types: p
                .disabled_types
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            type_channels_on: type_channels(p, true),
            type_channels_off: type_channels(p, false),
            email: p.email.clone(),
            webhook_url: p.webhook_url.clone(),
            phone: p.phone.clone(),
            quiet_start: p.quiet_hours.map(|q| q.start_text()),
            quiet_end: p.quiet_hours.map(|q| q.end_text()),
            timezone: p.timezone.name().to_string(),
        }
    }
}

/// `TYPE|CHANNEL` of the preferences' type-channel choices that are `on`.
fn type_channels(p: &Preferences, on: bool) -> Vec<String> {
    p.type_channels
        .iter()
        .filter(|(_, _, o)| *o == on)
        .map(|(k, c, _)| format!("{k}|{c}"))
        .collect()
}

impl TryFrom<PushDeviceDoc> for PushDevice {
    type Error = AppError;

    fn try_from(d: PushDeviceDoc) -> Result<PushDevice, AppError> {
        let r = Reader {
            record: "push device",
            id: &d.id,
        };
        let created_at = r.millis("createdMs", d.created_ms)?;
        Ok(PushDevice {
            id: d.id,
            user_id: UserId::from_trusted(d.user_id),
            endpoint: d.endpoint,
            p256dh: d.p256dh,
            auth: d.auth,
            name: d.name,
            created_at,
        })
    }
}

impl PushDeviceDoc {
    pub fn of(d: &PushDevice) -> PushDeviceDoc {
        PushDeviceDoc {
            id: d.id.clone(),
            user_id: d.user_id.to_string(),
            endpoint: d.endpoint.clone(),
            p256dh: d.p256dh.clone(),
            auth: d.auth.clone(),
            name: d.name.clone(),
            created_ms: d.created_at.timestamp_millis(),
        }
    }
}

impl TryFrom<PhoneVerificationDoc> for PhoneVerification {
    type Error = AppError;

    fn try_from(d: PhoneVerificationDoc) -> Result<PhoneVerification, AppError> {
        let r = Reader {
            record: "phone verification",
            id: &d.user_id,
        };
        let expires_at = r.millis("expiresMs", d.expires_ms)?;
        let sent = d
            .sent_ms
            .iter()
            .map(|ms| r.millis("sentMs", *ms))
            .collect::<Result<_, _>>()?;
        Ok(PhoneVerification {
            user_id: UserId::from_trusted(d.user_id),
            phone: d.phone,
            code_hash: d.code_hash,
            expires_at,
            attempts: d.attempts,
            sent,
        })
    }
}

impl PhoneVerificationDoc {
    pub fn of(v: &PhoneVerification) -> PhoneVerificationDoc {
        PhoneVerificationDoc {
            user_id: v.user_id.to_string(),
            phone: v.phone.clone(),
            code_hash: v.code_hash.clone(),
            expires_ms: v.expires_at.timestamp_millis(),
            attempts: v.attempts,
            sent_ms: v.sent.iter().map(|t| t.timestamp_millis()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use kit::ErrorCode;

    use super::*;

    fn notification_doc() -> NotificationDoc {
        let id = NotificationId::new().to_string();
        NotificationDoc {
            id: id.clone(),
            key: id,
            user_id: UserId::new().to_string(),
            source_key: "event|e1".into(),
            kind: "BUDGET_ALERT".into(),
            title: "Budget alert: food".into(),
            message: "80% used".into(),
            priority: "MEDIUM".into(),
            channels: vec!["IN_APP".into(), "WEBHOOK".into()],
            read: false,
            created_at: bson::DateTime::from_millis(1_700_000_000_123),
            alert: Some(AlertData {
                alert_id: AlertId::new().to_string(),
                budget_id: BudgetId::new().to_string(),
                category: Some("food".into()),
                threshold: 80,
                percent_used: 85.0,
                severity: "WARNING".into(),
                period_start: "2024-01-01".into(),
            }),
        }
    }

    fn delivery_doc() -> DeliveryDoc {
        DeliveryDoc {
            id: "n1|EMAIL".into(),
            notification_id: "n1".into(),
            user_id: "u1".into(),
            channel: "EMAIL".into(),
            target: "a@b.co".into(),
            status: "PENDING".into(),
            attempts: 0,
            last_error: None,
            created_ms: 1_700_000_000_000,
            next_attempt_ms: 1_700_000_000_000,
            lease_until_ms: 0,
            done_ms: None,
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }
    }

    fn preferences_doc() -> PreferencesDoc {
        PreferencesDoc {
            user_id: "u1".into(),
            disabled_channels: vec!["WEBSOCKET".into()],
            enabled_channels: vec!["SMS".into()],
            disabled_types: vec!["WEEKLY_SUMMARY".into()],
            type_channels_on: vec!["BUDGET_ALERT|PUSH".into()],
            type_channels_off: vec!["BUDGET_EXCEEDED|SMS".into()],
            email: Some("a@b.co".into()),
            webhook_url: None,
            phone: Some("+14155550100".into()),
            quiet_start: Some("22:00".into()),
            quiet_end: Some("07:00".into()),
            timezone: "Europe/Paris".into(),
        }
    }

    /// Reading `doc` changed by `change` is an internal error whose message (what is
    /// logged) holds every one of `expected`.
    fn assert_unreadable<D, T>(doc: &D, change: impl FnOnce(&mut D), expected: &[&str])
    where
        D: Clone,
        T: TryFrom<D, Error = AppError> + std::fmt::Debug,
    {
        let mut d = doc.clone();
        change(&mut d);
        let e = T::try_from(d).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Internal, "{e:?}");
        let AppError::Internal(cause) = e else {
            unreachable!()
        };
        let m = cause.to_string();
        for x in expected {
            assert!(m.contains(x), "{x:?} not in {m:?}");
        }
    }

    #[test]
    fn documents_read_back_as_the_domain_and_write_back_unchanged() {
        let d = notification_doc();
        let n = Notification::try_from(d.clone()).unwrap();
        assert_eq!(n.kind, NotificationType::BudgetAlert);
        assert_eq!(n.channels, [Channel::InApp, Channel::Webhook]);
        let a = n.alert.as_ref().unwrap();
        assert_eq!(a.severity, AlertSeverity::Warning);
        assert_eq!(a.period_start, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
        assert_eq!(NotificationDoc::of(&n), d);

        let d = delivery_doc();
        let delivery = Delivery::try_from(d.clone()).unwrap();
        assert_eq!(delivery.channel, Channel::Email);
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(DeliveryDoc::of(&delivery), d);

        let d = preferences_doc();
        let p = Preferences::try_from(d.clone()).unwrap();
        assert_eq!(p.disabled_channels, [Channel::Websocket]);
        assert_eq!(p.timezone, chrono_tz::Europe::Paris);
        assert_eq!(PreferencesDoc::of(&UserId::from_trusted("u1"), &p), d);
    }

    #[test]
    fn unknown_stored_values_are_internal_errors_naming_record_field_and_value() {
        let n = notification_doc();
        let id = n.id.as_str();
        let unreadable = |change: fn(&mut NotificationDoc), expected: &[&str]| {
            assert_unreadable::<_, Notification>(&n, change, expected)
        };
        unreadable(
            |d| d.kind = "CARRIER_PIGEON".into(),
            &[id, "type", "CARRIER_PIGEON"],
        );
        unreadable(
            |d| d.priority = "URGENT".into(),
            &[id, "priority", "URGENT"],
        );
        unreadable(|d| d.channels.push("FAX".into()), &[id, "channels", "FAX"]);
        unreadable(|d| d.key = "elsewhere".into(), &[id, "key", "elsewhere"]);
        unreadable(
            |d| d.alert.iter_mut().for_each(|a| a.severity = "MILD".into()),
            &[id, "alert.severity", "MILD"],
        );
        unreadable(
            |d| {
                d.alert
                    .iter_mut()
                    .for_each(|a| a.period_start = "2024-13-01".into())
            },
            &[id, "alert.periodStart", "2024-13-01"],
        );

        let d = delivery_doc();
        let unreadable = |change: fn(&mut DeliveryDoc), expected: &[&str]| {
            assert_unreadable::<_, Delivery>(&d, change, expected)
        };
        unreadable(
            |d| d.status = "LOST".into(),
            &["n1|EMAIL", "status", "LOST"],
        );
        unreadable(
            |d| d.channel = "FAX".into(),
            &["n1|EMAIL", "channel", "FAX"],
        );
        unreadable(|d| d.done_ms = Some(i64::MAX), &["n1|EMAIL", "doneMs"]);

        let p = preferences_doc();
        let unreadable = |change: fn(&mut PreferencesDoc), expected: &[&str]| {
            assert_unreadable::<_, Preferences>(&p, change, expected)
        };
        unreadable(
            |d| d.timezone = "Mars/Olympus".into(),
            &["u1", "timezone", "Mars/Olympus"],
        );
        unreadable(
            |d| d.quiet_end = Some("7h".into()),
            &["u1", "quietEnd", "7h"],
        );
        unreadable(|d| d.quiet_end = None, &["u1", "quietEnd", "missing"]);
        unreadable(
            |d| d.disabled_types.push("GOSSIP".into()),
            &["u1", "disabledTypes", "GOSSIP"],
        );
        unreadable(
            |d| d.disabled_channels.push("FAX".into()),
            &["u1", "disabledChannels", "FAX"],
        );
        unreadable(
            |d| d.type_channels_on.push("BUDGET_ALERT|FAX".into()),
            &["u1", "typeChannelsOn", "BUDGET_ALERT|FAX"],
        );
    }

    #[test]
    fn webhook_times_are_written_as_the_stored_dates_always_were() {
        for ms in [0, 100, 120, 123, 999] {
            let at = Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap();
            assert_eq!(
                crate::domain::rfc3339_millis(at),
                bson::DateTime::from_chrono(at)
                    .try_to_rfc3339_string()
                    .unwrap()
            );
        }
    }
}
