//! The cubicle image: what every cubicle boots or pivots into.
//!
//! [`build`] makes one from Debian's packages with `mmdebstrap`: a root file
//! system directory (the `jail` backend's root), a read-only root disk
//! (erofs), Debian's generic kernel and an initramfs assembled here (the
//! `vm` backend's). Images live in a content-addressed cache
//! ([`cache`]), each with a [`Manifest`] that [`verify`] checks again.

pub mod builder;
pub mod cache;
pub mod initramfs;
pub mod manifest;
pub mod profile;

pub use builder::{BuildOptions, Step, build};
pub use cache::{Image, default_cache_dir, find_latest, list, prune};
pub use manifest::{Artefact, Manifest, verify, verify_cached};
pub use profile::{MissingPackage, Profile};

/// File name of the root file system directory inside an image.
pub const ROOTFS_DIR: &str = "rootfs";
/// File name of the read-only root disk (erofs).
pub const ROOT_DISK: &str = "root.erofs";
/// File name of the kernel.
pub const KERNEL: &str = "vmlinuz";
/// File name of the initramfs (an uncompressed `newc` cpio archive).
pub const INITRAMFS: &str = "initramfs.cpio";
/// File name of the manifest.
pub const MANIFEST: &str = "manifest.json";

/// Errors of building, reading and checking images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A host program the build needs is not installed.
    #[error(
        "`{program}` is not installed — install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingTool {
        /// The program looked for.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// The build lacks the rights `mmdebstrap` needs.
    #[error("building an image needs root: {0}")]
    NotPermitted(String),
    /// A build step failed.
    #[error("{step} failed: {detail}")]
    Step {
        /// Which step.
        step: String,
        /// What went wrong (often the tail of the tool's output).
        detail: String,
    },
    /// An artefact does not match its manifest.
    #[error(
        "image {image} is corrupt: {artefact} {problem} — rebuild it with `cubicle image build`"
    )]
    Corrupt {
        /// Image id.
        image: String,
        /// File name of the artefact.
        artefact: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The manifest cannot be read.
    #[error("cannot read the manifest {path}: {detail}")]
    Manifest {
        /// Its path.
        path: String,
        /// Why.
        detail: String,
    },
    /// No image is built yet.
    #[error("no {0} image is built — build one with `cubicle image build --profile {0}`")]
    NotBuilt(String),
    /// A file-system failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }
}
