//! JWT verification at the edge: HS256 with a shared secret (JWT_SECRET) and/or
//! RS256 with keys from a JWKS file or URL. The verified user id (`sub`) keys rate
//! limiting; the original header is forwarded to subgraphs, which verify again.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use crate::config::AuthConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("Authorization header must be 'Bearer <token>'")]
    Malformed,
    #[error("Invalid or expired access token")]
    Invalid,
    #[error("Authentication required")]
    Missing,
}

pub struct Authenticator {
    hs256: Option<DecodingKey>,
    rs256: Vec<(Option<String>, DecodingKey)>,
    require: bool,
}

impl Authenticator {
    pub async fn from_config(cfg: &AuthConfig) -> anyhow::Result<Self> {
        let hs256 = cfg
            .jwt_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let mut sets: Vec<JwkSet> = Vec::new();
        if let Some(path) = &cfg.jwks_path {
            let text = std::fs::read_to_string(path)?;
            sets.push(serde_json::from_str(&text)?);
        }
        if let Some(url) = &cfg.jwks_url {
            sets.push(reqwest::get(url).await?.error_for_status()?.json().await?);
        }
        let mut rs256 = Vec::new();
        for set in sets {
            for jwk in &set.keys {
                if let Ok(key) = DecodingKey::from_jwk(jwk) {
                    rs256.push((jwk.common.key_id.clone(), key));
                }
            }
        }
        if hs256.is_none() && rs256.is_empty() {
            tracing::warn!(
                "no JWT_SECRET or JWKS configured: bearer tokens are forwarded unverified"
            );
        }
        Ok(Self {
            hs256,
            rs256,
            require: cfg.require_authentication,
        })
    }

    pub fn enabled(&self) -> bool {
        self.hs256.is_some() || !self.rs256.is_empty()
    }

    /// Verifies an `Authorization` header value. `Ok(None)` means anonymous.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Option<Claims>, AuthError> {
        let Some(header) = header else {
            return if self.require {
                Err(AuthError::Missing)
            } else {
                Ok(None)
            };
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        if !self.enabled() {
            return Ok(None);
        }
        self.verify_token(token).map(Some)
    }

    pub fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self
                .rs256
                .iter()
                .find(|(kid, _)| header.kid.is_none() || kid == &header.kid)
                .map(|(_, k)| k),
            _ => None,
        }
        .ok_or(AuthError::Invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|_| AuthError::Invalid)
    }
}
