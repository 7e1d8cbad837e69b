//! JWT access tokens: issued by the users subgraph, verified by the router and again by
//! every subgraph. The user id comes only from verified claims.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::error::AppError;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Token id.
    pub jti: String,
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: String,
}

/// What the request's credentials say about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(AuthUser),
}

impl Caller {
    /// The verified user, or `UNAUTHENTICATED`.
    pub fn require_user(&self) -> Result<&AuthUser, AppError> {
        match self {
            Caller::User(u) => Ok(u),
            Caller::Anonymous => Err(AppError::unauthenticated()),
        }
    }
}

/// The verified user id of a GraphQL request, or `UNAUTHENTICATED`.
pub fn caller_id(ctx: &async_graphql::Context<'_>) -> Result<String, AppError> {
    let caller = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous);
    Ok(caller.require_user()?.user_id.clone())
}

/// Keys for HS256 signing and verification.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Seconds of clock skew tolerated when checking `exp`.
const LEEWAY_SECS: u64 = 5;

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl JwtKeys {
    pub fn hs256(secret: &Secret) -> Self {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    /// Signs an access token for `user_id` valid for `ttl`.
    pub fn issue(&self, user_id: &str, ttl: Duration) -> Result<String, AppError> {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat,
            exp: iat + ttl.as_secs(),
            jti: crate::ids::new_id(),
        };
        self.sign(&claims)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AppError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(AppError::internal)
    }

    /// Verifies signature, algorithm and expiry. Every failure is `UNAUTHENTICATED`.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "access token expired",
                    _ => "invalid access token",
                };
                AppError::Unauthenticated(why.to_string())
            })
    }

    /// Reads an `Authorization` header value: absent means anonymous, a bearer token must verify.
    pub fn caller_from_header(&self, header: Option<&str>) -> Result<Caller, AppError> {
        let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Caller::Anonymous);
        };
        let token = bearer_token(value)
            .ok_or_else(|| AppError::Unauthenticated("expected a Bearer token".into()))?;
        let claims = self.verify(token)?;
        Ok(Caller::User(AuthUser {
            user_id: claims.sub,
        }))
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// Constant-time comparison of two secrets.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::hs256(&Secret::new(secret))
    }

    const SECRET: &str = "test-secret-test-secret-test-secret";

    #[test]
    fn issued_tokens_verify_and_carry_the_user() {
        let k = keys(SECRET);
        let token = k.issue("user-1", Duration::from_secs(900)).unwrap();
        let claims = k.verify(&token).unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.exp - claims.iat, 900);
        assert!(!claims.jti.is_empty());
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_rejected() {
        let k = keys(SECRET);
        let token = k.issue("user-1", Duration::from_secs(900)).unwrap();
        // Flip a character of the payload.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let payload = parts[1].clone();
        let flipped = if payload.ends_with('A') { "B" } else { "A" };
        parts[1] = format!("{}{}", &payload[..payload.len() - 1], flipped);
        assert!(k.verify(&parts.join(".")).is_err());

        let other = keys("another-secret-another-secret-0000");
        assert!(
            k.verify(&other.issue("user-1", Duration::from_secs(60)).unwrap())
                .is_err()
        );

        let old = Claims {
            sub: "user-1".into(),
            iat: now_secs() - 3600,
            exp: now_secs() - 120,
            jti: "j".into(),
        };
        let err = k.verify(&k.sign(&old).unwrap()).unwrap_err();
        assert!(err.public_message().contains("expired"));
    }

    #[test]
    fn header_parsing() {
        let k = keys(SECRET);
        assert_eq!(k.caller_from_header(None).unwrap(), Caller::Anonymous);
        assert!(k.caller_from_header(Some("Basic abc")).is_err());
        assert!(k.caller_from_header(Some("Bearer nonsense")).is_err());
        let token = k.issue("u", Duration::from_secs(60)).unwrap();
        let caller = k
            .caller_from_header(Some(&format!("bearer {token}")))
            .unwrap();
        assert_eq!(caller.require_user().unwrap().user_id, "u");
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
    }
}
