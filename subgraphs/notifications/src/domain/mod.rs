//! Notification rules over plain data: types, priorities, channels, preferences and
//! their validation, quiet hours in the user's timezone, retry schedule, webhook
//! signatures. No GraphQL, no BSON.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use kit::AppError;
use sha2::Sha256;

pub const TYPES: &[&str] = &[
    "BUDGET_ALERT",
    "BUDGET_EXCEEDED",
    "WEEKLY_SUMMARY",
    "MONTHLY_REPORT",
    "SYSTEM",
];

/// Channels: IN_APP is the stored notification, WEBSOCKET the subscriptions; EMAIL and
/// WEBHOOK are delivered by the delivery worker with a state per channel.
pub const CHANNELS: &[&str] = &["IN_APP", "EMAIL", "WEBHOOK", "WEBSOCKET"];
/// Channels with a delivery state (sent to an outside system).
pub const EXTERNAL_CHANNELS: &[&str] = &["EMAIL", "WEBHOOK"];

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_URL_CHARS: usize = 2048;

/// What a user chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// Channels switched off.
    pub disabled_channels: Vec<String>,
    /// Types switched off (no notification at all).
    pub disabled_types: Vec<String>,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    pub quiet_hours: Option<QuietHours>,
    /// IANA timezone, from the user's profile when the preferences were last read or
    /// written (UTC until then).
    pub timezone: Tz,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            disabled_channels: Vec::new(),
            disabled_types: Vec::new(),
            email: None,
            webhook_url: None,
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

impl Preferences {
    pub fn channel_on(&self, channel: &str) -> bool {
        !self.disabled_channels.iter().any(|c| c == channel)
    }

    pub fn type_on(&self, kind: &str) -> bool {
        !self.disabled_types.iter().any(|t| t == kind)
    }

    /// The channels a new notification of `kind` goes to (empty: not notified).
    pub fn channels_for(&self, kind: &str) -> Vec<&'static str> {
        if !self.type_on(kind) {
            return Vec::new();
        }
        CHANNELS
            .iter()
            .copied()
            .filter(|c| self.channel_on(c))
            .filter(|c| match *c {
                "EMAIL" => self.email.is_some(),
                "WEBHOOK" => self.webhook_url.is_some(),
                _ => true,
            })
            .collect()
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

pub fn parse_channel(s: &str) -> Result<&'static str, AppError> {
    CHANNELS
        .iter()
        .copied()
        .find(|c| *c == s)
        .ok_or_else(|| AppError::validation("channel", format!("unknown channel {s:?}")))
}

pub fn parse_type(s: &str) -> Result<&'static str, AppError> {
    TYPES
        .iter()
        .copied()
        .find(|c| *c == s)
        .ok_or_else(|| AppError::validation("type", format!("unknown type {s:?}")))
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
    NaiveTime::parse_from_str(raw, "%H:%M")
        .map_err(|_| AppError::validation(field, "expected a time as HH:MM"))
}

/// Delay before retry number `attempts` (1-based): `base * 2^(attempts-1)`, capped.
pub fn backoff(attempts: i64, base: Duration, max: Duration) -> Duration {
    let shift = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1_u32 << shift).min(max)
}

/// The webhook signature header value: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The type and priority of a budget alert notification.
pub fn alert_kind(threshold: i64) -> (&'static str, &'static str) {
    if threshold >= 100 {
        ("BUDGET_EXCEEDED", "HIGH")
    } else {
        ("BUDGET_ALERT", "MEDIUM")
    }
}

/// The smallest UUIDv7 text at instant `ms` (ids issued at or after sort above it).
pub fn id_floor(ms: i64) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0);
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
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
    fn signatures_cover_timestamp_and_body() {
        let a = sign("k", 1, b"{}");
        assert!(a.starts_with("sha256="));
        assert_ne!(a, sign("k", 2, b"{}"));
        assert_ne!(a, sign("k", 1, b"{ }"));
        assert_ne!(a, sign("j", 1, b"{}"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Duration::from_millis(100);
        let m = Duration::from_millis(350);
        assert_eq!(backoff(1, b, m), b);
        assert_eq!(backoff(2, b, m), Duration::from_millis(200));
        assert_eq!(backoff(3, b, m), m);
    }

    #[test]
    fn id_floor_sorts_below_ids_of_that_millisecond() {
        let id = kit::ids::new_id();
        let ms = chrono::Utc::now().timestamp_millis();
        assert!(id_floor(ms - 5) < id);
        assert!(id_floor(ms + 5000) > id);
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
    }
}
