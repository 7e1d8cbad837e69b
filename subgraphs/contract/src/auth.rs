//! Access tokens: their claims, the one verifier the router and every subgraph use,
//! and the signer the users subgraph issues them with.
//!
//! A token is accepted only when it is signed with HS256 by the shared secret or with
//! RS256 by a key of the configured JWKS, is not expired (5 s leeway), and carries
//! `sub` (non-empty), `exp` and `iat`. Everything else — `alg: none`, another
//! algorithm, a foreign key, a missing claim, an opaque refresh token — is a
//! [`TokenError`], which every door answers as 401 / `UNAUTHENTICATED`.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Seconds of clock skew tolerated when checking `exp`.
pub const LEEWAY_SECS: u64 = 5;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Token id (empty when the issuer set none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
}

/// Why credentials were refused. Every variant is `UNAUTHENTICATED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No credentials where they are required.
    #[error("authentication required")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("expected a Bearer token")]
    Malformed,
    /// A well-formed token past its `exp`.
    #[error("access token expired")]
    Expired,
    /// Anything else: bad signature, unknown key or algorithm, missing claim.
    #[error("invalid access token")]
    Invalid,
}

impl TokenError {
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::Unauthenticated
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token of `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Verifies access tokens: HS256 with the shared secret, RS256 with JWKS keys.
#[derive(Clone, Default)]
pub struct Verifier {
    hs256: Option<DecodingKey>,
    rs256: Vec<(Option<String>, DecodingKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256_keys", &self.rs256.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &str) -> Verifier {
        Verifier::default().with_hs256(secret)
    }

    pub fn with_hs256(mut self, secret: &str) -> Verifier {
        self.hs256 = Some(DecodingKey::from_secret(secret.as_bytes()));
        self
    }

    /// Adds the RS256 keys of a JWKS (other keys of the set are passed over).
    pub fn with_jwks(mut self, set: &JwkSet) -> Verifier {
        for jwk in &set.keys {
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                self.rs256.push((jwk.common.key_id.clone(), key));
            }
        }
        self
    }

    /// Adds the RS256 keys of a JWKS document.
    pub fn with_jwks_json(self, text: &str) -> Result<Verifier, serde_json::Error> {
        let set: JwkSet = serde_json::from_str(text)?;
        Ok(self.with_jwks(&set))
    }

    /// True when any key is configured.
    pub fn is_enabled(&self) -> bool {
        self.hs256.is_some() || !self.rs256.is_empty()
    }

    /// Verifies signature, algorithm, expiry and the required claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self
                .rs256
                .iter()
                .find(|(kid, _)| header.kid.is_none() || *kid == header.kid)
                .map(|(_, k)| k),
            _ => None,
        }
        .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if claims.sub.trim().is_empty() || claims.sub.len() > 256 {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Reads an `Authorization` header value: absent (or blank) is anonymous (`None`),
    /// anything else must be a bearer token that verifies.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Option<Claims>, TokenError> {
        let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let token = bearer_token(value).ok_or(TokenError::Malformed)?;
        self.verify(token).map(Some)
    }
}

/// Signs HS256 access tokens (the users subgraph).
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
}

impl Signer {
    pub fn hs256(secret: &str) -> Signer {
        Signer {
            key: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// Signs an access token for `user_id`, valid for `ttl`, with a fresh `jti`.
    pub fn issue(
        &self,
        user_id: &str,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now_secs();
        self.sign(&Claims {
            sub: user_id.to_string(),
            iat,
            exp: iat + ttl.as_secs(),
            jti: crate::ids::new_id(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const SECRET: &str = "test-secret-test-secret-test-secret";

    fn raw(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_user() {
        let token = Signer::hs256(SECRET)
            .issue("user-1", Duration::from_secs(900))
            .unwrap();
        let claims = Verifier::hs256(SECRET).verify(&token).unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.exp - claims.iat, 900);
        assert!(!claims.jti.is_empty());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let v = Verifier::hs256(SECRET);
        let now = now_secs();
        let cases = [
            ("no iat", raw(json!({"sub": "u", "exp": now + 60}), SECRET)),
            ("no exp", raw(json!({"sub": "u", "iat": now}), SECRET)),
            ("no sub", raw(json!({"exp": now + 60, "iat": now}), SECRET)),
            ("empty sub", raw(json!({"sub": "", "exp": now + 60, "iat": now}), SECRET)),
            (
                "wrong secret",
                raw(json!({"sub": "u", "exp": now + 60, "iat": now}), "another-secret-another-secret-0"),
            ),
            ("alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5LCJpYXQiOjF9.".to_string()),
            ("opaque", "c29tZS1yZWZyZXNoLXRva2Vu".to_string()),
        ];
        for (what, token) in cases {
            assert_eq!(v.verify(&token), Err(TokenError::Invalid), "{what}");
        }
        let expired = raw(
            json!({"sub": "u", "exp": now - 120, "iat": now - 3600}),
            SECRET,
        );
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn headers_are_bearer_tokens_or_nothing() {
        let v = Verifier::hs256(SECRET);
        assert_eq!(v.verify_header(None), Ok(None));
        assert_eq!(v.verify_header(Some("  ")), Ok(None));
        assert_eq!(
            v.verify_header(Some("Basic abc")),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            v.verify_header(Some("Bearer nonsense")),
            Err(TokenError::Invalid)
        );
        let token = Signer::hs256(SECRET)
            .issue("u", Duration::from_secs(60))
            .unwrap();
        let claims = v.verify_header(Some(&format!("bearer {token}"))).unwrap();
        assert_eq!(claims.map(|c| c.sub).as_deref(), Some("u"));
    }

    #[test]
    fn a_verifier_without_keys_refuses_every_token() {
        let token = Signer::hs256(SECRET)
            .issue("u", Duration::from_secs(60))
            .unwrap();
        assert!(!Verifier::default().is_enabled());
        assert_eq!(Verifier::default().verify(&token), Err(TokenError::Invalid));
    }
}
