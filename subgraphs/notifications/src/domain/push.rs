//! Web Push devices: a browser's push subscription, i.e. its push-service endpoint
//! (RFC 8030) and the keys its messages are encrypted to (RFC 8291).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use contract::ids::UserId;
use kit::AppError;

/// Devices one user may register.
pub const MAX_PUSH_DEVICES: u64 = 20;
/// The longest endpoint URL taken.
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// The longest device name taken.
pub const MAX_DEVICE_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    /// [`device_id`] of the endpoint: an endpoint is one device.
    pub id: String,
    pub user_id: UserId,
    pub endpoint: String,
    /// The browser's P-256 public key (65 bytes, uncompressed), base64url unpadded.
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url unpadded.
    pub auth: String,
    /// What the user calls the device, if they said.
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The id of the device of `endpoint`: hex SHA-256 of the URL.
pub fn device_id(endpoint: &str) -> String {
    kit::auth::sha256_hex(endpoint)
}

/// An endpoint as a client gave it: an absolute `http(s)` URL with a host, without
/// user info or fragment, at most [`MAX_ENDPOINT_BYTES`]. Whether plain `http` and its
/// host are allowed is the delivery policy's to say.
pub fn push_endpoint(raw: &str) -> Result<reqwest::Url, AppError> {
    let bad = |m: &str| AppError::validation("endpoint", m);
    let raw = raw.trim();
    if raw.len() > MAX_ENDPOINT_BYTES {
        return Err(bad("the endpoint is longer than 2048 bytes"));
    }
    let url = reqwest::Url::parse(raw).map_err(|_| bad("the endpoint is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("the endpoint must be an https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(bad("the endpoint must not carry user info or a fragment"));
    }
    Ok(url)
}

/// Base64url text (padded or not) as bytes.
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
}

/// Bytes as unpadded base64url.
pub fn encode_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The subscription's `keys.p256dh` (a P-256 point, uncompressed) and `keys.auth`
/// (16 bytes), checked, as unpadded base64url.
pub fn push_keys(p256dh: &str, auth: &str) -> Result<(String, String), AppError> {
    let point = decode_base64url(p256dh)
        .filter(|b| b.len() == 65 && p256::PublicKey::from_sec1_bytes(b).is_ok())
        .ok_or_else(|| {
            AppError::validation(
                "keys.p256dh",
                "not a P-256 public key (65 bytes, uncompressed, base64url)",
            )
        })?;
    let secret = decode_base64url(auth)
        .filter(|b| b.len() == 16)
        .ok_or_else(|| AppError::validation("keys.auth", "not a 16-byte secret (base64url)"))?;
    Ok((encode_base64url(&point), encode_base64url(&secret)))
}

/// A device name: trimmed, at most [`MAX_DEVICE_NAME_CHARS`], no control characters;
/// empty is none.
pub fn device_name(raw: &str) -> Result<Option<String>, AppError> {
    let name = raw.trim();
    if name.chars().count() > MAX_DEVICE_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::validation(
            "deviceName",
            "at most 100 characters, without control characters",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_keys_are_checked() {
        assert!(push_endpoint("https://push.example.net/send/abc").is_ok());
        assert!(push_endpoint("ftp://push.example.net/x").is_err());
        assert!(push_endpoint("https://user:pw@push.example.net/x").is_err());
        assert!(push_endpoint(&format!("https://p.example/{}", "a".repeat(2100))).is_err());
        let point = p256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .public_key();
        let sec1 = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&point, false);
        let p256dh = encode_base64url(sec1.as_bytes());
        let auth = encode_base64url(&[1u8; 16]);
        assert_eq!(
            push_keys(&format!("{p256dh}="), &auth).unwrap(),
            (p256dh.clone(), auth.clone())
        );
        let e = push_keys(&encode_base64url(&[4u8; 65]), &auth).unwrap_err();
        assert_eq!(
            e.public_message(),
            "not a P-256 public key (65 bytes, uncompressed, base64url)"
        );
        assert!(push_keys(&p256dh, &encode_base64url(&[1u8; 15])).is_err());
        assert_eq!(device_name("  ").unwrap(), None);
        assert!(device_name("tab\there").is_err());
        assert!(device_name(&"x".repeat(101)).is_err());
    }
}
