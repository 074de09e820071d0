//! The routes and their handlers. `router` is the one list of routes; a test
//! checks that each appears in `API.md`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cubicle_agent::{Store, Transcript};
use cubicle_protocol::events::Op;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::files::{self, FileError};
use crate::hub::{Hub, Live};
use crate::security::WS_PROTOCOL;
use crate::starter::{SessionStarter, StartRequest};

/// What the handlers share.
pub(crate) struct AppState {
    pub hub: Arc<Hub>,
    pub starter: Arc<dyn SessionStarter>,
    pub store: Store,
}

type AppStateRef = State<Arc<AppState>>;

/// Every route of the server (the security layer is added by the caller).
pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/", get(crate::ui::index))
        .route("/api/sessions", get(list_sessions).post(create_session))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/sessions/{id}/ops", post(post_op))
        .route("/api/sessions/{id}/events", get(events))
        .route("/api/sessions/{id}/files", get(list_files))
        .route("/api/sessions/{id}/files/{*path}", get(get_file))
        .with_state(state)
}

/// An API error: a status and a message for the person.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No such session or file.
    #[error("{0}")]
    NotFound(String),
    /// The session is not running.
    #[error("{0}")]
    Conflict(String),
    /// Something failed on our side.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::BadPath => ApiError::BadRequest(e.to_string()),
            FileError::NotFound => ApiError::NotFound(e.to_string()),
            FileError::Io(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Session ids are file names in the store: letters, digits, `-` and `_` only.
fn valid_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest("not a session id".into()))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

async fn create_session(
    State(app): AppStateRef,
    Json(req): Json<StartRequest>,
) -> Result<Response, ApiError> {
    let task = req.task.trim().to_owned();
    if task.is_empty() {
        return Err(ApiError::BadRequest("describe the outcome you want".into()));
    }
    let started = app.starter.start(req).await.map_err(ApiError::BadRequest)?;
    let id = started.id.clone();
    let live = app.hub.add(started);
    live.ops
        .send(Op::UserMessage { text: task })
        .map_err(|_| ApiError::Internal("the session ended as it started".into()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[derive(Serialize)]
struct SessionRow {
    id: String,
    created_at: String,
    updated_at: String,
    task: String,
    model: String,
    backend: String,
    turns: usize,
    live: bool,
}

async fn list_sessions(State(app): AppStateRef) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let (rows, warnings) = blocking(move || {
        if !store.root().join("sessions").is_dir() {
            return Ok((Vec::new(), Vec::new()));
        }
        store.list().map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    let running = app.hub.running();
    let mut sessions: Vec<SessionRow> = rows
        .into_iter()
        .map(|s| SessionRow {
            live: running.contains(&s.id),
            id: s.id,
            created_at: s.created_at,
            updated_at: s.updated_at,
            task: s.task,
            model: s.model,
            backend: s.backend,
            turns: s.turns,
        })
        .collect();
    sessions.reverse();
    Ok(Json(json!({ "sessions": sessions, "warnings": warnings })).into_response())
}

async fn load_transcript(app: &AppState, id: &str) -> Result<Transcript, ApiError> {
    valid_id(id)?;
    let path = app.store.transcript_path(id);
    let id = id.to_owned();
    blocking(move || {
        if !path.is_file() {
            return Err(ApiError::NotFound(format!("no session {id}")));
        }
        Transcript::load(&path).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
}

async fn get_session(
    State(app): AppStateRef,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = load_transcript(&app, &id).await?;
    let live = app.hub.get(&id).is_some_and(|l| !l.ended());
    Ok(Json(json!({
        "header": t.header,
        "entries": t.entries,
        "warnings": t.warnings,
        "live": live,
    }))
    .into_response())
}

fn live_session(app: &AppState, id: &str) -> Result<Arc<Live>, ApiError> {
    valid_id(id)?;
    app.hub
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("session {id} is not running here")))
}

/// Parses an op, taking the short names the API documents (`message`,
/// `stop`) beside the protocol's own.
fn parse_op(mut v: Value) -> Result<Op, ApiError> {
    if let Some(t) = v.get_mut("type") {
        let alias = match t.as_str() {
            Some("message") => Some("user_message"),
            Some("stop") => Some("shutdown"),
            _ => None,
        };
        if let Some(a) = alias {
            *t = Value::String(a.into());
        }
    }
    serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("not an op: {e}")))
}

async fn post_op(
    State(app): AppStateRef,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let live = live_session(&app, &id)?;
    let op = parse_op(body)?;
    if live.ended() || live.ops.send(op).is_err() {
        return Err(ApiError::Conflict(format!("session {id} has ended")));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "ok": true }))).into_response())
}

async fn events(
    State(app): AppStateRef,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let live = live_session(&app, &id)?;
    Ok(ws
        .protocols([WS_PROTOCOL])
        .on_upgrade(move |socket| stream_events(socket, live)))
}

async fn stream_events(mut socket: WebSocket, live: Arc<Live>) {
    let sub = live.subscribe();
    for ev in sub.replay {
        if socket
            .send(Message::Text(ev.as_ref().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let Some(mut rx) = sub.live else {
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let last = ev.contains(r#""type":"session_ended""#);
                    if socket.send(Message::Text(ev.as_ref().into())).await.is_err() {
                        return;
                    }
                    if last {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Too far behind: close, the page reconnects and replays.
                    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 4000,
                        reason: "fell behind; reconnect".into(),
                    }))).await;
                    return;
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // Ops go over HTTP; anything the page sends here is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn workspace_of(app: &AppState, id: &str) -> Result<PathBuf, ApiError> {
    valid_id(id)?;
    if let Some(live) = app.hub.get(id) {
        return Ok(live.workspace.clone());
    }
    let t = load_transcript(app, id).await?;
    Ok(PathBuf::from(t.header.workspace))
}

async fn list_files(State(app): AppStateRef, Path(id): Path<String>) -> Result<Response, ApiError> {
    let root = workspace_of(&app, &id).await?;
    let files = blocking(move || Ok(files::list(&root))).await?;
    Ok(Json(json!({ "files": files })).into_response())
}

async fn get_file(
    State(app): AppStateRef,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let root = workspace_of(&app, &id).await?;
    let (bytes, name) = blocking(move || files::read(&root, &path).map_err(ApiError::from)).await?;
    let safe_name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Served as an opaque download in a sandbox: a file the agent wrote must
    // never run as a page in this origin (it would hold the token).
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ops_take_short_names() {
        assert_eq!(parse_op(json!({"type": "stop"})).unwrap(), Op::Shutdown);
        assert_eq!(
            parse_op(json!({"type": "message", "text": "hi"})).unwrap(),
            Op::UserMessage { text: "hi".into() }
        );
        assert_eq!(
            parse_op(json!({"type": "interrupt"})).unwrap(),
            Op::Interrupt
        );
        assert!(parse_op(json!({"type": "rm -rf"})).is_err());
    }

    #[test]
    fn ids_are_plain() {
        assert!(valid_id("20261127-142501-3f9a").is_ok());
        assert!(valid_id("../etc").is_err());
        assert!(valid_id("").is_err());
    }

    /// Every route the router declares is documented in API.md.
    #[test]
    fn every_route_is_documented() {
        let src = include_str!("api.rs");
        let doc = include_str!("../API.md");
        let mut seen = 0;
        for line in src.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix(".route(\"") else {
                continue;
            };
            let path = rest.split('"').next().unwrap();
            for method in ["get", "post"] {
                if rest.contains(&format!("{method}(")) {
                    let entry = format!("`{} {path}`", method.to_uppercase());
                    assert!(doc.contains(&entry), "API.md does not document {entry}");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 8, "found only {seen} routes");
    }
}
