//! The caller of a subgraph request. Tokens are verified by the one verifier of the
//! shared contract (`contract::auth`); this module only turns its answer into a
//! [`Caller`] and the subgraph's [`AppError`].

use std::time::Duration;

pub use contract::auth::{Claims, TokenError, bearer_token, now_secs};
use contract::auth::{Signer, Verifier};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::error::AppError;

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

/// The verified user of a GraphQL request, or `UNAUTHENTICATED`.
pub fn caller_id(ctx: &async_graphql::Context<'_>) -> Result<contract::ids::UserId, AppError> {
    let caller = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous);
    Ok(contract::ids::UserId::from_trusted(
        caller.require_user()?.user_id.as_str(),
    ))
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        AppError::Unauthenticated(e.to_string())
    }
}

/// A subgraph's token keys: the contract's verifier (and, for the users subgraph, its
/// signer) over the shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    signer: Signer,
    verifier: Verifier,
}

impl JwtKeys {
    pub fn hs256(secret: &Secret) -> Self {
        JwtKeys {
            signer: Signer::hs256(secret.expose()),
            verifier: Verifier::hs256(secret.expose()),
        }
    }

    /// The verifier, for code that only reads tokens.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Signs an access token for `user_id` valid for `ttl`.
    pub fn issue(&self, user_id: &str, ttl: Duration) -> Result<String, AppError> {
        self.signer.issue(user_id, ttl).map_err(AppError::internal)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AppError> {
        self.signer.sign(claims).map_err(AppError::internal)
    }

    /// Verifies a token. Every failure is `UNAUTHENTICATED`.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        Ok(self.verifier.verify(token)?)
    }

    /// Reads an `Authorization` header value: absent means anonymous, a bearer token must verify.
    pub fn caller_from_header(&self, header: Option<&str>) -> Result<Caller, AppError> {
        Ok(match self.verifier.verify_header(header)? {
            None => Caller::Anonymous,
            Some(claims) => Caller::User(AuthUser {
                user_id: claims.sub,
            }),
        })
    }
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

    const SECRET: &str = "test-secret-test-secret-test-secret";

    #[test]
    fn headers_become_callers() {
        let k = JwtKeys::hs256(&Secret::new(SECRET));
        assert_eq!(k.caller_from_header(None).unwrap(), Caller::Anonymous);
        let err = k.caller_from_header(Some("Basic abc")).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::Unauthenticated);
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
