//! The policy and audit screens' data: the effective policy as the front end
//! loaded it (each value with where it came from), and the audit log's
//! recent records with the result of verifying its whole chain.

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySetting {
    /// Dotted key, e.g. `sandbox.allowed_backends`.
    pub key: String,
    /// The value as TOML writes it.
    pub value: String,
    /// Where it came from (`managed (/etc/cubicle/managed.toml:3)`), or `default`.
    pub origin: String,
}

/// The effective policy, as shown on the policy screen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// Every setting, in schema order.
    pub settings: Vec<PolicySetting>,
    /// What the person should know about loading (ignored settings, …).
    pub notices: Vec<String>,
    /// Digest of the sources, as the audit log records it.
    pub digest: String,
}

/// Most records the audit screen shows.
pub(crate) const MAX_RECORDS: usize = 500;

/// The last `limit` records and the verification of the whole log.
pub(crate) fn audit_report(dir: &Path, key: Option<&[u8]>, limit: usize) -> Value {
    let records: Vec<Value> = match cubicle_audit::tail(dir, limit.min(MAX_RECORDS)) {
        Ok(rs) => rs
            .into_iter()
            .rev()
            .map(|r| {
                json!({
                    "seq": r.seq, "ts": r.ts, "session": r.session,
                    "kind": r.kind.name(),
                    "detail": serde_json::to_value(&r.kind).unwrap_or(Value::Null),
                })
            })
            .collect(),
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let verify = match cubicle_audit::verify(dir, key) {
        Ok(v) => json!({
            "ok": v.is_ok(),
            "records": v.records,
            "files": v.files,
            "first_bad": v.first_bad.as_ref().map(ToString::to_string),
            "torn_lines": v.torn.len(),
            "keyed": key.is_some(),
            "last": v.last.as_ref().map(|(seq, hash)| json!({ "seq": seq, "hash": hash })),
        }),
        Err(e) => json!({ "ok": false, "first_bad": e.to_string() }),
    };
    json!({ "dir": dir.display().to_string(), "records": records, "verify": verify })
}
