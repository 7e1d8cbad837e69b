//! Token verification at the edge, with the one verifier of the shared contract
//! (`contract::auth`): HS256 with a shared secret (JWT_SECRET) and/or RS256 with keys
//! from a JWKS file or URL. The verified user id (`sub`) keys rate limiting; the
//! original header is forwarded to subgraphs, which verify again with the same rules.

pub use contract::auth::{Claims, TokenError as AuthError};
use contract::auth::{Verifier, bearer_token};

use crate::config::AuthConfig;

pub struct Authenticator {
    verifier: Verifier,
    require: bool,
}

impl Authenticator {
    pub async fn from_config(cfg: &AuthConfig) -> anyhow::Result<Self> {
        let mut verifier = Verifier::default();
        if let Some(secret) = &cfg.jwt_secret {
            verifier = verifier.with_hs256(secret);
        }
        if let Some(path) = &cfg.jwks_path {
            verifier = verifier.with_jwks_json(&std::fs::read_to_string(path)?)?;
        }
        if let Some(url) = &cfg.jwks_url {
            let text = reqwest::get(url).await?.error_for_status()?.text().await?;
            verifier = verifier.with_jwks_json(&text)?;
        }
        if !verifier.is_enabled() {
            tracing::warn!(
                "no JWT_SECRET or JWKS configured: bearer tokens are forwarded unverified"
            );
        }
        Ok(Self {
            verifier,
            require: cfg.require_authentication,
        })
    }

    pub fn enabled(&self) -> bool {
        self.verifier.is_enabled()
    }

    /// Verifies an `Authorization` header value. `Ok(None)` means anonymous (or, with
    /// no keys configured, a well-formed bearer token left to the subgraphs).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Option<Claims>, AuthError> {
        let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
            return if self.require {
                Err(AuthError::Missing)
            } else {
                Ok(None)
            };
        };
        if !self.enabled() {
            return bearer_token(value)
                .map(|_| None)
                .ok_or(AuthError::Malformed);
        }
        self.verifier.verify_header(Some(value))
    }
}
