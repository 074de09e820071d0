//! The routes and their handlers. `router` is the one list of routes; a test
//! checks that each appears in `API.md`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use cubicle_agent::{Store, Transcript};
use cubicle_protocol::events::Op;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::devices::{DeviceError, Scope};
use crate::files::{self, FileError};
use crate::hub::{Hub, Live};
use crate::insights::{self, PolicyReport};
use crate::pairing::{self, Offers, RedeemError};
use crate::remote_audit::NotRecorded;
use crate::security::{Auth, Principal, WS_PROTOCOL, scope_allows};
use crate::settings::{SettingsError, SettingsStore, SettingsUpdate};
use crate::skills::{PluginAccess, PrefsChange};
use crate::starter::{SessionStarter, StartRequest};

/// Where a pairing URL points: the network listener when one runs, else
/// loopback (for a device that reaches it through a tunnel).
pub(crate) struct PairTarget {
    /// `https://IP:PORT` or `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The network listener's certificate fingerprint.
    pub fingerprint: Option<String>,
}

/// Where the audit log is and how to verify it.
pub(crate) struct AuditView {
    pub dir: PathBuf,
    pub key: Option<Vec<u8>>,
}

/// What the handlers share.
pub(crate) struct AppState {
    pub policy: Option<PolicyReport>,
    pub audit_view: Option<AuditView>,
    pub skills: Option<cubicle_skills::SkillRoots>,
    pub prefs_dir: Option<PathBuf>,
    pub plugins: Option<PluginAccess>,
    pub settings: Option<Arc<dyn SettingsStore>>,
    pub hub: Arc<Hub>,
    pub starter: Arc<dyn SessionStarter>,
    pub store: Store,
    pub auth: Arc<Auth>,
    pub offers: Mutex<Offers>,
    pub pair_target: PairTarget,
}

type AppStateRef = State<Arc<AppState>>;

/// Every route of the server (the security layer is added by the caller).
pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/", get(crate::ui::index))
        .route("/pair", get(crate::ui::pair_page))
        .route("/api/me", get(me))
        .route("/api/pairing", post(create_pairing))
        .route("/api/pair/redeem", post(redeem_pairing))
        .route("/api/devices", get(list_devices))
        .route("/api/policy", get(get_policy))
        .route("/api/audit", get(get_audit))
        .route("/api/skills", get(list_skills))
        .route(
            "/api/skills/import",
            post(import_skill).layer(axum::extract::DefaultBodyLimit::max(MAX_SKILL_UPLOAD)),
        )
        .route(
            "/api/skills/{name}/prefs",
            get(get_prefs).post(change_prefs),
        )
        .route("/api/plugins", get(list_plugins))
        .route("/api/plugins/marketplaces", post(add_marketplace))
        .route("/api/plugins/install", post(install_plugin))
        .route("/api/settings", get(get_settings).post(save_settings))
        .route("/api/devices/{id}", delete(revoke_device))
        .route("/api/sessions", get(list_sessions).post(create_session))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/sessions/{id}/ops", post(post_op))
        .route("/api/sessions/{id}/resume", post(resume_session))
        .route("/api/sessions/{id}/events", get(events))
        .route("/api/sessions/{id}/files", get(list_files))
        .route("/api/sessions/{id}/files/{*path}", get(get_file))
        .route("/api/sessions/{id}/preview/{*path}", get(get_preview))
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
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; retry after this many seconds.
    #[error("too many attempts; try again in {0} s")]
    TooMany(u64),
    /// The action could not be audited, so it was not done.
    #[error("{0}")]
    NotRecorded(#[from] NotRecorded),
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
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut resp = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let ApiError::TooMany(secs) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
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
    let first = match live.message(task) {
        Ok(op) => op,
        Err(why) => {
            let _ = live.ops.send(Op::Shutdown);
            return Err(ApiError::BadRequest(why));
        }
    };
    live.ops
        .send(first)
        .map_err(|_| ApiError::Internal("the session ended as it started".into()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    #[serde(default)]
    message: Option<String>,
}

async fn resume_session(
    State(app): AppStateRef,
    Path(id): Path<String>,
    body: Option<Json<ResumeRequest>>,
) -> Result<Response, ApiError> {
    valid_id(&id)?;
    if app.hub.get(&id).is_some_and(|l| !l.ended()) {
        return Err(ApiError::Conflict(format!(
            "session {id} is running already"
        )));
    }
    // Refuse an unknown id before the starter does any work.
    load_transcript(&app, &id).await?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let _resuming = app
        .hub
        .claim_resume(&id)
        .ok_or_else(|| ApiError::Conflict(format!("session {id} is being resumed already")))?;
    let started = app
        .starter
        .resume(&id)
        .await
        .map_err(ApiError::BadRequest)?;
    if started.id != id {
        return Err(ApiError::Internal(format!(
            "resuming {id} started {} instead",
            started.id
        )));
    }
    let live = app.hub.add(started);
    if let Some(text) = req
        .message
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
    {
        let op = live.message(text).map_err(ApiError::BadRequest)?;
        live.ops
            .send(op)
            .map_err(|_| ApiError::Internal("the session ended as it resumed".into()))?;
    }
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
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let live = live_session(&app, &id)?;
    let op = parse_op(body)?;
    if let Some(device) = who.device() {
        let kind = op_type(&op);
        let allowed = scope_allows(device.scope, kind);
        let request_id = match &op {
            Op::Answer { id, .. } | Op::Approve { id, .. } => Some(id.clone()),
            _ => None,
        };
        let decision = match &op {
            Op::Approve { decision, .. } => serde_json::to_value(decision).ok(),
            _ => None,
        };
        app.auth
            .audit
            .record(
                Some(&id),
                "remote_op",
                device,
                json!({ "op": kind, "request_id": request_id, "decision": decision, "allowed": allowed }),
            )
            .await?;
        if !allowed {
            return Err(ApiError::Forbidden(format!(
                "this device is paired to {}, which does not allow {kind}",
                describe_scope(device.scope)
            )));
        }
    }
    let op = match op {
        Op::UserMessage { text } => live.message(text).map_err(ApiError::BadRequest)?,
        op => op,
    };
    if live.ended() || live.ops.send(op).is_err() {
        return Err(ApiError::Conflict(format!("session {id} has ended")));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "ok": true }))).into_response())
}

/// The op's `type` as the protocol writes it.
fn op_type(op: &Op) -> &'static str {
    match op {
        Op::UserMessage { .. } => "user_message",
        Op::Answer { .. } => "answer",
        Op::Approve { .. } => "approve",
        Op::Continue => "continue",
        Op::Interrupt => "interrupt",
        Op::Shutdown => "shutdown",
    }
}

fn describe_scope(scope: Scope) -> &'static str {
    match scope {
        Scope::Watch => "watch only",
        Scope::Control => "watch and control (answer, approve, pause, stop)",
    }
}

async fn me(Extension(who): Extension<Principal>) -> Response {
    match who {
        Principal::Owner => Json(json!({ "role": "owner" })).into_response(),
        Principal::Device(d) => Json(json!({
            "role": "device", "id": d.id, "name": d.name, "scope": d.scope,
        }))
        .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairingRequest {
    scope: Scope,
}

async fn create_pairing(
    State(app): AppStateRef,
    Json(req): Json<PairingRequest>,
) -> Result<Response, ApiError> {
    let code = app
        .offers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .offer(req.scope, Instant::now());
    let target = &app.pair_target;
    let mut url = format!("{}/pair#code={code}", target.base_url);
    if let Some(fp) = &target.fingerprint {
        url.push_str(&format!("&fp=sha256:{fp}"));
    }
    let qr_svg = pairing::qr_svg(&url)
        .ok_or_else(|| ApiError::Internal("the pairing URL does not fit a QR code".into()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "code": pairing::display_code(&code),
            "scope": req.scope,
            "expires_in_s": pairing::OFFER_TTL.as_secs(),
            "url": url,
            "pair_page": format!("{}/pair", target.base_url),
            "fingerprint": target.fingerprint,
            "remote": target.fingerprint.is_some(),
            "qr_svg": qr_svg,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    code: String,
    #[serde(default)]
    name: Option<String>,
}

/// A device name: trimmed, printable, at most 64 characters.
fn device_name(given: Option<&str>) -> Result<String, ApiError> {
    let name = given.map(str::trim).unwrap_or("");
    if name.is_empty() {
        return Ok("Paired device".into());
    }
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "give the device a short name without control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

fn device_error(e: DeviceError) -> ApiError {
    match e {
        DeviceError::Unknown(_) => ApiError::NotFound(e.to_string()),
        DeviceError::Full => ApiError::Conflict(e.to_string()),
        DeviceError::Io { .. } | DeviceError::Damaged { .. } => ApiError::Internal(e.to_string()),
    }
}

async fn redeem_pairing(
    State(app): AppStateRef,
    Json(req): Json<RedeemRequest>,
) -> Result<Response, ApiError> {
    let name = device_name(req.name.as_deref())?;
    let scope = app
        .offers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .redeem(&req.code, Instant::now())
        .map_err(|e| match e {
            RedeemError::RateLimited(secs) => ApiError::TooMany(secs),
            RedeemError::Invalid => ApiError::Forbidden(e.to_string()),
        })?;
    let devices = app.auth.devices.clone();
    let (device, token) = blocking(move || devices.add(&name, scope).map_err(device_error)).await?;
    let recorded = app
        .auth
        .audit
        .record(
            None,
            "device_paired",
            &device,
            json!({ "by": "pairing code" }),
        )
        .await;
    if let Err(e) = recorded {
        // Unrecorded, so undone.
        let devices = app.auth.devices.clone();
        let id = device.id.clone();
        let _ = blocking(move || devices.revoke(&id).map_err(device_error)).await;
        return Err(e.into());
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "device": device })),
    )
        .into_response())
}

async fn get_policy(State(app): AppStateRef) -> Result<Response, ApiError> {
    let report = app.policy.clone().ok_or_else(|| {
        ApiError::NotFound("this server was started without a policy to show".into())
    })?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
}

async fn get_audit(
    State(app): AppStateRef,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let view = app
        .audit_view
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no audit log is open".into()))?;
    let dir = view.dir.clone();
    let key = view.key.clone();
    let limit = q.limit.unwrap_or(100);
    let report = blocking(move || Ok(insights::audit_report(&dir, key.as_deref(), limit))).await?;
    Ok(Json(report).into_response())
}

/// Largest `.skill` file the page may upload.
const MAX_SKILL_UPLOAD: usize = 32 * 1024 * 1024;

fn skill_roots(app: &AppState) -> Result<cubicle_skills::SkillRoots, ApiError> {
    app.skills
        .clone()
        .ok_or_else(|| ApiError::NotFound("this server was started without skills".into()))
}

async fn list_skills(State(app): AppStateRef) -> Result<Response, ApiError> {
    let roots = skill_roots(&app)?;
    let list = blocking(move || Ok(crate::skills::list(&roots))).await?;
    Ok(Json(list).into_response())
}

async fn import_skill(
    State(app): AppStateRef,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let roots = skill_roots(&app)?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "drop a .skill file to import it".into(),
        ));
    }
    let (name, warnings) =
        blocking(move || crate::skills::import_upload(&roots, &body).map_err(ApiError::BadRequest))
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "warnings": warnings })),
    )
        .into_response())
}

fn prefs_dir(app: &AppState) -> Result<PathBuf, ApiError> {
    app.prefs_dir.clone().ok_or_else(|| {
        ApiError::NotFound("this server was started without a preferences folder".into())
    })
}

async fn get_prefs(
    State(app): AppStateRef,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let roots = skill_roots(&app)?;
    let dir = prefs_dir(&app)?;
    let view = blocking(move || {
        crate::skills::require_skill(&roots, &name).map_err(ApiError::NotFound)?;
        crate::skills::prefs(&dir, &name).map_err(ApiError::Internal)
    })
    .await?;
    Ok(Json(view).into_response())
}

async fn change_prefs(
    State(app): AppStateRef,
    Path(name): Path<String>,
    Json(change): Json<PrefsChange>,
) -> Result<Response, ApiError> {
    let roots = skill_roots(&app)?;
    let dir = prefs_dir(&app)?;
    let view = blocking(move || {
        crate::skills::require_skill(&roots, &name).map_err(ApiError::NotFound)?;
        crate::skills::change_prefs(&dir, &name, &change).map_err(ApiError::BadRequest)
    })
    .await?;
    Ok(Json(view).into_response())
}

fn plugin_access(app: &AppState) -> Result<PluginAccess, ApiError> {
    app.plugins
        .clone()
        .ok_or_else(|| ApiError::NotFound("this server was started without plugins".into()))
}

fn store_error(e: cubicle_skills::plugin_store::StoreError) -> ApiError {
    use cubicle_skills::plugin_store::StoreError as E;
    match e {
        E::Blocked { .. } => ApiError::Forbidden(e.to_string()),
        E::MarketplaceExists { .. } | E::AlreadyInstalled { .. } => {
            ApiError::Conflict(e.to_string())
        }
        E::NoMarketplace { .. } | E::NotInstalled { .. } => ApiError::NotFound(e.to_string()),
        E::Io { .. } => ApiError::Internal(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    }
}

async fn list_plugins(State(app): AppStateRef) -> Result<Response, ApiError> {
    let access = plugin_access(&app)?;
    let list =
        blocking(move || crate::skills::plugins(&access).map_err(ApiError::Internal)).await?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketplaceRequest {
    source: String,
}

async fn add_marketplace(
    State(app): AppStateRef,
    Json(req): Json<MarketplaceRequest>,
) -> Result<Response, ApiError> {
    let access = plugin_access(&app)?;
    let source = req.source.trim().to_owned();
    if source.is_empty() {
        return Err(ApiError::BadRequest(
            "give the marketplace's folder, git URL or OWNER/REPO".into(),
        ));
    }
    let row =
        blocking(move || crate::skills::add_marketplace(&access, &source).map_err(store_error))
            .await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallRequest {
    spec: String,
}

async fn install_plugin(
    State(app): AppStateRef,
    Json(req): Json<InstallRequest>,
) -> Result<Response, ApiError> {
    let access = plugin_access(&app)?;
    let spec = req.spec.trim().to_owned();
    if spec.is_empty() {
        return Err(ApiError::BadRequest(
            "name the plugin to install, PLUGIN@MARKETPLACE".into(),
        ));
    }
    let installed =
        blocking(move || crate::skills::install_plugin(&access, &spec).map_err(store_error))
            .await?;
    Ok((StatusCode::CREATED, Json(installed)).into_response())
}

fn settings_store(app: &AppState) -> Result<Arc<dyn SettingsStore>, ApiError> {
    app.settings
        .clone()
        .ok_or_else(|| ApiError::NotFound("this server was started without settings".into()))
}

fn settings_error(e: SettingsError) -> ApiError {
    match e {
        SettingsError::Invalid(why) => ApiError::BadRequest(why),
        SettingsError::Failed(why) => ApiError::Internal(why),
    }
}

async fn get_settings(State(app): AppStateRef) -> Result<Response, ApiError> {
    let store = settings_store(&app)?;
    let settings = blocking(move || store.load().map_err(settings_error)).await?;
    Ok(Json(settings).into_response())
}

async fn save_settings(
    State(app): AppStateRef,
    Json(update): Json<SettingsUpdate>,
) -> Result<Response, ApiError> {
    let store = settings_store(&app)?;
    let settings = blocking(move || store.save(update).map_err(settings_error)).await?;
    Ok(Json(settings).into_response())
}

async fn list_devices(State(app): AppStateRef) -> Result<Response, ApiError> {
    let devices = app.auth.devices.clone();
    let list = blocking(move || devices.list().map_err(device_error)).await?;
    Ok(Json(json!({ "devices": list })).into_response())
}

async fn revoke_device(
    State(app): AppStateRef,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let devices = app.auth.devices.clone();
    let device = blocking(move || devices.revoke(&id).map_err(device_error)).await?;
    // The revocation stands even if it cannot be recorded: refusing it would
    // keep a device the person wants gone.
    if let Err(e) = app
        .auth
        .audit
        .record(None, "device_revoked", &device, json!({ "by": "web UI" }))
        .await
    {
        tracing::warn!("{e}");
    }
    Ok(Json(json!({ "revoked": device })).into_response())
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

async fn get_preview(
    State(app): AppStateRef,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let root = workspace_of(&app, &id).await?;
    let preview = blocking(move || {
        let opened = files::open(&root, &path)?;
        if opened.size > 20 * 1024 * 1024 {
            return Ok(crate::preview::Preview::None {
                reason: "too large to preview".into(),
            });
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &opened.file, &mut bytes).map_err(FileError::Io)?;
        Ok(crate::preview::preview(
            &opened.name,
            &bytes,
            &opened.same_file,
        ))
    })
    .await?;
    Ok(Json(preview).into_response())
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
            for method in ["get", "post", "delete"] {
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
