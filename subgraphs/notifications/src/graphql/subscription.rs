//! The `Subscription` fields, fed by this instance's tail of stored notifications.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Result, Subscription};
use contract::ids::{NotificationId, UserId};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::{BudgetAlertEvent, Notification, service};
use crate::domain;

/// The caller's notifications as this instance's tail sees them. A subscriber that
/// falls more than the buffer behind gets a `SLOW_SUBSCRIBER` error and the
/// subscription ends (others are not slowed down).
pub fn user_feed(
    rx: broadcast::Receiver<Arc<domain::Notification>>,
    user: UserId,
) -> impl Stream<Item = Result<Arc<domain::Notification>>> {
    futures::stream::unfold(Some(rx), move |state| {
        let user = user.clone();
        async move {
            let mut rx = state?;
            loop {
                match rx.recv().await {
                    Ok(n) if n.user_id == user => return Some((Ok(n), Some(rx))),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let e = async_graphql::Error::new(format!(
                            "subscriber too slow: {missed} events missed; subscription closed"
                        ))
                        .extend_with(|_, ext| ext.set("code", "SLOW_SUBSCRIBER"));
                        return Some((Err(e), None));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

/// Notifications replayed per store read when a subscription resumes.
const REPLAY_PAGE: i64 = 100;

/// The caller's notifications after `after` (replayed from the store, oldest first),
/// then the live ones, each once. The live feed is joined before the replay is read,
/// so nothing stored in between is missed; nothing up to the last id replayed is
/// repeated.
fn resumed_feed(
    store: crate::store::Store,
    rx: broadcast::Receiver<Arc<domain::Notification>>,
    user: UserId,
    after: Option<NotificationId>,
) -> impl Stream<Item = Result<Arc<domain::Notification>>> {
    let after_cursor = after.clone();
    let replay = futures::stream::unfold(
        (after, store, user.clone(), false),
        |(cursor, store, user, done)| async move {
            let cursor = cursor.filter(|_| !done)?;
            match store.user_after(&user, &cursor, REPLAY_PAGE).await {
                Ok(page) => {
                    let last = page.last().map(|n| n.id.clone());
                    let done = (page.len() as i64) < REPLAY_PAGE;
                    let next = last.or(Some(cursor));
                    let items: Vec<Result<Arc<domain::Notification>>> =
                        page.into_iter().map(|n| Ok(Arc::new(n))).collect();
                    Some((futures::stream::iter(items), (next, store, user, done)))
                }
                Err(e) => Some((
                    futures::stream::iter(vec![Err(async_graphql::Error::from(e))]),
                    (None, store, user, true),
                )),
            }
        },
    )
    .flatten();
    // Ids are time-ordered: live events up to the last one replayed (or the client's
    // cursor) were delivered already. One id, not a set of them.
    let last = Arc::new(std::sync::Mutex::new(after_cursor));
    let seen = last.clone();
    let replay = replay.inspect(move |r| {
        if let Ok(n) = r
            && let Ok(mut last) = seen.lock()
        {
            *last = Some(n.id.clone());
        }
    });
    let live = user_feed(rx, user).filter(move |r| {
        let again =
            matches!(r, Ok(n) if last.lock().is_ok_and(|l| l.as_ref().is_some_and(|l| n.id <= *l)));
        async move { !again }
    });
    replay.chain(live)
}

/// The cursor a client resumes from: a notification id it saw.
fn cursor(after: Option<async_graphql::ID>) -> Result<Option<NotificationId>> {
    after
        .map(|id| {
            NotificationId::parse(&id).map_err(|_| {
                async_graphql::Error::new("`after` is not a notification id").extend_with(
                    |_, ext| {
                        ext.set("code", "VALIDATION_FAILED");
                        ext.set("field", "after");
                    },
                )
            })
        })
        .transpose()
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The caller's budget alerts as they are notified. With `after` (the id of the
    /// last alert's notification the client saw), the alerts notified since then come
    /// first, so a client that reconnects misses none.
    async fn budget_alerts(
        &self,
        ctx: &Context<'_>,
        after: Option<async_graphql::ID>,
    ) -> Result<impl Stream<Item = Result<BudgetAlertEvent>>> {
        let user = kit::auth::caller_id(ctx)?;
        let after = cursor(after)?;
        let svc = service(ctx)?;
        let rx = svc.feed.subscribe();
        Ok(
            resumed_feed(svc.store.clone(), rx, user, after).filter_map(|r| async move {
                match r {
                    Ok(n) => BudgetAlertEvent::of(n).map(Ok),
                    Err(e) => Some(Err(e)),
                }
            }),
        )
    }

    /// The caller's new notifications. With `after` (the id of the last notification
    /// the client saw), the ones made since then come first.
    async fn notification_added(
        &self,
        ctx: &Context<'_>,
        after: Option<async_graphql::ID>,
    ) -> Result<impl Stream<Item = Result<Notification>>> {
        let user = kit::auth::caller_id(ctx)?;
        let after = cursor(after)?;
        let svc = service(ctx)?;
        let rx = svc.feed.subscribe();
        Ok(resumed_feed(svc.store.clone(), rx, user, after).map(|r| r.map(Notification)))
    }
}

#[cfg(test)]
mod tests {
    use contract::ids::NotificationId;

    use super::*;
    use crate::domain::{NotificationType, Priority};

    fn notification(user: &str) -> Arc<domain::Notification> {
        Arc::new(domain::Notification {
            id: NotificationId::new(),
            user_id: UserId::from_trusted(user),
            source_key: String::new(),
            kind: NotificationType::System,
            title: String::new(),
            message: String::new(),
            priority: Priority::Low,
            channels: Vec::new(),
            read: false,
            created_at: chrono::Utc::now(),
            alert: None,
        })
    }

    fn me(user: &str) -> UserId {
        UserId::from_trusted(user)
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_its_buffer_gets_a_clear_error_and_is_closed() {
        let (tx, _) = broadcast::channel(2);
        let slow = user_feed(tx.subscribe(), me("u"));
        let mut fast = Box::pin(user_feed(tx.subscribe(), me("u")));
        // The fast one keeps up; the slow one never reads.
        for _ in 0..6 {
            tx.send(notification("u")).unwrap();
            assert!(fast.next().await.unwrap().is_ok());
        }
        drop(tx);
        let got: Vec<_> = slow.collect().await;
        assert_eq!(got.len(), 1, "an error, then the end");
        let e = got[0].as_ref().unwrap_err();
        assert!(e.message.contains("too slow"), "{}", e.message);
        assert!(fast.next().await.is_none());
    }

    #[tokio::test]
    async fn a_subscriber_sees_only_its_own_users_notifications() {
        let (tx, _) = broadcast::channel(8);
        let feed = user_feed(tx.subscribe(), me("me"));
        tx.send(notification("other")).unwrap();
        tx.send(notification("me")).unwrap();
        drop(tx);
        let got: Vec<_> = feed.collect().await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().user_id, "me");
    }
}
