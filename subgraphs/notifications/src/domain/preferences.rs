//! What a user chose: channels and types switched on or off (and which types go to
//! which channel), where outside deliveries go, quiet hours in their timezone.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use kit::{AppError, ErrorCode};

use super::{Channel, NotificationType};

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_URL_CHARS: usize = 2048;

/// Local times are written `HH:MM`, 24-hour.
const TIME_FORMAT: &str = "%H:%M";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// Channels switched off.
    pub disabled_channels: Vec<Channel>,
    /// Channels switched on that are off by default (SMS).
    pub enabled_channels: Vec<Channel>,
    /// Types switched off (no notification at all).
    pub disabled_types: Vec<NotificationType>,
    /// Where the user departed from [`Channel::carries_by_default`]: notifications of
    /// the type go (`true`) or do not go to the channel.
    pub type_channels: Vec<(NotificationType, Channel, bool)>,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    /// The verified phone number (E.164) SMS goes to.
    pub phone: Option<String>,
    pub quiet_hours: Option<QuietHours>,
    /// IANA timezone, from the user's profile when the preferences were last read or
    /// written (UTC until then).
    pub timezone: Tz,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            disabled_channels: Vec::new(),
            enabled_channels: Vec::new(),
            disabled_types: Vec::new(),
            type_channels: Vec::new(),
            email: None,
            webhook_url: None,
            phone: None,
            quiet_hours: None,
            timezone: Tz::UTC,
        }
    }
}

/// Local times; `start > end` spans midnight (22:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// Quiet hours from `HH:MM` texts; `field` names the pair in errors.
    pub fn parse(field: &str, start: &str, end: &str) -> Result<QuietHours, AppError> {
        let start = local_time(&format!("{field}.start"), start)?;
        let end = local_time(&format!("{field}.end"), end)?;
        if start == end {
            return Err(AppError::validation(field, "start and end must differ"));
        }
        Ok(QuietHours { start, end })
    }

    /// `HH:MM`.
    pub fn start_text(&self) -> String {
        self.start.format(TIME_FORMAT).to_string()
    }

    /// `HH:MM`.
    pub fn end_text(&self) -> String {
        self.end.format(TIME_FORMAT).to_string()
    }
}

/// A change of preferences: `None` leaves a setting alone, `Some(None)` clears it.
/// Values are checked already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreferencesChange {
    pub email: Option<Option<String>>,
    pub webhook_url: Option<Option<String>>,
    pub quiet_hours: Option<Option<QuietHours>>,
    /// The verified phone number (set only once the user confirmed its code).
    pub phone: Option<Option<String>>,
    /// Channels switched on (`true`) or off.
    pub channels: Vec<(Channel, bool)>,
    /// Types switched on (`true`) or off.
    pub types: Vec<(NotificationType, bool)>,
    /// Types sent (`true`) or not sent to a channel.
    pub type_channels: Vec<(NotificationType, Channel, bool)>,
}

impl Preferences {
    pub fn channel_on(&self, channel: Channel) -> bool {
        if self.disabled_channels.contains(&channel) {
            false
        } else {
            self.enabled_channels.contains(&channel) || channel.on_by_default()
        }
    }

    /// Whether notifications of `kind` go to `channel` (when the channel is on).
    pub fn type_channel_on(&self, kind: NotificationType, channel: Channel) -> bool {
        self.type_channels
            .iter()
            .find(|(k, c, _)| *k == kind && *c == channel)
            .map_or_else(|| channel.carries_by_default(kind), |(_, _, on)| *on)
    }

    /// The channels notifications of `kind` go to when those channels are on.
    pub fn channels_of_type(&self, kind: NotificationType) -> Vec<Channel> {
        Channel::ALL
            .iter()
            .copied()
            .filter(|c| self.type_channel_on(kind, *c))
            .collect()
    }

    /// Refuses SMS switched on without a verified phone number (`PHONE_NOT_VERIFIED`).
    pub fn check_sms(&self) -> Result<(), AppError> {
        if self.channel_on(Channel::Sms) && self.phone.is_none() {
            return Err(AppError::refused(
                ErrorCode::PhoneNotVerified,
                "SMS needs a verified phone number: set one (setPhoneNumber) and confirm its code (confirmPhoneNumber) first",
                Some("channels"),
            ));
        }
        Ok(())
    }

    pub fn type_on(&self, kind: NotificationType) -> bool {
        !self.disabled_types.contains(&kind)
    }

    /// Where an outside channel delivers to; `None` for the others, for PUSH (its
    /// targets are the registered devices), and for an outside channel with no address.
    pub fn target(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Email => self.email.as_deref(),
            Channel::Webhook => self.webhook_url.as_deref(),
            Channel::Sms => self.phone.as_deref(),
            Channel::InApp | Channel::Websocket | Channel::Push => None,
        }
    }

    /// The channels a new notification of `kind` goes to (empty: not notified);
    /// `push_devices`: the user has registered a device for PUSH.
    pub fn channels_for(&self, kind: NotificationType, push_devices: bool) -> Vec<Channel> {
        if !self.type_on(kind) {
            return Vec::new();
        }
        Channel::ALL
            .iter()
            .copied()
            .filter(|c| self.channel_on(*c) && self.type_channel_on(kind, *c))
            .filter(|c| match c {
                Channel::Push => push_devices,
                c => !c.is_external() || self.target(*c).is_some(),
            })
            .collect()
    }

    pub fn apply(&mut self, change: PreferencesChange) {
        if let Some(email) = change.email {
            self.email = email;
        }
        if let Some(url) = change.webhook_url {
            self.webhook_url = url;
        }
        if let Some(quiet) = change.quiet_hours {
            self.quiet_hours = quiet;
        }
        if let Some(phone) = change.phone {
            self.phone = phone;
        }
        for (channel, enabled) in change.channels {
            self.disabled_channels.retain(|c| *c != channel);
            self.enabled_channels.retain(|c| *c != channel);
            if enabled != channel.on_by_default() {
                let list = if enabled {
                    &mut self.enabled_channels
                } else {
                    &mut self.disabled_channels
                };
                list.push(channel);
            }
        }
        for (kind, channel, on) in change.type_channels {
            self.type_channels
                .retain(|(k, c, _)| !(*k == kind && *c == channel));
            if on != channel.carries_by_default(kind) {
                self.type_channels.push((kind, channel, on));
            }
        }
        for (kind, enabled) in change.types {
            self.disabled_types.retain(|t| *t != kind);
            if !enabled {
                self.disabled_types.push(kind);
            }
        }
    }

    /// When outside deliveries may go out: `now`, or the end of the quiet hours.
    pub fn not_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let Some(q) = self.quiet_hours else {
            return now;
        };
        let local = now.with_timezone(&self.timezone);
        let t = local.time();
        let quiet = if q.start <= q.end {
            q.start <= t && t < q.end
        } else {
            t >= q.start || t < q.end
        };
        if !quiet || q.start == q.end {
            return now;
        }
        let mut day = local.date_naive();
        if t >= q.end && q.start > q.end {
            day = day.succ_opt().unwrap_or(day);
        }
        // The first instant at or after the local end time (a DST gap moves it later).
        let naive = day.and_time(q.end);
        self.timezone
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                self.timezone
                    .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(now)
            .max(now)
    }
}

/// A plausible address: one `@`, something on both sides, a dot in the domain.
pub fn email(raw: &str) -> Result<String, AppError> {
    let e = raw.trim();
    let ok = e.len() <= MAX_EMAIL_CHARS
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !ok {
        return Err(AppError::validation("email", "not an email address"));
    }
    Ok(e.to_string())
}

pub fn webhook_url(raw: &str) -> Result<String, AppError> {
    let u = raw.trim();
    let parsed =
        reqwest::Url::parse(u).map_err(|_| AppError::validation("webhookUrl", "not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(AppError::validation(
            "webhookUrl",
            "the webhook URL must be http:// or https://",
        ));
    }
    if u.len() > MAX_URL_CHARS {
        return Err(AppError::validation("webhookUrl", "URL too long"));
    }
    Ok(u.to_string())
}

/// `HH:MM`, 24-hour.
pub fn local_time(field: &str, raw: &str) -> Result<NaiveTime, AppError> {
    let raw = raw.trim();
    if raw.len() != 5 {
        return Err(AppError::validation(field, "expected a time as HH:MM"));
    }
    NaiveTime::parse_from_str(raw, TIME_FORMAT)
        .map_err(|_| AppError::validation(field, "expected a time as HH:MM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn quiet_hours_across_midnight_end_in_the_users_morning() {
        let p = Preferences {
            quiet_hours: Some(QuietHours {
                start: t("22:00"),
                end: t("07:00"),
            }),
            timezone: "Europe/Paris".parse().unwrap(),
            ..Default::default()
        };
        // 23:30 Paris (winter, UTC+1) -> 07:00 Paris next day = 06:00 UTC.
        let now = Utc.with_ymd_and_hms(2024, 1, 10, 22, 30, 0).unwrap();
        assert_eq!(
            p.not_before(now),
            Utc.with_ymd_and_hms(2024, 1, 11, 6, 0, 0).unwrap()
        );
        // 05:00 Paris -> 07:00 the same day.
        let now = Utc.with_ymd_and_hms(2024, 1, 11, 4, 0, 0).unwrap();
        assert_eq!(
            p.not_before(now),
            Utc.with_ymd_and_hms(2024, 1, 11, 6, 0, 0).unwrap()
        );
        // Noon: not quiet.
        let now = Utc.with_ymd_and_hms(2024, 1, 11, 11, 0, 0).unwrap();
        assert_eq!(p.not_before(now), now);
    }

    #[test]
    fn inputs_are_checked() {
        assert!(email("a@b.co").is_ok());
        assert!(email("a b@c.d").is_err());
        assert!(email("nope").is_err());
        assert!(webhook_url("ftp://x").is_err());
        assert!(webhook_url("https://example.com/hook").is_ok());
        assert!(local_time("start", "7:00").is_err());
        assert!(local_time("start", "25:00").is_err());
        assert!(QuietHours::parse("quietHours", "07:00", "07:00").is_err());
    }

    #[test]
    fn outside_channels_need_an_address_and_switched_off_types_go_nowhere() {
        let mut p = Preferences::default();
        assert_eq!(
            p.channels_for(NotificationType::System, true),
            [Channel::InApp, Channel::Websocket]
        );
        p.apply(PreferencesChange {
            email: Some(Some("a@b.co".into())),
            channels: vec![(Channel::Websocket, false)],
            types: vec![(NotificationType::WeeklySummary, false)],
            ..Default::default()
        });
        assert_eq!(
            p.channels_for(NotificationType::System, false),
            [Channel::InApp, Channel::Email]
        );
        assert!(
            p.channels_for(NotificationType::WeeklySummary, false)
                .is_empty()
        );
        p.apply(PreferencesChange {
            channels: vec![(Channel::Websocket, true)],
            ..Default::default()
        });
        assert!(p.disabled_channels.is_empty());
    }

    #[test]
    fn push_carries_exceeded_budgets_once_a_device_is_there_and_sms_only_when_opted_in() {
        let mut p = Preferences::default();
        let exceeded = NotificationType::BudgetExceeded;
        assert_eq!(
            p.channels_for(exceeded, false),
            [Channel::InApp, Channel::Websocket]
        );
        assert_eq!(
            p.channels_for(exceeded, true),
            [Channel::InApp, Channel::Websocket, Channel::Push]
        );
        assert!(
            !p.channels_for(NotificationType::BudgetAlert, true)
                .contains(&Channel::Push)
        );
        // SMS switched on without a verified number is refused.
        p.apply(PreferencesChange {
            channels: vec![(Channel::Sms, true)],
            ..Default::default()
        });
        assert_eq!(
            p.check_sms().unwrap_err().code(),
            ErrorCode::PhoneNotVerified
        );
        p.apply(PreferencesChange {
            phone: Some(Some("+14155550100".into())),
            type_channels: vec![
                (NotificationType::BudgetAlert, Channel::Push, true),
                (exceeded, Channel::Websocket, false),
            ],
            ..Default::default()
        });
        assert!(p.check_sms().is_ok());
        assert_eq!(
            p.channels_for(exceeded, true),
            [Channel::InApp, Channel::Sms, Channel::Push]
        );
        assert!(
            p.channels_for(NotificationType::BudgetAlert, true)
                .contains(&Channel::Push)
        );
        // Back to the defaults: nothing is kept that the defaults say already.
        p.apply(PreferencesChange {
            channels: vec![(Channel::Sms, false)],
            type_channels: vec![(exceeded, Channel::Websocket, true)],
            ..Default::default()
        });
        assert!(p.enabled_channels.is_empty() && p.disabled_channels.is_empty());
        assert_eq!(
            p.type_channels,
            [(NotificationType::BudgetAlert, Channel::Push, true)]
        );
    }
}
