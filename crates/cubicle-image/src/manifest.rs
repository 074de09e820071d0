//! The manifest of an image — profile, packages and versions, and the
//! SHA-256 of each artefact — and [`verify`], which recomputes the hashes.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::profile::{MissingPackage, Profile};
use crate::{ImageError, MANIFEST};

/// Version of the manifest format.
pub const FORMAT: u32 = 1;

/// One hashed file of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artefact {
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// What an image is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// Content address: see [`image_id`].
    pub id: String,
    /// The profile built.
    pub profile: Profile,
    /// Debian suite.
    pub suite: String,
    /// Seconds since the Unix epoch when the build finished.
    pub created_unix: u64,
    /// Kernel release (`6.1.0-…-amd64`).
    pub kernel_release: String,
    /// Installed Debian packages and their versions.
    pub packages: BTreeMap<String, String>,
    /// Packages asked for that the image lacks.
    pub missing: Vec<MissingPackage>,
    /// Kernel modules in the initramfs, in load order.
    pub modules: Vec<String>,
    /// Hashed artefacts by file name.
    pub artefacts: BTreeMap<String, Artefact>,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| ImageError::Manifest {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ImageError::Manifest {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Writes `dir/manifest.json`.
    pub fn store(&self, dir: &Path) -> Result<(), ImageError> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self).map_err(|e| ImageError::Manifest {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        std::fs::write(&path, text + "\n")
            .map_err(ImageError::io(format!("writing {}", path.display())))
    }

    /// Total bytes of the hashed artefacts.
    pub fn artefact_bytes(&self) -> u64 {
        self.artefacts.values().map(|a| a.bytes).sum()
    }
}

/// SHA-256 and size of a file.
pub fn hash_file(path: &Path) -> Result<Artefact, ImageError> {
    let mut file =
        std::fs::File::open(path).map_err(ImageError::io(format!("reading {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(ImageError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(Artefact {
        sha256: hex(&hasher.finalize()),
        bytes,
    })
}

/// The content address of an image: the first 32 hex digits of the SHA-256
/// of its artefacts' names and hashes, in name order.
pub fn image_id(artefacts: &BTreeMap<String, Artefact>) -> String {
    let mut hasher = Sha256::new();
    for (name, a) in artefacts {
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(a.sha256.as_bytes());
        hasher.update(b"\n");
    }
    let mut id = hex(&hasher.finalize());
    id.truncate(32);
    id
}

/// Recomputes every artefact's hash and the image id; the first mismatch is
/// an [`ImageError::Corrupt`] naming the artefact.
pub fn verify(dir: &Path) -> Result<Manifest, ImageError> {
    let manifest = Manifest::load(dir)?;
    let corrupt = |artefact: &str, problem: String| ImageError::Corrupt {
        image: manifest.id.clone(),
        artefact: artefact.to_owned(),
        problem,
    };
    if manifest.format != FORMAT {
        return Err(corrupt(
            MANIFEST,
            format!("has format {}, expected {FORMAT}", manifest.format),
        ));
    }
    for (name, want) in &manifest.artefacts {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(corrupt(name, "is missing".to_owned()));
        }
        let got = hash_file(&path)?;
        if got.bytes != want.bytes {
            return Err(corrupt(
                name,
                format!("has {} bytes, expected {}", got.bytes, want.bytes),
            ));
        }
        if got.sha256 != want.sha256 {
            return Err(corrupt(
                name,
                format!("has SHA-256 {}, expected {}", got.sha256, want.sha256),
            ));
        }
    }
    let id = image_id(&manifest.artefacts);
    if id != manifest.id {
        return Err(corrupt(
            MANIFEST,
            format!("lists artefacts whose id is {id}, not {}", manifest.id),
        ));
    }
    Ok(manifest)
}

/// File beside the manifest recording what the last successful [`verify`]
/// saw of each artefact.
const VERIFIED: &str = ".verified.json";

/// What [`verify_cached`] remembers of an artefact it hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    bytes: u64,
    modified_ns: u128,
    inode: u64,
}

fn seen(path: &Path) -> Option<Seen> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    let modified_ns = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(Seen {
        bytes: meta.len(),
        modified_ns,
        inode: meta.ino(),
    })
}

/// [`verify`], but skipped when no artefact's size, modification time or
/// inode changed since the last successful verification (recorded in
/// `.verified.json` beside the manifest). Starting a VM calls this: a full
/// hash of the root disk costs about a second, a look at three files'
/// metadata nothing. Replacing or rewriting an artefact changes what is
/// recorded, so tampering through the file system is caught; bit rot that
/// leaves the metadata alone is caught by `cubicle image verify`.
pub fn verify_cached(dir: &Path) -> Result<Manifest, ImageError> {
    let manifest = Manifest::load(dir)?;
    let now: Option<BTreeMap<String, Seen>> = manifest
        .artefacts
        .keys()
        .map(|name| seen(&dir.join(name)).map(|s| (name.clone(), s)))
        .collect();
    let stamp = dir.join(VERIFIED);
    let recorded = std::fs::read(&stamp)
        .ok()
        .and_then(|b| serde_json::from_slice::<(String, BTreeMap<String, Seen>)>(&b).ok());
    if let (Some(now), Some((id, then))) = (&now, &recorded)
        && *id == manifest.id
        && now == then
    {
        return Ok(manifest);
    }
    let manifest = verify(dir)?;
    if let Some(now) = now
        && let Ok(bytes) = serde_json::to_vec(&(&manifest.id, &now))
    {
        // A read-only cache (an image installed by an administrator) is
        // verified every time instead.
        let tmp = dir.join(format!("{VERIFIED}.tmp"));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &stamp).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(manifest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    /// An image directory with two small artefacts and its manifest.
    fn fake_image(dir: &Path) -> Manifest {
        std::fs::write(dir.join("vmlinuz"), b"kernel bytes").unwrap();
        std::fs::write(dir.join("root.erofs"), b"root disk bytes").unwrap();
        let artefacts: BTreeMap<String, Artefact> = ["vmlinuz", "root.erofs"]
            .into_iter()
            .map(|n| (n.to_owned(), hash_file(&dir.join(n)).unwrap()))
            .collect();
        let m = Manifest {
            format: FORMAT,
            id: image_id(&artefacts),
            profile: Profile::Minimal,
            suite: "bookworm".to_owned(),
            created_unix: 1,
            kernel_release: "6.1.0-test-amd64".to_owned(),
            packages: BTreeMap::from([("python3".to_owned(), "3.11.2-1".to_owned())]),
            missing: vec![],
            modules: vec!["virtio".to_owned()],
            artefacts,
        };
        m.store(dir).unwrap();
        m
    }

    #[test]
    fn verify_cached_rehashes_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let m = fake_image(dir.path());
        assert_eq!(verify_cached(dir.path()).unwrap(), m);
        assert!(dir.path().join(VERIFIED).is_file());
        assert_eq!(verify_cached(dir.path()).unwrap(), m);
        // Replaced with the same size: a new inode and time, so re-hashed.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, b"kernel BYTES").unwrap();
        std::fs::rename(&tmp, dir.path().join("vmlinuz")).unwrap();
        let err = verify_cached(dir.path()).unwrap_err().to_string();
        assert!(err.contains("vmlinuz"), "{err}");
        // A record for another id is not trusted.
        std::fs::write(dir.path().join("vmlinuz"), b"kernel bytes").unwrap();
        std::fs::write(dir.path().join(VERIFIED), br#"["other", {}]"#).unwrap();
        assert_eq!(verify_cached(dir.path()).unwrap(), m);
    }

    /// A record that matches the metadata is trusted without hashing: an
    /// artefact rewritten in place with its old time and size restored
    /// passes here and fails `verify` (which is why `cubicle image verify`
    /// always hashes).
    #[test]
    fn verify_cached_trusts_unchanged_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let m = fake_image(dir.path());
        verify_cached(dir.path()).unwrap();
        let path = dir.path().join("vmlinuz");
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, b"kernel BYTES").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(before)
            .unwrap();
        assert_eq!(verify_cached(dir.path()).unwrap(), m);
        assert!(verify(dir.path()).is_err());
    }

    #[test]
    fn hashes_are_sha256() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        assert_eq!(
            hash_file(&dir.path().join("f")).unwrap(),
            Artefact {
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                    .to_owned(),
                bytes: 3
            }
        );
    }

    #[test]
    fn an_intact_image_verifies_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let m = fake_image(dir.path());
        assert_eq!(verify(dir.path()).unwrap(), m);
        assert_eq!(m.id.len(), 32);
    }

    #[test]
    fn a_tampered_artefact_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = fake_image(dir.path());
        std::fs::write(dir.path().join("root.erofs"), b"root disk byteZ").unwrap();
        let err = verify(dir.path()).unwrap_err();
        let ImageError::Corrupt {
            image,
            artefact,
            problem,
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(
            (image.as_str(), artefact.as_str()),
            (m.id.as_str(), "root.erofs")
        );
        assert!(problem.starts_with("has SHA-256 "), "{problem}");
        assert!(
            err.to_string()
                .contains("rebuild it with `cubicle image build`")
        );
    }

    #[test]
    fn a_missing_or_truncated_artefact_fails() {
        let dir = tempfile::tempdir().unwrap();
        fake_image(dir.path());
        std::fs::write(dir.path().join("vmlinuz"), b"short").unwrap();
        let err = verify(dir.path()).unwrap_err().to_string();
        assert!(err.contains("vmlinuz has 5 bytes, expected 12"), "{err}");
        std::fs::remove_file(dir.path().join("vmlinuz")).unwrap();
        let err = verify(dir.path()).unwrap_err().to_string();
        assert!(err.contains("vmlinuz is missing"), "{err}");
    }

    #[test]
    fn an_edited_manifest_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = fake_image(dir.path());
        m.id = "0".repeat(32);
        m.store(dir.path()).unwrap();
        let err = verify(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json lists artefacts whose id is"),
            "{err}"
        );
        std::fs::write(dir.path().join(MANIFEST), "{").unwrap();
        assert!(matches!(
            verify(dir.path()),
            Err(ImageError::Manifest { .. })
        ));
    }
}
