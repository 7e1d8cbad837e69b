//! The account operations: registration, login with lockout, refresh-token rotation
//! with reuse detection, logout and profile updates.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use contract::ids::UserId;
use kit::auth::{JwtKeys, sha256_hex};
use kit::{AppError, AppResult};

use crate::domain::{self, Email, FamilyId, ProfileChange, RefreshToken, Registration, User};
use crate::store::{Store, Taken};

/// Access tokens live 15 minutes.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Refresh tokens live 30 days.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Failed logins allowed within the window before the account is locked.
pub const MAX_FAILURES: usize = 5;
/// The lockout window.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

const BAD_CREDENTIALS: &str = "invalid email or password";

/// What a successful sign-in returns.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub user: User,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    keys: JwtKeys,
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("token lifetimes fit in chrono")
}

impl Accounts {
    pub fn new(store: Store, keys: JwtKeys) -> Accounts {
        Accounts { store, keys }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn register(&self, registration: Registration) -> AppResult<Session> {
        let Registration {
            username,
            email,
            password,
            currency,
            timezone,
            first_name,
            last_name,
        } = registration;
        let password_hash = domain::password::hash(password).await?;
        let now = now_millis();
        let user = User {
            id: UserId::new(),
            username,
            email,
            password_hash,
            currency,
            timezone,
            first_name,
            last_name,
            monthly_income: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_user(&user).await? {
            Ok(()) => {}
            Err(Taken::Email) => {
                return Err(AppError::conflict(
                    "an account with this email already exists",
                    Some("email"),
                ));
            }
            Err(Taken::Username) => {
                return Err(AppError::conflict(
                    "this username is already taken",
                    Some("username"),
                ));
            }
        }
        tracing::info!(user_id = %user.id, "user registered");
        self.start_session(user, FamilyId::new()).await
    }

    pub async fn login(&self, email: &str, password: String) -> AppResult<Session> {
        let now = Utc::now();
        // The lockout key is the normalised email, whether or not an account exists.
        let key = match Email::parse(email) {
            Ok(e) => e.key(),
            Err(_) => email.trim().to_lowercase(),
        };
        let window_start = now - to_chrono(FAILURE_WINDOW);
        let failures = self.store.login_failures_since(&key, window_start).await?;
        if failures.len() >= MAX_FAILURES {
            // Unlocks when enough failures fall out of the window to leave fewer than MAX.
            let unlocking = failures[failures.len() - MAX_FAILURES];
            let retry_after = (unlocking + to_chrono(FAILURE_WINDOW) - now)
                .num_seconds()
                .max(1) as u64;
            return Err(AppError::RateLimited {
                message: format!(
                    "too many failed logins; try again in {} minute(s)",
                    retry_after.div_ceil(60)
                ),
                retry_after_secs: retry_after,
            });
        }
        let user = self.store.user_by_email_key(&key).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = password.chars().count() <= domain::PASSWORD_MAX
            && domain::password::verify(password, stored).await?;
        match (ok, user) {
            (true, Some(user)) => {
                self.store.clear_login_failures(&key).await?;
                self.start_session(user, FamilyId::new()).await
            }
            _ => {
                self.store.record_login_failure(&key, now).await?;
                Err(AppError::Unauthenticated(BAD_CREDENTIALS.into()))
            }
        }
    }

    /// Exchanges a refresh token for a new pair. Reusing an already exchanged token
    /// revokes its whole family.
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<Session> {
        let invalid = || AppError::Unauthenticated("invalid refresh token".into());
        let hash = sha256_hex(refresh_token);
        let token = self.store.refresh_token(&hash).await?.ok_or_else(invalid)?;
        if token.revoked_at.is_some() {
            return Err(invalid());
        }
        if token.used_at.is_some() {
            self.store.revoke_family(&token.family).await?;
            tracing::warn!(user_id = %token.user_id, family = %token.family, "refresh token reuse; family revoked");
            return Err(AppError::Unauthenticated(
                "refresh token was already used; all sessions of this login were signed out".into(),
            ));
        }
        if token.expires_at <= Utc::now() {
            return Err(AppError::Unauthenticated("refresh token expired".into()));
        }
        if !self.store.mark_refresh_token_used(&hash).await? {
            // Someone exchanged it a moment ago: treat as reuse.
            self.store.revoke_family(&token.family).await?;
            return Err(invalid());
        }
        let user = self
            .store
            .user_by_id(&token.user_id)
            .await?
            .ok_or_else(invalid)?;
        self.start_session(user, token.family).await
    }

    /// Signs out the login the refresh token belongs to. False when the token is unknown.
    pub async fn logout(&self, refresh_token: &str) -> AppResult<bool> {
        match self.store.refresh_token(&sha256_hex(refresh_token)).await? {
            Some(token) => {
                self.store.revoke_family(&token.family).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub async fn update_profile(&self, user_id: &UserId, change: ProfileChange) -> AppResult<User> {
        let mut user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        user.apply(change, now_millis())?;
        self.store.update_profile(&user).await?;
        Ok(user)
    }

    async fn start_session(&self, user: User, family: FamilyId) -> AppResult<Session> {
        let access_token = self.keys.issue(user.id.as_str(), ACCESS_TTL)?;
        let refresh_token = new_refresh_token();
        let now = Utc::now();
        self.store
            .insert_refresh_token(&RefreshToken {
                hash: sha256_hex(&refresh_token),
                user_id: user.id.clone(),
                family,
                created_at: now,
                expires_at: now + to_chrono(REFRESH_TTL),
                used_at: None,
                revoked_at: None,
            })
            .await?;
        Ok(Session {
            access_token,
            refresh_token,
            expires_in: ACCESS_TTL.as_secs(),
            user,
        })
    }
}
/// Now, truncated to milliseconds (what BSON dates hold), so stored and returned agree.
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
