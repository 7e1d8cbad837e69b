//! The notifications domain over plain data: notifications and their types,
//! priorities and channels, deliveries and their states, preferences and their
//! validation, quiet hours in the user's timezone, the retry schedule and webhook
//! signatures. No GraphQL, no BSON.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A closed set of values with one stored (and wire) text each.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            /// Every value, in the order the API lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod delivery;
mod notification;
pub mod phone;
mod preferences;
pub mod push;

pub use delivery::{Attempt, Delivery, DeliveryStatus, RetryPolicy};
pub use notification::{AlertInfo, Channel, Notification, NotificationType, Priority, alert_kind};
pub use phone::PhoneVerification;
pub use preferences::{
    MAX_EMAIL_CHARS, MAX_URL_CHARS, Preferences, PreferencesChange, QuietHours, email, local_time,
    webhook_url,
};
pub use push::PushDevice;

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

/// The smallest UUIDv7 text at instant `ms` (ids issued at or after sort above it).
pub fn id_floor(ms: i64) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0);
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
}

/// A duration in whole milliseconds (saturating).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `at` to the millisecond, as stored dates hold it.
pub fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// RFC 3339 in UTC with the milliseconds that are not zero (`…T10:00:00Z`,
/// `…T10:00:00.12Z`, `…T10:00:00.123Z`): the text webhook bodies carry.
pub fn rfc3339_millis(at: DateTime<Utc>) -> String {
    let seconds = at.format("%Y-%m-%dT%H:%M:%S");
    match at.timestamp_subsec_millis() {
        0 => format!("{seconds}Z"),
        ms => format!("{seconds}.{}Z", format!("{ms:03}").trim_end_matches('0')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn stored_texts_read_back_as_the_same_values() {
        for t in NotificationType::ALL {
            assert_eq!(NotificationType::parse(t.as_str()), Some(*t));
        }
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(*p));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(*c));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(Channel::parse("PIGEON"), None);
    }
}
