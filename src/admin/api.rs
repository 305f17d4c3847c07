//! JSON routes of the admin API. `ctl` is a thin client of these.

use axum::extract::{Path, Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::identity::Identity;
use crate::config::Protocol;
use crate::migration::store::AdminAction;
use crate::migration::{Action, ControlError, Outcome, Selection, State, Transition};

/// `GET /api/v1/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusView {
    /// Every migration in config order.
    pub migrations: Vec<MigrationView>,
}

/// One migration in [`StatusView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct MigrationView {
    /// Name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Source cluster name.
    pub source: String,
    /// Target cluster name.
    pub target: String,
    /// Client listener.
    pub listen: String,
    /// Whether this build serves the protocol's traffic.
    pub served: bool,
    /// Topics (Redis: keyspaces).
    pub topics: Vec<TopicView>,
}

/// One topic in [`MigrationView`].
#[derive(Debug, Serialize, Deserialize)]
pub struct TopicView {
    /// Name.
    pub name: String,
    /// Current state.
    pub state: State,
    /// Current epoch.
    pub epoch: u64,
    /// The transition that led here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<Transition>,
    /// Protocol-specific status (copy backlog, backfill progress...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Body of `POST /api/v1/migrations/{m}/advance|rollback`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TransitionBody {
    /// Topics to move.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Move every topic instead.
    #[serde(default)]
    pub all: bool,
    /// Override failed checks (recorded in history).
    #[serde(default)]
    pub force: bool,
    /// Who asks, for the history.
    #[serde(default)]
    pub actor: Option<String>,
}

#[derive(Deserialize)]
struct CheckQuery {
    #[serde(default = "advance")]
    action: Action,
}

fn advance() -> Action {
    Action::Advance
}

#[derive(Deserialize)]
struct HistoryQuery {
    migration: Option<String>,
    topic: Option<String>,
}

/// All JSON routes plus `/metrics`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route(
            "/api/v1/migrations/{migration}/topics/{topic}/check",
            get(check),
        )
        .route("/api/v1/migrations/{migration}/advance", post(move_advance))
        .route(
            "/api/v1/migrations/{migration}/rollback",
            post(move_rollback),
        )
        .route(
            "/api/v1/migrations/{migration}/topics/{topic}/actions/{action}",
            post(topic_action),
        )
        .route(
            "/api/v1/migrations/{migration}/actions/{action}",
            post(migration_action),
        )
        .route("/api/v1/history", get(history))
        .route("/api/v1/actions", get(actions))
        .route("/metrics", get(metrics))
        .with_state(state)
}

struct ApiError(StatusCode, String);

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let code = match e {
            ControlError::UnknownMigration(_) | ControlError::UnknownTopic { .. } => {
                StatusCode::NOT_FOUND
            }
            ControlError::NoTopics => StatusCode::BAD_REQUEST,
            ControlError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

async fn status(Extract(state): Extract<AdminState>) -> Json<StatusView> {
    let migrations = state
        .controller
        .migrations()
        .iter()
        // The controller keeps the config's order.
        .zip(&state.config.migrations)
        .map(|(m, mc)| {
            let driver = m.driver();
            MigrationView {
                name: m.name.to_string(),
                protocol: mc.protocol,
                source: mc.source.clone(),
                target: mc.target.clone(),
                listen: mc.listen.to_string(),
                served: driver.is_some(),
                topics: m
                    .topics()
                    .iter()
                    .map(|t| {
                        let (state, epoch) = t.snapshot();
                        TopicView {
                            name: t.name.to_string(),
                            state,
                            epoch,
                            last_transition: None,
                            details: driver.and_then(|d| d.status(&t.name)),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let mut view = StatusView { migrations };
    attach_last_transitions(&state, &mut view).await;
    Json(view)
}

/// Fills `last_transition` from the store's snapshot, which holds it per topic.
async fn attach_last_transitions(state: &AdminState, view: &mut StatusView) {
    let Ok(snapshot) = state.controller.store().load().await else {
        return;
    };
    for migration in &mut view.migrations {
        for topic in &mut migration.topics {
            let key = (migration.name.clone(), topic.name.clone());
            topic.last_transition = snapshot.get(&key).and_then(|r| r.last_transition.clone());
        }
    }
}

async fn check(
    Extract(state): Extract<AdminState>,
    Path((migration, topic)): Path<(String, String)>,
    Query(query): Query<CheckQuery>,
) -> Result<Response, ApiError> {
    let report = state
        .controller
        .check(&migration, &topic, query.action)
        .await?;
    Ok(Json(report).into_response())
}

async fn move_advance(
    state: Extract<AdminState>,
    identity: Identity,
    path: Path<String>,
    body: Json<TransitionBody>,
) -> Result<Response, ApiError> {
    transition(state, identity, path, body, Action::Advance).await
}

async fn move_rollback(
    state: Extract<AdminState>,
    identity: Identity,
    path: Path<String>,
    body: Json<TransitionBody>,
) -> Result<Response, ApiError> {
    transition(state, identity, path, body, Action::Rollback).await
}

async fn transition(
    Extract(state): Extract<AdminState>,
    identity: Identity,
    Path(migration): Path<String>,
    Json(body): Json<TransitionBody>,
    action: Action,
) -> Result<Response, ApiError> {
    let selection = if body.all {
        Selection::All
    } else {
        Selection::Topics(body.topics)
    };
    let actor = identity.actor(body.actor, "api");
    let outcomes = state
        .controller
        .transition(&migration, selection, action, body.force, &actor)
        .await?;
    let all_moved = outcomes.iter().all(|o| matches!(o, Outcome::Moved { .. }));
    let code = if all_moved {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((code, Json(serde_json::json!({ "outcomes": outcomes }))).into_response())
}

async fn topic_action(
    Extract(state): Extract<AdminState>,
    identity: Identity,
    Path((migration, topic, action)): Path<(String, String, String)>,
    body: Option<Json<serde_json::Value>>,
) -> Result<Response, ApiError> {
    let params = body.map_or(serde_json::Value::Null, |Json(v)| v);
    let actor = identity.actor(None, "api");
    match state
        .controller
        .action(&migration, &topic, &action, params, &actor)
        .await?
    {
        Ok(report) => Ok(Json(report).into_response()),
        Err(reason) => Err(ApiError(StatusCode::CONFLICT, reason)),
    }
}

async fn migration_action(
    Extract(state): Extract<AdminState>,
    identity: Identity,
    Path((migration, action)): Path<(String, String)>,
    body: Option<Json<serde_json::Value>>,
) -> Result<Response, ApiError> {
    let params = body.map_or(serde_json::Value::Null, |Json(v)| v);
    let actor = identity.actor(None, "api");
    match state
        .controller
        .migration_action(&migration, &action, params, &actor)
        .await?
    {
        Ok(report) => Ok(Json(report).into_response()),
        Err(reason) => Err(ApiError(StatusCode::CONFLICT, reason)),
    }
}

async fn history(
    Extract(state): Extract<AdminState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<Transition>>, ApiError> {
    let entries = state
        .controller
        .history(query.migration.as_deref(), query.topic.as_deref())
        .await?;
    Ok(Json(entries))
}

async fn actions(
    Extract(state): Extract<AdminState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<AdminAction>>, ApiError> {
    let entries = state
        .controller
        .actions(query.migration.as_deref(), query.topic.as_deref())
        .await?;
    Ok(Json(entries))
}

async fn metrics(Extract(state): Extract<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
