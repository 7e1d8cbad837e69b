//! The users subgraph's GraphQL types and resolvers.

mod households;

use std::collections::HashMap;

use async_graphql::{
    Context, EmptySubscription, ID, InputObject, MaybeUndefined, MergedObject, Object, Result,
    Schema, SimpleObject,
};
use chrono::{DateTime, Utc};
use contract::ids::UserId;
use dataloader::BatchFn;
use dataloader::non_cached::Loader;
use kit::scalars::Decimal;
use kit::{AppError, Currency};

use crate::accounts::{Accounts, Session};
use crate::domain::{self, Email, ProfileChange, Registration, Username};
use crate::households::Households;
use crate::store::Store;

pub use households::{HouseholdMutation, HouseholdQuery};

pub type UsersSchema = Schema<Query, Mutation, EmptySubscription>;

/// Batches `User` entity lookups: N representations, one database query.
pub struct UserBatcher {
    store: Store,
}

impl BatchFn<UserId, Result<Option<domain::User>, String>> for UserBatcher {
    async fn load(
        &mut self,
        keys: &[UserId],
    ) -> HashMap<UserId, Result<Option<domain::User>, String>> {
        match self.store.users_by_ids(keys).await {
            Ok(mut found) => keys
                .iter()
                .map(|k| (k.clone(), Ok(found.remove(k))))
                .collect(),
            Err(e) => {
                // Each key's internal error carries the cause, for the log.
                let message = format!("{:#}", anyhow::Error::from(e));
                keys.iter()
                    .map(|k| (k.clone(), Err(message.clone())))
                    .collect()
            }
        }
    }
}

pub type UserLoader = Loader<UserId, Result<Option<domain::User>, String>, UserBatcher>;

pub fn build_schema(accounts: Accounts, households: Households) -> UsersSchema {
    let loader: UserLoader = Loader::new(UserBatcher {
        store: accounts.store().clone(),
    })
    .with_max_batch_size(100);
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .enable_federation()
        .data(accounts)
        .data(households)
        .data(loader)
        .limit_depth(16)
        .limit_complexity(500)
        .finish()
}

/// A person using the product.
pub struct User(pub domain::User, TwoStep);

/// The user's two-step sign-in state, read once per `User` whichever of its fields ask.
#[derive(Default)]
pub struct TwoStep(tokio::sync::OnceCell<(bool, usize)>);

impl User {
    pub fn of(user: domain::User) -> User {
        User(user, TwoStep::default())
    }

    async fn two_step(&self, ctx: &Context<'_>) -> Result<(bool, usize)> {
        let accounts = ctx.data::<Accounts>()?;
        Ok(*self
            .1
            .0
            .get_or_try_init(|| accounts.two_step_status(&self.0.id))
            .await?)
    }
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn username(&self) -> &str {
        self.0.username.as_str()
    }
    async fn email(&self) -> &str {
        self.0.email.as_str()
    }
    /// ISO 4217 code of the user's home currency.
    async fn currency(&self) -> &str {
        self.0.currency.code()
    }
    /// IANA timezone in which months and budget periods are computed.
    async fn timezone(&self) -> &str {
        self.0.timezone.name()
    }
    async fn first_name(&self) -> Option<&str> {
        self.0.first_name.as_deref()
    }
    async fn last_name(&self) -> Option<&str> {
        self.0.last_name.as_deref()
    }
    /// Monthly income in the user's currency.
    async fn monthly_income(&self) -> Option<Decimal> {
        self.0.monthly_income.map(Decimal::from)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Whether signing in asks for a code from an authenticator app after the password.
    async fn totp_enabled(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.two_step(ctx).await?.0)
    }
    /// Unused recovery codes left (0 when two-step sign-in is off).
    async fn recovery_codes_left(&self, ctx: &Context<'_>) -> Result<i32> {
        let left = self.two_step(ctx).await?.1;
        Ok(i32::try_from(left).unwrap_or(i32::MAX))
    }
}

/// What an authenticator app is given to enrol: the secret (to type in) and the
/// `otpauth://` URI (to scan as a QR code). Two-step sign-in is on only after
/// `confirmTotp` with a first code.
#[derive(SimpleObject)]
pub struct TotpEnrolment {
    secret: String,
    otpauth_uri: String,
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    access_token: String,
    refresh_token: String,
    /// Seconds until the access token expires.
    expires_in: i32,
    user: User,
}

impl From<Session> for AuthPayload {
    fn from(s: Session) -> Self {
        AuthPayload {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            expires_in: i32::try_from(s.expires_in).unwrap_or(i32::MAX),
            user: User::of(s.user),
        }
    }
}

#[derive(InputObject)]
pub struct RegisterInput {
    username: String,
    email: String,
    password: String,
    currency: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    timezone: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateProfileInput {
    first_name: MaybeUndefined<String>,
    last_name: MaybeUndefined<String>,
    currency: Option<String>,
    timezone: Option<String>,
    monthly_income: MaybeUndefined<Decimal>,
}

impl RegisterInput {
    /// The registration asked for, every field checked (errors in this order).
    fn into_registration(self) -> Result<Registration, AppError> {
        Ok(Registration {
            username: Username::parse(&self.username)?,
            email: Email::parse(&self.email)?,
            password: {
                domain::check_password(&self.password)?;
                self.password
            },
            currency: (self.currency.as_deref())
                .map(domain::parse_currency)
                .transpose()?
                .unwrap_or(Currency::USD),
            timezone: (self.timezone.as_deref())
                .map(domain::parse_timezone)
                .transpose()?
                .unwrap_or(chrono_tz::UTC),
            first_name: domain::parse_name("firstName", self.first_name.as_deref())?,
            last_name: domain::parse_name("lastName", self.last_name.as_deref())?,
        })
    }
}

impl UpdateProfileInput {
    /// The change asked for; names, currency and timezone checked (in this order).
    fn into_change(self) -> Result<ProfileChange, AppError> {
        let name = |field: &str, v: MaybeUndefined<String>| {
            Option::<Option<String>>::from(v)
                .map(|n| domain::parse_name(field, n.as_deref()))
                .transpose()
        };
        Ok(ProfileChange {
            first_name: name("firstName", self.first_name)?,
            last_name: name("lastName", self.last_name)?,
            currency: (self.currency.as_deref())
                .map(domain::parse_currency)
                .transpose()?,
            timezone: (self.timezone.as_deref())
                .map(domain::parse_timezone)
                .transpose()?,
            monthly_income: Option::<Option<Decimal>>::from(self.monthly_income)
                .map(|v| v.map(|d| d.0)),
        })
    }
}

// Every root field here is nullable (`Option`): it shares the response's one `data`
// object with the other subgraphs' root fields, and a failure here must cost only this
// field (see schema/README.md, "Nullability across subgraphs").
#[derive(MergedObject, Default)]
pub struct Query(AccountQuery, HouseholdQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(AccountMutation, HouseholdMutation);

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let id = kit::auth::caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.store().user_by_id(&id).await?.map(User::of))
    }

    /// Entity resolution for `User`. A user can resolve only their own record; other
    /// ids resolve to null, so no one learns another person's details.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let me = kit::auth::caller_id(ctx)?;
        if me != id.0 {
            return Ok(None);
        }
        let loader = ctx.data::<UserLoader>()?;
        match loader.try_load(me).await {
            Ok(Ok(user)) => Ok(user.map(User::of)),
            Ok(Err(message)) => Err(AppError::internal(anyhow::anyhow!(message)).into()),
            Err(e) => Err(AppError::internal(e).into()),
        }
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload> {
        let accounts = ctx.data::<Accounts>()?;
        let session = accounts.register(input.into_registration()?).await?;
        Ok(session.into())
    }

    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.login(&email, password).await?.into())
    }

    /// Exchanges a refresh token for a new pair; the old refresh token stops working.
    async fn refresh_token(&self, ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.refresh(&refresh_token).await?.into())
    }

    /// Signs out the login the refresh token belongs to.
    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.logout(&refresh_token).await?)
    }

    /// The second step of signing in, when `login` answered `TWO_FACTOR_REQUIRED`: its
    /// `extensions.challenge` and a code from the authenticator app or a recovery code.
    /// Wrong codes count toward the same lockout as wrong passwords; each code is
    /// accepted once.
    async fn login_with_code(
        &self,
        ctx: &Context<'_>,
        challenge: String,
        code: String,
    ) -> Result<AuthPayload> {
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.login_with_code(&challenge, &code).await?.into())
    }

    /// Starts turning on two-step sign-in: a new secret for an authenticator app.
    async fn enroll_totp(&self, ctx: &Context<'_>) -> Result<TotpEnrolment> {
        let id = kit::auth::caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        let e = accounts.enroll_totp(&id).await?;
        Ok(TotpEnrolment {
            secret: e.secret,
            otpauth_uri: e.uri,
        })
    }

    /// Turns two-step sign-in on with a first code from the app. Returns the ten
    /// recovery codes, each usable once instead of a code; they are shown only now.
    async fn confirm_totp(&self, ctx: &Context<'_>, code: String) -> Result<Vec<String>> {
        let id = kit::auth::caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.confirm_totp(&id, &code).await?)
    }

    /// Turns two-step sign-in off; needs a current code from the app. False when it was
    /// not on.
    async fn disable_totp(&self, ctx: &Context<'_>, code: String) -> Result<bool> {
        let id = kit::auth::caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.disable_totp(&id, &code).await?)
    }

    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let id = kit::auth::caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        let user = accounts.update_profile(&id, input.into_change()?).await?;
        Ok(User::of(user))
    }
}
