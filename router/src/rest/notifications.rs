//! `/api/notifications*`: list, mark read, mark all read, delete, unread count.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::call::{Authed, PathId, delete_by_id, field, run};
use super::error::{ApiError, ErrorBody};
use super::ops;
use super::shapes::{Connection, MessageResponse};
use super::{bool_param, int_param, query_params};
use crate::state::AppState;

/// The GraphQL selection that fills [`Notification`].
pub(super) const NOTIFICATION_FIELDS: &str =
    "id type title message priority channels read createdAt";

/// A notification: the GraphQL field names plus `_id` (= `id`) for legacy clients.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(rename = "_id", default)]
    pub legacy_id: String,
    pub id: String,
    /// `BUDGET_ALERT`, `BUDGET_EXCEEDED`, `WEEKLY_SUMMARY`, `MONTHLY_REPORT` or `SYSTEM`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    /// `LOW`, `MEDIUM` or `HIGH`.
    pub priority: String,
    /// `IN_APP`, `EMAIL`, `WEBHOOK`, `WEBSOCKET`, `SMS`, `PUSH`.
    pub channels: Vec<String>,
    pub read: bool,
    pub created_at: String,
}

impl Notification {
    fn with_legacy_id(mut self) -> Self {
        self.legacy_id = self.id.clone();
        self
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationList {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// Unread notifications in all pages.
    pub unread_count: i64,
    /// Notifications matching the query in all pages.
    pub total: i64,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationRead {
    pub message: String,
    pub notification: Notification,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllRead {
    pub message: String,
    /// How many were unread.
    pub updated_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreadCount {
    pub unread_count: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GqlList {
    total_count: i64,
    #[serde(flatten)]
    page: Connection<Notification>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 50"),
        ("unreadOnly" = Option<bool>, Query,),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses((status = 200, body = NotificationList, links(
            ("markRead" = (operation_ref = "#/paths/~1api~1notifications~1{id}~1read/put", parameters(("id" = "$response.body#/notifications/0/id")))),
            ("delete" = (operation_ref = "#/paths/~1api~1notifications~1{id}/delete", parameters(("id" = "$response.body#/notifications/0/id")))))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<NotificationList>, ApiError> {
    let params = query_params(params)?;
    let first = int_param(&params, "limit", 1, 100)?.unwrap_or(50);
    let unread = bool_param(&params, "unreadOnly")?;
    let after = params.get("cursor").filter(|s| !s.is_empty());
    let q: &str = &ops::NOTIFICATIONS;
    let vars = json!({"unread": unread, "first": first, "after": after});
    let mut data = run(&state, &caller, q, vars).await?;
    let list: GqlList = field(&mut data, "notifications")?;
    let unread_count: i64 = field(&mut data, "unreadNotificationCount")?;
    let (notifications, next_cursor) = list.page.into_page();
    Ok(Json(NotificationList {
        notifications: notifications
            .into_iter()
            .map(Notification::with_legacy_id)
            .collect(),
        unread_count,
        total: list.total_count,
        next_cursor,
    }))
}

/// Marks one notification read.
#[utoipa::path(put, path = "/api/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path,)),
    responses((status = 200, body = NotificationRead), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn mark_read(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    PathId(id): PathId,
) -> Result<Json<NotificationRead>, ApiError> {
    let q: &str = &ops::MARK_NOTIFICATION_READ;
    let mut data = run(&state, &caller, q, json!({"id": id})).await?;
    let n: Notification = field(&mut data, "markNotificationRead")?;
    Ok(Json(NotificationRead {
        message: "Notification marked as read".into(),
        notification: n.with_legacy_id(),
    }))
}

/// Marks all the caller's notifications read.
#[utoipa::path(put, path = "/api/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = AllRead), (status = 401, body = ErrorBody)))]
pub async fn mark_all_read(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<AllRead>, ApiError> {
    let q: &str = &ops::MARK_ALL_READ;
    let mut data = run(&state, &caller, q, json!({})).await?;
    let updated_count: i64 = field(&mut data, "markAllNotificationsRead")?;
    Ok(Json(AllRead {
        message: "All notifications marked as read".into(),
        updated_count,
    }))
}

/// Deletes a notification.
#[utoipa::path(delete, path = "/api/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path,)),
    responses((status = 200, body = MessageResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
    PathId(id): PathId,
) -> Result<Json<MessageResponse>, ApiError> {
    delete_by_id(&state, &caller, "deleteNotification", id, "Notification").await
}

/// How many of the caller's notifications are unread.
#[utoipa::path(get, path = "/api/notifications/unread-count", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = UnreadCount), (status = 401, body = ErrorBody)))]
pub async fn unread_count(
    State(state): State<Arc<AppState>>,
    Authed(caller): Authed,
) -> Result<Json<UnreadCount>, ApiError> {
    let mut data = run(&state, &caller, "{ unreadNotificationCount }", json!({})).await?;
    Ok(Json(UnreadCount {
        unread_count: field(&mut data, "unreadNotificationCount")?,
    }))
}
