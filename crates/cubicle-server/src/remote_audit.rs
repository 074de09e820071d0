//! The audit trail of paired devices: every request a device makes, every
//! op it sends (with the scope's verdict), every pairing and revocation, is
//! one record in the tamper-evident audit log, written *before* the action
//! runs. Without a log, or when a write fails, the device is refused: an
//! action that cannot be recorded does not happen.
//!
//! The records use the log's open `Other` kinds until `cubicle-audit` has
//! variants of its own for them:
//! `{"kind": "remote_request", "device", "device_name", "scope", "method",
//! "path", "allowed", "reason"?}`, `{"kind": "remote_op", "device",
//! "device_name", "scope", "op", "request_id"?, "allowed"}`,
//! `{"kind": "device_paired" | "device_revoked", "device", "device_name",
//! "scope", "by"}`.

use std::sync::Arc;

use cubicle_audit::{AuditLog, RecordKind};
use serde_json::{Value, json};

use crate::devices::Device;

/// The audit log, if one is open.
#[derive(Clone, Default)]
pub(crate) struct RemoteAudit {
    log: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for RemoteAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAudit")
            .field("open", &self.log.is_some())
            .finish()
    }
}

/// Why an action could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("this action could not be recorded in the audit log ({0}), so it was not done")]
pub(crate) struct NotRecorded(String);

impl RemoteAudit {
    /// Records into `log`.
    pub fn new(log: Option<Arc<AuditLog>>) -> Self {
        Self { log }
    }

    /// Appends one record (fsynced) off the async threads.
    pub async fn record(
        &self,
        session: Option<&str>,
        kind: &str,
        device: &Device,
        mut fields: Value,
    ) -> Result<(), NotRecorded> {
        let Some(log) = self.log.clone() else {
            return Err(NotRecorded("no audit log is open".into()));
        };
        let mut record = json!({
            "kind": kind,
            "device": device.id,
            "device_name": device.name,
            "scope": device.scope,
        });
        if let (Some(obj), Some(extra)) = (record.as_object_mut(), fields.as_object_mut()) {
            obj.append(extra);
        }
        let session = session.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            log.append(session.as_deref(), RecordKind::Other(record))
                .map(|_| ())
                .map_err(|e| NotRecorded(e.to_string()))
        })
        .await
        .map_err(|e| NotRecorded(e.to_string()))?
    }
}

/// The session id in an API path, if it names one.
pub(crate) fn session_of(path: &str) -> Option<&str> {
    path.strip_prefix("/api/sessions/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
}
