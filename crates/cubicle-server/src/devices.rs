//! Paired devices: a phone or a second computer that was given a scoped,
//! revocable token by pairing. They live in one JSON file in the data folder
//! (`devices.json`, mode 0600), so they survive a restart and `cubicle pair
//! --list/--revoke` can manage them while the server is stopped or running.
//!
//! Only a SHA-256 of each token is stored: reading the file does not let
//! anyone act as a device. Every change is a read-modify-write under an
//! exclusive lock on `devices.json.lock`, written to a temporary file, synced
//! and renamed over the old one, so a crash never leaves half a file and two
//! writers (the server pairing, the CLI revoking) never lose each other's
//! change. The server re-reads the file whenever its size or modification
//! time changes, so a revocation takes effect on the next request.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a paired device may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// See sessions, their events and output files; change nothing.
    Watch,
    /// Watch, and also answer questions, approve or deny permission asks,
    /// pause and stop sessions. Never start sessions, pair or change settings.
    Control,
}

impl Scope {
    /// The scope's name as the API and the CLI write it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Watch => "watch",
            Scope::Control => "control",
        }
    }

    /// Parses `watch` or `control`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "watch" => Some(Scope::Watch),
            "control" => Some(Scope::Control),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One paired device, as listed (the token hash stays inside this module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Stable id, e.g. `dev-3f9a1c2b`.
    pub id: String,
    /// The name the person gave it when pairing.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it was paired (RFC 3339).
    pub paired_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDevice {
    #[serde(flatten)]
    device: Device,
    /// Hex SHA-256 of the device's token.
    token_sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DevicesFile {
    version: u32,
    devices: Vec<StoredDevice>,
}

const FILE_VERSION: u32 = 1;
/// Most devices one install may pair; a limit, so the file stays small.
const MAX_DEVICES: usize = 64;

/// Why the device file could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Reading, locking or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not what this version writes.
    #[error("{path} is damaged ({detail}); remove it to unpair every device")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No device has that id.
    #[error("no paired device {0} (see `cubicle pair --list`)")]
    Unknown(String),
    /// Too many devices are paired already.
    #[error("{MAX_DEVICES} devices are paired already; revoke one first")]
    Full,
}

/// Hex SHA-256 of a token.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The device file and a cache of it, re-read when the file changes.
#[derive(Debug)]
pub struct DeviceStore {
    path: PathBuf,
    cache: Mutex<Cache>,
}

/// Size, modification time and inode: a rename or a rewrite changes one.
type Stamp = (u64, SystemTime, u64);

#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    devices: Vec<StoredDevice>,
}

impl DeviceStore {
    /// The store in `data_dir` (`data_dir/devices.json`).
    pub fn in_dir(data_dir: &Path) -> DeviceStore {
        DeviceStore {
            path: data_dir.join("devices.json"),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> DeviceError {
        DeviceError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read_file(&self) -> Result<Vec<StoredDevice>, DeviceError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let file: DevicesFile =
            serde_json::from_slice(&bytes).map_err(|e| DeviceError::Damaged {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        if file.version != FILE_VERSION {
            return Err(DeviceError::Damaged {
                path: self.path.clone(),
                detail: format!("version {} is not {FILE_VERSION}", file.version),
            });
        }
        Ok(file.devices)
    }

    fn stamp(&self) -> Option<Stamp> {
        let meta = std::fs::metadata(&self.path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some((meta.len(), meta.modified().ok()?, inode))
    }

    /// The devices as the file says now (cached while it is unchanged).
    fn current(&self) -> Result<Vec<StoredDevice>, DeviceError> {
        let stamp = self.stamp();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if stamp.is_none() || cache.stamp != stamp {
            cache.devices = self.read_file()?;
            cache.stamp = stamp;
        }
        Ok(cache.devices.clone())
    }

    /// Every paired device, oldest first.
    pub fn list(&self) -> Result<Vec<Device>, DeviceError> {
        Ok(self.current()?.into_iter().map(|d| d.device).collect())
    }

    /// The device a token belongs to, if any. Every stored hash is compared,
    /// in constant time, whatever matches first.
    pub fn authenticate(&self, token: &str) -> Option<Device> {
        let devices = match self.current() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("paired devices unavailable: {e}");
                return None;
            }
        };
        let given = token_hash(token);
        let mut found = None;
        for d in devices {
            if bool::from(given.as_bytes().ct_eq(d.token_sha256.as_bytes())) {
                found = Some(d.device);
            }
        }
        found
    }

    /// Changes the file under its lock: read, change, write atomically.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<StoredDevice>) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let lock_path = self.path.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        let mut devices = self.read_file()?;
        let out = change(&mut devices)?;
        let file = DevicesFile {
            version: FILE_VERSION,
            devices,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| DeviceError::Damaged {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let written = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).write(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.io(e));
        }
        // The lock is released when `lock` drops.
        drop(lock);
        Ok(out)
    }

    /// Pairs a new device and returns it with its token (shown once, never stored).
    pub fn add(&self, name: &str, scope: Scope) -> Result<(Device, String), DeviceError> {
        let token = crate::security::new_token();
        let hash = token_hash(&token);
        let device = Device {
            id: format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            name: name.to_owned(),
            scope,
            paired_at: now_rfc3339(),
        };
        let stored = StoredDevice {
            device: device.clone(),
            token_sha256: hash,
        };
        self.update(move |devices| {
            if devices.len() >= MAX_DEVICES {
                return Err(DeviceError::Full);
            }
            devices.push(stored);
            Ok(())
        })?;
        Ok((device, token))
    }

    /// Revokes a device: its token stops working on the next request.
    pub fn revoke(&self, id: &str) -> Result<Device, DeviceError> {
        self.update(|devices| {
            let at = devices
                .iter()
                .position(|d| d.device.id == id)
                .ok_or_else(|| DeviceError::Unknown(id.to_owned()))?;
            Ok(devices.remove(at).device)
        })
    }
}

/// The current time as RFC 3339 (UTC).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn devices_survive_a_new_store_and_revocation_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = DeviceStore::in_dir(dir.path());
        let (phone, token) = server.add("Anna's phone", Scope::Watch).unwrap();
        assert_eq!(server.authenticate(&token), Some(phone.clone()));
        assert_eq!(server.authenticate(&"0".repeat(64)), None);
        assert_eq!(server.authenticate(""), None);

        // A second store on the same file (the CLI) sees it, and revokes it.
        let cli = DeviceStore::in_dir(dir.path());
        assert_eq!(cli.list().unwrap(), vec![phone.clone()]);
        assert_eq!(cli.revoke(&phone.id).unwrap(), phone);
        assert!(matches!(
            cli.revoke(&phone.id),
            Err(DeviceError::Unknown(_))
        ));
        assert_eq!(server.authenticate(&token), None);
        assert_eq!(server.list().unwrap(), vec![]);
    }

    #[test]
    fn the_file_holds_no_token_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeviceStore::in_dir(dir.path());
        let (_, token) = store.add("laptop", Scope::Control).unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&token));
        assert!(text.contains(&token_hash(&token)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeviceStore::in_dir(dir.path());
        std::fs::write(store.path(), "{not json").unwrap();
        let err = store.list().unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        // And nothing authenticates against it.
        assert_eq!(store.authenticate("x"), None);
    }
}
