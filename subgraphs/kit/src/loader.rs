//! Batched loading of a user's records for resolvers (`async_graphql::dataloader`):
//! resolvers that each ask for one record (entity resolvers called once per
//! representation, a field of every item of a list) are answered together by one
//! query per user instead of one query each.
//!
//! A loader is kept in the schema's data and shared by every request; each key names
//! the user whose record it is (the caller, from the token), and a batch reads each
//! user's records with that user in the filter, so one caller's load never returns
//! another's record.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use contract::ids::UserId;

use crate::AppError;

/// Most keys in one batch (a batch that would be larger is split).
const MAX_BATCH: usize = 100;

/// Reads records of one user by key.
pub trait UserBatch: Send + Sync + 'static {
    type Key: Hash + Eq + Clone + Send + Sync + 'static;
    type Value: Clone + Send + Sync + 'static;

    /// `user`'s records among `keys`; keys naming none of them are left out.
    fn load(
        &self,
        user: &UserId,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<HashMap<Self::Key, Self::Value>, AppError>> + Send;
}

/// The [`Loader`] of a [`UserBatch`]: keys grouped by user, one `load` per user.
pub struct ByUser<B>(B);

impl<B: UserBatch> Loader<(UserId, B::Key)> for ByUser<B> {
    type Value = B::Value;
    /// The failure as text (a loader's error is shared by every key of the batch).
    type Error = Arc<String>;

    async fn load(
        &self,
        keys: &[(UserId, B::Key)],
    ) -> Result<HashMap<(UserId, B::Key), B::Value>, Self::Error> {
        let mut by_user: HashMap<&UserId, Vec<B::Key>> = HashMap::new();
        for (user, key) in keys {
            by_user.entry(user).or_default().push(key.clone());
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (user, keys) in by_user {
            let found = self
                .0
                .load(user, &keys)
                .await
                .map_err(|e| Arc::new(format!("{:#}", anyhow::Error::from(e))))?;
            out.extend(found.into_iter().map(|(k, v)| ((user.clone(), k), v)));
        }
        Ok(out)
    }
}

/// A shared loader over `batch`, for the schema's data.
pub fn loader<B: UserBatch>(batch: B) -> UserLoader<B> {
    UserLoader(DataLoader::new(ByUser(batch), tokio::spawn).max_batch_size(MAX_BATCH))
}

/// A [`UserBatch`]'s loader, kept in a schema's data.
pub struct UserLoader<B: UserBatch>(DataLoader<ByUser<B>>);

impl<B: UserBatch> UserLoader<B> {
    /// `user`'s record `key`, loaded together with the other loads of the moment.
    pub async fn load(&self, user: &UserId, key: B::Key) -> Result<Option<B::Value>, AppError> {
        self.0
            .load_one((user.clone(), key))
            .await
            .map_err(|message| AppError::internal(anyhow::anyhow!("{message}")))
    }
}
