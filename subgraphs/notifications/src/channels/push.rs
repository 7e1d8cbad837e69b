//! Web Push (RFC 8030) of notifications to a user's browsers: the payload is encrypted
//! to the browser's keys (RFC 8291 `aes128gcm`, by the RustCrypto-based
//! `web-push-native`), and the request carries the application server's VAPID
//! identification (RFC 8292: an ES256 JWT signed with `jsonwebtoken`, the crate the
//! product signs its access tokens with).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::config::{ConfigError, Secret, Vars, var_or};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde::Serialize;

use super::{Failure, OutboundPolicy, set};
use crate::domain::{PushDevice, push};

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
pub const VAPID_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The Web Push settings.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// `VAPID_PRIVATE_KEY`: the application server's P-256 private key, 32 bytes in
    /// base64url (what `web-push generate-vapid-keys` prints). Unset: a development key
    /// is made (and stored in the database) at start, with a warning.
    pub private_key: Option<Secret>,
    /// `VAPID_SUBJECT`: how a push service reaches the operator, `mailto:` or `https:`.
    pub subject: String,
    /// `PUSH_ALLOW_HOSTS`: hosts endpoints may name although they are not public (and
    /// over plain `http`), e.g. `127.0.0.1` for a local push service. Without it an
    /// endpoint must be `https` to a public address.
    pub policy: OutboundPolicy,
}

impl PushSettings {
    pub const VARS: &'static [&'static str] =
        &["VAPID_PRIVATE_KEY", "VAPID_SUBJECT", "PUSH_ALLOW_HOSTS"];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        let private_key = set(vars, "VAPID_PRIVATE_KEY").map(Secret::new);
        if let Some(key) = &private_key {
            Vapid::new(key.expose(), "mailto:check@localhost")
                .map_err(|e| ConfigError::new("VAPID_PRIVATE_KEY", e))?;
        }
        let subject = var_or(
            vars,
            "VAPID_SUBJECT",
            "mailto:no-reply@localhost".to_string(),
        )?;
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            return Err(ConfigError::new(
                "VAPID_SUBJECT",
                "expected a mailto: or https: contact",
            ));
        }
        Ok(PushSettings {
            private_key,
            subject,
            policy: OutboundPolicy::from_var(vars, "PUSH_ALLOW_HOSTS"),
        })
    }

    /// Refuses an endpoint pushes may not go to: not `https` (unless its host is
    /// allowed), or an address that is not public (names are checked when resolved).
    pub fn check_endpoint(&self, url: &reqwest::Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or_default();
        if url.scheme() != "https" && !self.policy.allows(host) {
            return Err("the endpoint must be an https:// URL".into());
        }
        self.policy
            .check_url(url.as_str())
            .map_err(|e| format!("push endpoint {e}"))
    }
}

/// The application server's VAPID key pair and contact.
pub struct Vapid {
    key: jsonwebtoken::EncodingKey,
    /// The public key, uncompressed, in base64url: what browsers subscribe with
    /// (`applicationServerKey`) and what the `k` of each request names.
    public_key: String,
    subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct VapidClaims<'a> {
    aud: &'a str,
    exp: i64,
    sub: &'a str,
}

impl Vapid {
    /// The pair of a private key given as base64url of its 32 bytes.
    pub fn new(private_key: &str, subject: &str) -> Result<Vapid, String> {
        let bytes = push::decode_base64url(private_key)
            .filter(|b| b.len() == 32)
            .ok_or("expected 32 bytes in base64url")?;
        let secret = p256::SecretKey::from_slice(&bytes).map_err(|_| "not a P-256 private key")?;
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let public = secret.public_key().to_encoded_point(false);
        Ok(Vapid {
            key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
            public_key: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            subject: subject.to_string(),
        })
    }

    /// A new random private key, as base64url of its 32 bytes.
    pub fn generate() -> String {
        loop {
            let bytes: [u8; 32] = rand::random();
            if p256::SecretKey::from_slice(&bytes).is_ok() {
                return URL_SAFE_NO_PAD.encode(bytes);
            }
        }
    }

    /// The public key (uncompressed point, base64url) web clients subscribe with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The `Authorization` header of a push to `endpoint` at `now` (unix seconds):
    /// `vapid t=<JWT>, k=<public key>`, the JWT's audience the endpoint's origin.
    pub fn authorization(&self, endpoint: &reqwest::Url, now: i64) -> Result<String, String> {
        let aud = endpoint.origin().ascii_serialization();
        let claims = VapidClaims {
            aud: &aud,
            exp: now + i64::try_from(VAPID_TTL.as_secs()).unwrap_or(43_200),
            sub: &self.subject,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("cannot sign the VAPID token: {e}"))?;
        Ok(format!("vapid t={token}, k={}", self.public_key))
    }
}

/// What a push came to when it did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushFailure {
    /// The push service no longer knows the subscription (404, 410): the device is to
    /// be removed.
    Gone(String),
    Failed(Failure),
}

/// One push: `payload` encrypted to `device`, `ttl` (how long the push service keeps
/// it for an offline device) and `urgency` (RFC 8030 `very-low` … `high`).
pub async fn send_push(
    http: &reqwest::Client,
    settings: &PushSettings,
    vapid: &Vapid,
    device: &PushDevice,
    payload: &[u8],
    ttl: Duration,
    urgency: &str,
) -> Result<(), PushFailure> {
    let failed = |f: Failure| PushFailure::Failed(f);
    let endpoint = push::push_endpoint(&device.endpoint)
        .map_err(|e| failed(Failure::permanent(e.public_message())))?;
    settings
        .check_endpoint(&endpoint)
        .map_err(|e| failed(Failure::permanent(e)))?;
    let public = push::decode_base64url(&device.p256dh)
        .and_then(|b| p256::PublicKey::from_sec1_bytes(&b).ok())
        .ok_or_else(|| failed(Failure::permanent("the device's p256dh key is unreadable")))?;
    let auth = push::decode_base64url(&device.auth)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(web_push_native::Auth::from)
        .ok_or_else(|| failed(Failure::permanent("the device's auth secret is unreadable")))?;
    let body = web_push_native::encrypt(payload.to_vec(), &public, &auth)
        .map_err(|e| failed(Failure::permanent(format!("cannot encrypt the push: {e}"))))?;
    let authorization = vapid
        .authorization(&endpoint, chrono::Utc::now().timestamp())
        .map_err(|e| failed(Failure::permanent(e)))?;
    let resp = http
        .post(endpoint)
        .header("authorization", authorization)
        .header("content-encoding", "aes128gcm")
        .header("content-type", "application/octet-stream")
        .header("ttl", ttl.as_secs().to_string())
        .header("urgency", urgency)
        .body(body)
        .send()
        .await
        .map_err(|e| failed(Failure::retry(format!("push service unreachable: {e}"))))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    if matches!(status.as_u16(), 404 | 410) {
        return Err(PushFailure::Gone(format!(
            "the push service answered HTTP {}: the subscription is gone",
            status.as_u16()
        )));
    }
    if status.is_redirection() {
        return Err(failed(Failure::permanent(format!(
            "the push service answered a redirect (HTTP {}); redirects are not followed",
            status.as_u16()
        ))));
    }
    let detail = super::error_detail(resp).await;
    Err(failed(Failure::of_status(
        "the push service",
        status,
        &detail,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vapid_token_names_the_endpoint_origin_and_the_public_key() {
        let vapid = Vapid::new(&Vapid::generate(), "mailto:ops@example.com").unwrap();
        let url = reqwest::Url::parse("https://push.example.net:8443/send/x").unwrap();
        let header = vapid.authorization(&url, 1_700_000_000).unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap();
        assert_eq!(k, vapid.public_key());
        let point = push::decode_base64url(k).unwrap();
        let key = jsonwebtoken::DecodingKey::from_ec_der(&point);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://push.example.net:8443"]);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(t, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "mailto:ops@example.com");
        assert_eq!(data.claims["exp"], 1_700_000_000 + 12 * 3600);
        assert!(Vapid::new("c2hvcnQ", "mailto:x@y.z").is_err());
    }

    #[test]
    fn endpoints_must_be_https_unless_their_host_is_allowed() {
        let mut s = PushSettings::from_vars(&[("X", "")]).unwrap();
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(s.check_endpoint(&url("https://push.example.net/x")).is_ok());
        assert!(s.check_endpoint(&url("http://push.example.net/x")).is_err());
        assert!(s.check_endpoint(&url("https://127.0.0.1/x")).is_err());
        assert!(s.check_endpoint(&url("https://10.0.0.1/x")).is_err());
        s.policy.allow_hosts = vec!["127.0.0.1".into()];
        assert!(s.check_endpoint(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(PushSettings::from_vars(&[("VAPID_SUBJECT", "ops@example.com")]).is_err());
        assert!(PushSettings::from_vars(&[("VAPID_PRIVATE_KEY", "nope")]).is_err());
    }
}
