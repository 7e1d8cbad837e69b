//! Two-step sign-in: time-based one-time codes (RFC 6238 with the authenticator-app
//! convention: HMAC-SHA-1, 6 digits, 30-second steps, one step of clock drift either
//! way) and single-use recovery codes. Codes are computed by `totp-rs`; which step a
//! code was accepted for is kept so that no code is accepted twice.

use chrono::{DateTime, Utc};
use kit::AppError;
use totp_rs::{Algorithm, Builder, Totp};

/// Seconds a code is shown for.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Shown by authenticator apps above the account name.
pub const ISSUER: &str = "Smart Expense Tracker";
/// Bytes of a shared secret (160 bits, RFC 4226's recommendation for HMAC-SHA-1).
const SECRET_BYTES: usize = 20;
/// Characters of a recovery code, without its separator (base32: 5 bits each).
const RECOVERY_LEN: usize = 10;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The secret an authenticator app and the service share.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A new random secret.
    pub fn generate() -> TotpSecret {
        let bytes: [u8; SECRET_BYTES] = rand::random();
        TotpSecret(bytes.to_vec())
    }

    /// A secret as stored (base32, RFC 4648, no padding).
    pub fn from_base32(text: &str) -> Option<TotpSecret> {
        let secret = totp_rs::Secret::try_from_base32(text).ok()?;
        (secret.as_ref().len() >= 16).then(|| TotpSecret(secret.as_ref().to_vec()))
    }

    /// Base32 (RFC 4648, no padding): what is stored and what an app is given.
    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone()).to_base32()
    }

    fn totp(&self, account: &str) -> Result<Totp, AppError> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS as u8)
            .with_step_duration(STEP_SECS)
            .with_skew(1)
            .with_secret(self.0.clone())
            .with_account_name(account)
            .with_issuer(Some(ISSUER))
            .build()
            .map_err(|e| AppError::internal(anyhow::anyhow!("TOTP set-up: {e}")))
    }

    /// The `otpauth://totp/...` URI an authenticator app enrols from (usually as a QR code).
    pub fn otpauth_uri(&self, account: &str) -> Result<String, AppError> {
        self.totp(account)?
            .to_url()
            .map_err(|e| AppError::internal(anyhow::anyhow!("TOTP URI: {e}")))
    }

    /// The step (seconds since the epoch / 30) `code` is valid for at `now`, allowing one
    /// step of drift either way; `None` for a wrong or malformed code.
    pub fn check(&self, code: &str, now: DateTime<Utc>) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let at = u64::try_from(now.timestamp()).ok()?;
        let totp = self.totp("").ok()?;
        let step = totp.check(code, at)?;
        i64::try_from(step).ok()
    }

    /// The code shown at `at` (tests and tools play the authenticator app with it).
    pub fn code_at(&self, at: DateTime<Utc>) -> String {
        let at = u64::try_from(at.timestamp()).unwrap_or(0);
        self.totp("")
            .map(|t| t.generate(at).to_string())
            .unwrap_or_default()
    }
}

/// What a person types at the second step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// Six digits from the authenticator app.
    Code(String),
    /// A recovery code, normalised (lower case, no separator).
    Recovery(String),
}

impl SecondFactor {
    /// Six digits are an app code; ten base32 characters (a dash or spaces anywhere, any
    /// case) a recovery code; anything else is refused.
    pub fn parse(input: &str) -> Result<SecondFactor, AppError> {
        let compact: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if compact.len() == DIGITS && compact.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(SecondFactor::Code(compact));
        }
        let lower = compact.to_ascii_lowercase();
        if lower.len() == RECOVERY_LEN && lower.bytes().all(|b| BASE32.contains(&b)) {
            return Ok(SecondFactor::Recovery(lower));
        }
        Err(AppError::validation(
            "code",
            "must be the 6-digit code from your authenticator app or one of your recovery codes",
        ))
    }
}

/// Ten new recovery codes, `xxxxx-xxxxx` (50 random bits each).
pub fn recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..RECOVERY_LEN)
                .map(|_| char::from(BASE32[usize::from(rand::random::<u8>() & 31)]))
                .collect();
            let (a, b) = chars.split_at(RECOVERY_LEN / 2);
            format!(
                "{}-{}",
                a.iter().collect::<String>(),
                b.iter().collect::<String>()
            )
        })
        .collect()
}

/// What is stored of a recovery code: the SHA-256 of its normalised form.
pub fn recovery_hash(normalised: &str) -> String {
    kit::auth::sha256_hex(normalised)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// RFC 6238 appendix B: the SHA-1 secret "12345678901234567890" at 59 s is 94287082
    /// (8 digits); its last six digits are the 6-digit code.
    #[test]
    fn codes_follow_rfc_6238() {
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        let at = Utc.timestamp_opt(59, 0).unwrap();
        assert_eq!(secret.code_at(at), "287082");
        assert_eq!(secret.check("287082", at), Some(1));
        let later = Utc.timestamp_opt(1_111_111_109, 0).unwrap();
        assert_eq!(secret.code_at(later), "081804");
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_no_further() {
        let secret = TotpSecret::generate();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 15).unwrap();
        let step = now.timestamp() / 30;
        let code = secret.code_at(now);
        assert_eq!(secret.check(&code, now), Some(step));
        assert_eq!(
            secret.check(&code, now + chrono::Duration::seconds(30)),
            Some(step)
        );
        assert_eq!(
            secret.check(&code, now - chrono::Duration::seconds(30)),
            Some(step)
        );
        assert_eq!(
            secret.check(&code, now + chrono::Duration::seconds(75)),
            None
        );
        assert_eq!(secret.check("12345", now), None);
        assert_eq!(secret.check("abcdef", now), None);
    }

    #[test]
    fn secrets_round_trip_through_base32_and_the_uri_names_the_account() {
        let secret = TotpSecret::generate();
        let back = TotpSecret::from_base32(&secret.base32()).unwrap();
        assert_eq!(back, secret);
        let uri = secret.otpauth_uri("alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains("alice"), "{uri}");
        assert!(
            uri.contains(&format!("secret={}", secret.base32())),
            "{uri}"
        );
        assert!(TotpSecret::from_base32("not base32!").is_none());
    }

    #[test]
    fn second_factors_are_told_apart() {
        assert_eq!(
            SecondFactor::parse(" 123 456 ").unwrap(),
            SecondFactor::Code("123456".into())
        );
        assert_eq!(
            SecondFactor::parse("ABCDE-23456").unwrap(),
            SecondFactor::Recovery("abcde23456".into())
        );
        for bad in [
            "",
            "12345",
            "1234567",
            "abcde-2345",
            "abcde-1",
            "drop table",
        ] {
            assert!(SecondFactor::parse(bad).is_err(), "{bad}");
        }
        let codes = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for c in &codes {
            assert!(matches!(
                SecondFactor::parse(c),
                Ok(SecondFactor::Recovery(_))
            ));
        }
    }
}
