//! Phone numbers for SMS: E.164 numbers, their verification codes, and SMS texts kept
//! within two segments.

use std::time::Duration;

use chrono::{DateTime, Utc};
use contract::ids::UserId;
use hmac::{Hmac, Mac};
use kit::AppError;
use sha2::Sha256;

/// How long a verification code can be confirmed.
pub const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong codes allowed before the code is void.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// The least time between two codes sent to a user.
pub const RESEND_AFTER: Duration = Duration::from_secs(30);
/// The most codes sent to a user within an hour.
pub const MAX_CODES_PER_HOUR: usize = 5;

/// A code sent to a number the user asked to use, not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneVerification {
    pub user_id: UserId,
    /// E.164.
    pub phone: String,
    /// [`code_hash`] of the code: the code itself is never stored.
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    /// Wrong codes tried so far.
    pub attempts: i64,
    /// When codes were sent within the last hour (the throttle).
    pub sent: Vec<DateTime<Utc>>,
}

impl PhoneVerification {
    /// The send times of a new code at `now` after `previous` (the last hour's, and
    /// now), or `RATE_LIMITED` while the user has had a code too recently or too often.
    pub fn sends_after(
        previous: Option<&PhoneVerification>,
        now: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, AppError> {
        let hour = chrono::Duration::hours(1);
        let mut sent: Vec<DateTime<Utc>> = previous
            .map(|p| p.sent.iter().copied().filter(|t| *t > now - hour).collect())
            .unwrap_or_default();
        sent.sort();
        let wait = |until: DateTime<Utc>, why: &str| AppError::RateLimited {
            message: why.to_string(),
            retry_after_secs: u64::try_from((until - now).num_seconds().max(1)).unwrap_or(1),
        };
        if let Some(last) = sent.last()
            && now - *last < chrono::Duration::from_std(RESEND_AFTER).unwrap_or(hour)
        {
            return Err(wait(
                *last + chrono::Duration::from_std(RESEND_AFTER).unwrap_or(hour),
                "a code was sent moments ago; wait before asking for another",
            ));
        }
        if sent.len() >= MAX_CODES_PER_HOUR {
            return Err(wait(
                sent[sent.len() - MAX_CODES_PER_HOUR] + hour,
                "too many codes within an hour; try again later",
            ));
        }
        sent.push(now);
        Ok(sent)
    }

    /// Wrong codes that may still be tried.
    pub fn attempts_left(&self) -> i64 {
        (MAX_CODE_ATTEMPTS - self.attempts).max(0)
    }
}

/// A phone number in E.164 (`+` and 8 to 15 digits, the first not 0); spaces, dots,
/// dashes and brackets between digits are dropped.
pub fn phone_number(raw: &str) -> Result<String, AppError> {
    let number: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = number.strip_prefix('+').unwrap_or("");
    let ok = raw.len() <= 32
        && (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        return Err(AppError::validation(
            "phoneNumber",
            "not a phone number in international form (E.164, e.g. +14155550100)",
        ));
    }
    Ok(number)
}

/// A code as typed: digits only (spaces dropped), at most 10.
pub fn verification_code(raw: &str) -> Result<String, AppError> {
    let code: String = raw.chars().filter(|c| *c != ' ').collect();
    if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::validation(
            "code",
            "the code is the digits of the SMS",
        ));
    }
    Ok(code)
}

/// A new six-digit code.
pub fn new_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// The stored form of `code` for `user` and `phone`: hex HMAC-SHA256 under `key`.
pub fn code_hash(key: &str, user: &UserId, phone: &str, code: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    for part in [user.as_str(), phone, code] {
        mac.update(part.as_bytes());
        mac.update(b"|");
    }
    hex::encode(mac.finalize().into_bytes())
}

/// GSM 03.38 basic characters (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension characters (an escape and a septet each).
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Septets of `c` in GSM-7, or `None` when GSM-7 has no such character.
fn septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Two segments: 2 × 153 septets in GSM-7, 2 × 67 UTF-16 units in UCS-2.
pub const GSM7_TWO_SEGMENTS: usize = 306;
pub const UCS2_TWO_SEGMENTS: usize = 134;

/// `text` within two SMS segments: whole when it fits (160/306 septets in GSM-7, or
/// 70/134 UTF-16 units when a character is not GSM-7), otherwise cut at a word
/// boundary where one is near, never inside a character, and ended by an ellipsis.
pub fn sms_text(text: &str) -> String {
    let text = text.trim();
    let gsm = text.chars().all(|c| septets(c).is_some());
    let (size, limit, ellipsis): (fn(char) -> usize, usize, &str) = if gsm {
        (|c| septets(c).unwrap_or(2), GSM7_TWO_SEGMENTS, "...")
    } else {
        (char::len_utf16, UCS2_TWO_SEGMENTS, "…")
    };
    if text.chars().map(size).sum::<usize>() <= limit {
        return text.to_string();
    }
    let room = limit - ellipsis.chars().map(size).sum::<usize>();
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += size(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    let mut cut = &text[..end];
    // A word boundary within the last 20 characters reads better than half a word.
    if let Some(space) = cut.rfind(' ')
        && cut[space..].chars().count() <= 20
    {
        cut = &cut[..space];
    }
    format!("{}{ellipsis}", cut.trim_end())
}

/// Segments `text` takes (after [`sms_text`]: 1 or 2).
pub fn sms_segments(text: &str) -> usize {
    let (units, single, per) = if text.chars().all(|c| septets(c).is_some()) {
        (text.chars().filter_map(septets).sum::<usize>(), 160, 153)
    } else {
        (text.chars().map(char::len_utf16).sum::<usize>(), 70, 67)
    };
    if units <= single {
        1
    } else {
        units.div_ceil(per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_taken_in_e164_only() {
        assert_eq!(phone_number("+1 (415) 555-0100").unwrap(), "+14155550100");
        for bad in [
            "4155550100",
            "+0123456789",
            "+1234",
            "+1415555010012345",
            "+1415abc0100",
        ] {
            assert!(phone_number(bad).is_err(), "{bad}");
        }
        assert!(verification_code("12 34 56").is_ok());
        assert!(verification_code("12a456").is_err());
    }

    #[test]
    fn texts_stay_within_two_segments_and_are_cut_cleanly() {
        let short = "Budget exceeded: food. You have used 105% of your food budget.";
        assert_eq!(sms_text(short), short);
        assert_eq!(sms_segments(short), 1);
        let long = "word ".repeat(100);
        let fitted = sms_text(&long);
        assert!(fitted.ends_with("word..."), "{fitted}");
        assert!(fitted.chars().count() <= GSM7_TWO_SEGMENTS);
        assert_eq!(sms_segments(&fitted), 2);
        // An extension character takes two septets.
        let braces = "{".repeat(200);
        let fitted = sms_text(&braces);
        assert_eq!(fitted, format!("{}...", "{".repeat(151)));
        // One character outside GSM-7 makes it UCS-2: 134 units, emoji never split.
        let emoji = "Budget 🚨 ".repeat(30);
        let fitted = sms_text(&emoji);
        assert!(fitted.ends_with('…'), "{fitted}");
        assert!(fitted.encode_utf16().count() <= UCS2_TWO_SEGMENTS);
        assert_eq!(sms_segments(&fitted), 2);
    }

    #[test]
    fn codes_are_throttled() {
        let now = Utc::now();
        let user = UserId::from_trusted("u");
        let mut v = PhoneVerification {
            user_id: user.clone(),
            phone: "+14155550100".into(),
            code_hash: code_hash("k", &user, "+14155550100", "123456"),
            expires_at: now,
            attempts: 0,
            sent: vec![now - chrono::Duration::seconds(10)],
        };
        assert!(PhoneVerification::sends_after(Some(&v), now).is_err());
        v.sent = (1..=5)
            .map(|m| now - chrono::Duration::minutes(m * 10))
            .collect();
        assert!(PhoneVerification::sends_after(Some(&v), now).is_err());
        v.sent.truncate(4);
        assert_eq!(
            PhoneVerification::sends_after(Some(&v), now).unwrap().len(),
            5
        );
        assert_ne!(v.code_hash, code_hash("k", &user, "+14155550100", "123457"));
        assert_eq!(new_code().len(), 6);
    }
}
