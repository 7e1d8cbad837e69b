//! The account operations: registration, login with lockout and optional two-step
//! sign-in (TOTP or a recovery code after the password), refresh-token rotation with
//! reuse detection, logout and profile updates.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use contract::ids::UserId;
use kit::auth::{JwtKeys, sha256_hex};
use kit::clock::Clock;
use kit::{AppError, AppResult};

use crate::domain::totp::{self, SecondFactor, TotpSecret};
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

/// How long the second step of a sign-in may wait for its code.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

const BAD_CREDENTIALS: &str = "invalid email or password";
const BAD_CODE: &str = "invalid or already used code";

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
    clock: Clock,
}

/// A started enrolment: what the authenticator app is given.
pub struct Enrolment {
    /// Base32, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/...`, usually shown as a QR code.
    pub uri: String,
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("token lifetimes fit in chrono")
}

impl Accounts {
    pub fn new(store: Store, keys: JwtKeys, clock: Clock) -> Accounts {
        Accounts { store, keys, clock }
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
        let now = self.clock.now();
        // The lockout key is the normalised email, whether or not an account exists.
        let key = match Email::parse(email) {
            Ok(e) => e.key(),
            Err(_) => email.trim().to_lowercase(),
        };
        self.refuse_when_locked(&key, now).await?;
        let user = self.store.user_by_email_key(&key).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = password.chars().count() <= domain::PASSWORD_MAX
            && domain::password::verify(password, stored).await?;
        match (ok, user) {
            (true, Some(user)) => {
                let two_step = self.store.two_factor(&user.id).await?;
                if two_step.is_some_and(|t| t.enabled) {
                    return Err(self.second_step(&user, &key, now).await?);
                }
                self.store.clear_login_failures(&key).await?;
                self.start_session(user, FamilyId::new()).await
            }
            _ => {
                self.store.record_login_failure(&key, now).await?;
                Err(AppError::Unauthenticated(BAD_CREDENTIALS.into()))
            }
        }
    }

    /// `RATE_LIMITED` while `key` has had too many failed sign-ins (passwords or codes)
    /// within the window.
    async fn refuse_when_locked(&self, key: &str, now: DateTime<Utc>) -> AppResult<()> {
        let window_start = now - to_chrono(FAILURE_WINDOW);
        let failures = self.store.login_failures_since(key, window_start).await?;
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
        Ok(())
    }

    /// The password was right and two-step sign-in is on: a challenge (random, kept
    /// only as its hash) that `login_with_code` takes with the code.
    async fn second_step(&self, user: &User, key: &str, now: DateTime<Utc>) -> AppResult<AppError> {
        let challenge = new_refresh_token();
        self.store
            .insert_challenge(
                &sha256_hex(&challenge),
                &user.id,
                key,
                now + to_chrono(CHALLENGE_TTL),
            )
            .await?;
        Ok(AppError::SecondStepRequired {
            challenge,
            expires_in_secs: CHALLENGE_TTL.as_secs(),
        })
    }

    /// The second step of a sign-in: the challenge from `login` and a code from the
    /// authenticator app (each accepted once) or an unused recovery code. A wrong code
    /// counts toward the same lockout as a wrong password.
    pub async fn login_with_code(&self, challenge: &str, code: &str) -> AppResult<Session> {
        let now = self.clock.now();
        let expired = || AppError::Unauthenticated("the sign-in expired; log in again".into());
        let hash = sha256_hex(challenge);
        let pending = self.store.challenge(&hash).await?.ok_or_else(expired)?;
        if pending.expires_at <= now {
            self.store.end_challenge(&hash).await?;
            return Err(expired());
        }
        self.refuse_when_locked(&pending.key, now).await?;
        let factor = SecondFactor::parse(code)?;
        let accepted = match self.store.two_factor(&pending.user_id).await? {
            Some(two_step) if two_step.enabled => match &factor {
                SecondFactor::Code(code) => match two_step.secret.check(code, now) {
                    Some(step) => self.store.take_step(&pending.user_id, step).await?,
                    None => false,
                },
                SecondFactor::Recovery(code) => {
                    self.store
                        .take_recovery_code(&pending.user_id, &totp::recovery_hash(code))
                        .await?
                }
            },
            // Turned off since the password step: the password alone signs in again.
            _ => true,
        };
        if !accepted {
            self.store.record_login_failure(&pending.key, now).await?;
            return Err(AppError::Unauthenticated(BAD_CODE.into()));
        }
        if !self.store.end_challenge(&hash).await? {
            return Err(expired());
        }
        self.store.clear_login_failures(&pending.key).await?;
        let user = self
            .store
            .user_by_id(&pending.user_id)
            .await?
            .ok_or_else(expired)?;
        if matches!(factor, SecondFactor::Recovery(_)) {
            tracing::info!(user_id = %user.id, "signed in with a recovery code");
        }
        self.start_session(user, FamilyId::new()).await
    }

    /// Whether the user's two-step sign-in is on, and how many recovery codes are left.
    pub async fn two_step_status(&self, user: &UserId) -> AppResult<(bool, usize)> {
        Ok(match self.store.two_factor(user).await? {
            Some(t) if t.enabled => (true, t.recovery_left),
            _ => (false, 0),
        })
    }

    /// Starts enrolment: a new secret for the user's authenticator app. Refused while
    /// two-step sign-in is on (turn it off first).
    pub async fn enroll_totp(&self, user_id: &UserId) -> AppResult<Enrolment> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        let secret = TotpSecret::generate();
        if !self.store.begin_two_factor(user_id, &secret).await? {
            return Err(AppError::conflict(
                "two-step sign-in is already on; turn it off before enrolling again",
                None,
            ));
        }
        Ok(Enrolment {
            secret: secret.base32(),
            uri: secret.otpauth_uri(user.username.as_str())?,
        })
    }

    /// Confirms enrolment with a first code from the app: two-step sign-in is on from
    /// now, and the ten recovery codes returned are shown this once (only their hashes
    /// are kept).
    pub async fn confirm_totp(&self, user_id: &UserId, code: &str) -> AppResult<Vec<String>> {
        let now = self.clock.now();
        let Some(pending) = self.store.two_factor(user_id).await?.filter(|t| !t.enabled) else {
            return Err(AppError::conflict(
                "no enrolment is waiting for a code; start one with enrollTotp",
                None,
            ));
        };
        let wrong = || AppError::validation("code", "wrong code; try the one your app shows now");
        let SecondFactor::Code(code) = SecondFactor::parse(code)? else {
            return Err(wrong());
        };
        let step = pending.secret.check(&code, now).ok_or_else(wrong)?;
        let codes = totp::recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| totp::recovery_hash(&c.replace('-', "")))
            .collect();
        if !self
            .store
            .confirm_two_factor(user_id, &pending.secret, step, &hashes, now)
            .await?
        {
            return Err(AppError::conflict(
                "the enrolment changed meanwhile; start again",
                None,
            ));
        }
        tracing::info!(user_id = %user_id, "two-step sign-in turned on");
        Ok(codes)
    }

    /// Turns two-step sign-in off; takes a current code from the app (accepted once).
    pub async fn disable_totp(&self, user_id: &UserId, code: &str) -> AppResult<bool> {
        let now = self.clock.now();
        let Some(current) = self.store.two_factor(user_id).await?.filter(|t| t.enabled) else {
            return Ok(false);
        };
        let wrong = || AppError::validation("code", BAD_CODE);
        let SecondFactor::Code(code) = SecondFactor::parse(code)? else {
            return Err(wrong());
        };
        let step = current.secret.check(&code, now).ok_or_else(wrong)?;
        if !self.store.take_step(user_id, step).await? {
            return Err(wrong());
        }
        self.store.remove_two_factor(user_id).await?;
        tracing::info!(user_id = %user_id, "two-step sign-in turned off");
        Ok(true)
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
