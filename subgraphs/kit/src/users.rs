//! What other subgraphs need to know about a user that the access token does not carry:
//! the home currency and the IANA timezone. They are read from the users subgraph's
//! `me` query with the caller's own access token (so a service can only learn about the
//! caller), and cached per user for a short time (`USER_PROFILE_TTL_SECS`, default 60):
//! a profile change shows up in the other services within that time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use serde_json::json;

use crate::config::{ConfigError, Vars, var_or};
use crate::error::AppError;
use crate::money::Currency;

/// The access token of the current request, put into the GraphQL context next to the
/// verified `Caller` so a resolver can call another subgraph on the caller's behalf.
#[derive(Clone)]
pub struct AccessToken(pub String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserProfile {
    pub currency: Currency,
    pub timezone: Tz,
}

/// Where the users subgraph is and how long its answers are kept.
#[derive(Debug, Clone)]
pub struct UsersSettings {
    /// `USERS_URL`: the users subgraph's GraphQL endpoint
    /// (default `http://127.0.0.1:3001/graphql`).
    pub url: String,
    /// `USER_PROFILE_TTL_SECS` (default 60).
    pub ttl: Duration,
}

impl UsersSettings {
    pub const VARS: &'static [&'static str] = &["USERS_URL", "USER_PROFILE_TTL_SECS"];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        Ok(UsersSettings {
            url: var_or(
                vars,
                "USERS_URL",
                "http://127.0.0.1:3001/graphql".to_string(),
            )?,
            ttl: Duration::from_secs(var_or(vars, "USER_PROFILE_TTL_SECS", 60u64)?),
        })
    }
}

pub struct UserDirectory {
    settings: UsersSettings,
    pub(crate) http: reqwest::Client,
    /// The token this service shows the users service's internal routes.
    pub(crate) service_token: Option<crate::config::Secret>,
    /// Recently read profiles, least recently used first out past `CACHE_ENTRIES`.
    cache: Mutex<lru::LruCache<String, (Instant, UserProfile)>>,
}

/// Profiles kept per service instance at most (one entry is well under 100 bytes).
pub const CACHE_ENTRIES: usize = 10_000;

impl UserDirectory {
    pub fn new(settings: UsersSettings) -> UserDirectory {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        UserDirectory {
            settings,
            http,
            service_token: None,
            cache: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(CACHE_ENTRIES).expect("a non-zero constant"),
            )),
        }
    }

    /// The same directory, showing `token` to the users service's internal routes.
    pub fn with_service_token(mut self, token: crate::config::Secret) -> UserDirectory {
        self.service_token = Some(token);
        self
    }

    /// The users subgraph's GraphQL endpoint.
    pub fn graphql_url(&self) -> &str {
        &self.settings.url
    }

    /// The users service's address for an internal `path` (its GraphQL endpoint's
    /// origin and path prefix, without `/graphql`).
    pub fn internal_url(&self, path: &str) -> String {
        let base = self.settings.url.trim_end_matches('/');
        let base = base.strip_suffix("/graphql").unwrap_or(base);
        format!("{base}{path}")
    }

    /// The caller's profile; `token` is the caller's own access token.
    pub async fn profile(&self, user_id: &str, token: &str) -> Result<UserProfile, AppError> {
        if let Some(p) = self.cached(user_id) {
            return Ok(p);
        }
        let body: serde_json::Value = self
            .http
            .post(&self.settings.url)
            .bearer_auth(token)
            .json(&json!({ "query": "{ me { id currency timezone } }" }))
            .send()
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("users subgraph unreachable: {e}")))?
            .json()
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("users subgraph answer: {e}")))?;
        let me = &body["data"]["me"];
        if me["id"].as_str() != Some(user_id) {
            // The token was accepted here but the users subgraph does not know the user
            // (deleted account) or refused the token: treat as unauthenticated.
            return Err(AppError::Unauthenticated("unknown user".into()));
        }
        let currency = me["currency"]
            .as_str()
            .and_then(|c| Currency::parse(c).ok())
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("users subgraph: bad currency")))?;
        let timezone = me["timezone"]
            .as_str()
            .and_then(|t| t.parse::<Tz>().ok())
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("users subgraph: bad timezone")))?;
        let profile = UserProfile { currency, timezone };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(user_id.to_string(), (Instant::now(), profile));
        Ok(profile)
    }

    fn cached(&self, user_id: &str) -> Option<UserProfile> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(user_id)
            .filter(|(at, _)| at.elapsed() < self.settings.ttl)
            .map(|(_, p)| *p)
    }
}

/// The caller's id and profile (currency, timezone) from the users subgraph, read with
/// the `AccessToken` and the `UserDirectory` in the GraphQL context.
pub async fn caller_profile(
    ctx: &async_graphql::Context<'_>,
) -> Result<(contract::ids::UserId, UserProfile), AppError> {
    let id = crate::auth::caller_id(ctx)?;
    let token = ctx
        .data_opt::<AccessToken>()
        .ok_or_else(AppError::unauthenticated)?;
    let users = crate::server::context_data::<UserDirectory>(ctx)?;
    let profile = users.profile(id.as_str(), &token.0).await?;
    Ok((id, profile))
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn the_profile_cache_is_bounded() {
        let users = UserDirectory::new(UsersSettings {
            url: "http://127.0.0.1:9/graphql".into(),
            ttl: Duration::from_secs(60),
        });
        let profile = UserProfile {
            currency: Currency::parse("USD").expect("a currency"),
            timezone: Tz::UTC,
        };
        let mut cache = users.cache.lock().expect("cache");
        for i in 0..CACHE_ENTRIES + 500 {
            cache.put(format!("user-{i}"), (Instant::now(), profile));
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        assert!(cache.get("user-0").is_none(), "the oldest went first");
    }
}
