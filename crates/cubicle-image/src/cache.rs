//! The content-addressed image cache: `~/.local/share/cubicle/images/<id>/`
//! (or under `$XDG_DATA_HOME`), listing, lookup and pruning.

use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use crate::profile::Profile;
use crate::{INITRAMFS, ImageError, KERNEL, ROOT_DISK, ROOTFS_DIR};

/// Prefix of the directories builds work in before they are renamed to
/// their id.
pub(crate) const STAGING_PREFIX: &str = ".build-";

/// A built image in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Its directory, named by its id.
    pub dir: PathBuf,
    /// Its manifest (as read, not verified).
    pub manifest: Manifest,
}

impl Image {
    /// Opens the image in `dir` (reads its manifest).
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest: Manifest::load(dir)?,
        })
    }

    /// The root file system directory (the jail's root).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS_DIR)
    }

    /// The read-only root disk (the VM's `/dev/vda`).
    pub fn root_disk(&self) -> PathBuf {
        self.dir.join(ROOT_DISK)
    }

    /// The kernel.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(KERNEL)
    }

    /// The initramfs.
    pub fn initramfs(&self) -> PathBuf {
        self.dir.join(INITRAMFS)
    }
}

/// `$XDG_DATA_HOME/cubicle/images`, else `~/.local/share/cubicle/images`.
pub fn default_cache_dir() -> Result<PathBuf, ImageError> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("cubicle/images"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ImageError::Io {
            context: "finding the image cache".to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither XDG_DATA_HOME nor HOME is set",
            ),
        })?;
    Ok(PathBuf::from(home).join(".local/share/cubicle/images"))
}

/// Every image in `cache`, newest first. Directories without a readable
/// manifest (half-built, foreign) are skipped.
pub fn list(cache: &Path) -> Result<Vec<Image>, ImageError> {
    let rd = match std::fs::read_dir(cache) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io(format!("reading {}", cache.display()))(e)),
    };
    let mut images = Vec::new();
    for entry in rd {
        let entry = entry.map_err(ImageError::io(format!("reading {}", cache.display())))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if let Ok(image) = Image::open(&entry.path()) {
            images.push(image);
        }
    }
    images.sort_by(|a, b| {
        b.manifest
            .created_unix
            .cmp(&a.manifest.created_unix)
            .then_with(|| a.manifest.id.cmp(&b.manifest.id))
    });
    Ok(images)
}

/// The newest image of `profile`.
pub fn find_latest(cache: &Path, profile: Profile) -> Result<Image, ImageError> {
    list(cache)?
        .into_iter()
        .find(|i| i.manifest.profile == profile)
        .ok_or_else(|| ImageError::NotBuilt(profile.name().to_owned()))
}

/// Removes every image but the newest of each profile, and leftover build
/// directories; returns the directories removed.
pub fn prune(cache: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let mut removed = Vec::new();
    let mut kept = std::collections::BTreeSet::new();
    for image in list(cache)? {
        if kept.insert(image.manifest.profile) {
            continue;
        }
        remove_dir(&image.dir)?;
        removed.push(image.dir);
    }
    if let Ok(rd) = std::fs::read_dir(cache) {
        for entry in rd.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                remove_dir(&entry.path())?;
                removed.push(entry.path());
            }
        }
    }
    Ok(removed)
}

fn remove_dir(dir: &Path) -> Result<(), ImageError> {
    std::fs::remove_dir_all(dir).map_err(ImageError::io(format!("removing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::manifest::FORMAT;
    use pretty_assertions::assert_eq;
    use std::collections::BTreeMap;

    fn put(cache: &Path, id: &str, profile: Profile, created: u64) -> PathBuf {
        let dir = cache.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        Manifest {
            format: FORMAT,
            id: id.to_owned(),
            profile,
            suite: "bookworm".to_owned(),
            created_unix: created,
            kernel_release: String::new(),
            packages: BTreeMap::new(),
            missing: vec![],
            modules: vec![],
            artefacts: BTreeMap::new(),
        }
        .store(&dir)
        .unwrap();
        dir
    }

    #[test]
    fn lists_newest_first_finds_and_prunes_all_but_the_newest_per_profile() {
        let cache = tempfile::tempdir().unwrap();
        let c = cache.path();
        put(c, "old-min", Profile::Minimal, 1);
        put(c, "new-min", Profile::Minimal, 3);
        put(c, "office", Profile::Office, 2);
        std::fs::create_dir_all(c.join(".build-123")).unwrap();
        std::fs::create_dir_all(c.join("junk")).unwrap();
        let ids: Vec<String> = list(c)
            .unwrap()
            .into_iter()
            .map(|i| i.manifest.id)
            .collect();
        assert_eq!(ids, ["new-min", "office", "old-min"]);
        assert_eq!(
            find_latest(c, Profile::Minimal).unwrap().manifest.id,
            "new-min"
        );
        let removed = prune(c).unwrap();
        assert_eq!(removed, [c.join("old-min"), c.join(".build-123")]);
        let ids: Vec<String> = list(c)
            .unwrap()
            .into_iter()
            .map(|i| i.manifest.id)
            .collect();
        assert_eq!(ids, ["new-min", "office"]);
        let empty = tempfile::tempdir().unwrap();
        let err = find_latest(empty.path(), Profile::Office)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no office image is built — build one with `cubicle image build --profile office`"
        );
    }
}
