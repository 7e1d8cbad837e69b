//! The users subgraph's GraphQL types and resolvers.

use std::collections::HashMap;

use async_graphql::{
    Context, EmptySubscription, ID, InputObject, MaybeUndefined, Object, Result, Schema,
    SimpleObject,
};
use chrono::{DateTime, Utc};
use dataloader::BatchFn;
use dataloader::non_cached::Loader;
use kit::AppError;
use kit::money::Money;
use kit::scalars::Decimal;

use crate::accounts::{self, Accounts, ProfileChange, Session};
use crate::store::{Store, UserDoc};

pub type UsersSchema = Schema<Query, Mutation, EmptySubscription>;

/// Batches `User` entity lookups: N representations, one database query.
pub struct UserBatcher {
    store: Store,
}

impl BatchFn<String, Result<Option<UserDoc>, String>> for UserBatcher {
    async fn load(&mut self, keys: &[String]) -> HashMap<String, Result<Option<UserDoc>, String>> {
        match self.store.users_by_ids(keys).await {
            Ok(mut found) => keys
                .iter()
                .map(|k| (k.clone(), Ok(found.remove(k))))
                .collect(),
            Err(e) => {
                let message = e.public_message();
                keys.iter()
                    .map(|k| (k.clone(), Err(message.clone())))
                    .collect()
            }
        }
    }
}

pub type UserLoader = Loader<String, Result<Option<UserDoc>, String>, UserBatcher>;

pub fn build_schema(accounts: Accounts) -> UsersSchema {
    let loader: UserLoader = Loader::new(UserBatcher {
        store: accounts.store().clone(),
    })
    .with_max_batch_size(100);
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(accounts)
        .data(loader)
        .limit_depth(16)
        .limit_complexity(500)
        .finish()
}

use kit::auth::caller_id;

/// A person using the product.
pub struct User(pub UserDoc);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// ISO 4217 code of the user's home currency.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// IANA timezone in which months and budget periods are computed.
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }
    async fn first_name(&self) -> Option<&str> {
        self.0.first_name.as_deref()
    }
    async fn last_name(&self) -> Option<&str> {
        self.0.last_name.as_deref()
    }
    /// Monthly income in the user's currency.
    async fn monthly_income(&self) -> Result<Option<Decimal>> {
        let Some(minor) = self.0.monthly_income_minor else {
            return Ok(None);
        };
        let currency = kit::Currency::parse(&self.0.currency).map_err(AppError::internal)?;
        let money = Money::from_minor(minor, currency).map_err(AppError::internal)?;
        Ok(Some(money.into()))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
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
            user: User(s.user),
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

fn change<T>(v: MaybeUndefined<T>) -> Option<Option<T>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(x) => Some(Some(x)),
    }
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let id = caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        Ok(accounts.store().user_by_id(&id).await?.map(User))
    }

    /// Entity resolution for `User`. A user can resolve only their own record; other
    /// ids resolve to null, so no one learns another person's details.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let me = caller_id(ctx)?;
        if id.0 != me {
            return Ok(None);
        }
        let loader = ctx.data::<UserLoader>()?;
        match loader.try_load(id.0).await {
            Ok(Ok(user)) => Ok(user.map(User)),
            Ok(Err(message)) => Err(AppError::internal(anyhow::anyhow!(message)).into()),
            Err(e) => Err(AppError::internal(e).into()),
        }
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload> {
        let accounts = ctx.data::<Accounts>()?;
        let session = accounts
            .register(accounts::RegisterInput {
                username: input.username,
                email: input.email,
                password: input.password,
                currency: input.currency,
                first_name: input.first_name,
                last_name: input.last_name,
                timezone: input.timezone,
            })
            .await?;
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

    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let id = caller_id(ctx)?;
        let accounts = ctx.data::<Accounts>()?;
        let user = accounts
            .update_profile(
                &id,
                ProfileChange {
                    first_name: change(input.first_name),
                    last_name: change(input.last_name),
                    currency: input.currency,
                    timezone: input.timezone,
                    monthly_income: change(input.monthly_income).map(|v| v.map(|d| d.0)),
                },
            )
            .await?;
        Ok(User(user))
    }
}
