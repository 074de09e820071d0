//! Building an image: `mmdebstrap` makes the root file system from Debian's
//! packages (and fetches Debian's generic kernel package alongside), then
//! the kernel is unpacked, the initramfs assembled, the erofs root disk
//! made, every artefact hashed, and the result moved into the cache under
//! its content address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cache::{Image, STAGING_PREFIX};
use crate::initramfs::{WANTED_MODULES, assemble, index_modules, resolve_modules};
use crate::manifest::{Artefact, FORMAT, Manifest, hash_file, image_id};
use crate::profile::{MissingPackage, Profile};
use crate::{INITRAMFS, ImageError, KERNEL, ROOT_DISK, ROOTFS_DIR};

/// Where the guest program is installed inside the image.
pub const GUEST_PATH: &str = "usr/local/bin/cubicle-guest";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The package set.
    pub profile: Profile,
    /// The cache directory the image goes into.
    pub cache_dir: PathBuf,
    /// Debian suite; must match the host's glibc or be newer when the guest
    /// is a glibc build.
    pub suite: String,
    /// Debian mirror; `None` for mmdebstrap's default.
    pub mirror: Option<String>,
    /// More Debian packages to install (`pandoc`, say).
    pub extra_packages: Vec<String>,
    /// A `cubicle-guest` build to install at `/usr/local/bin/cubicle-guest`.
    pub guest: Option<PathBuf>,
}

impl BuildOptions {
    /// The defaults for `profile` into `cache_dir`: Debian bookworm, no extras.
    pub fn new(profile: Profile, cache_dir: PathBuf) -> Self {
        Self {
            profile,
            cache_dir,
            suite: "bookworm".to_owned(),
            mirror: None,
            extra_packages: Vec::new(),
            guest: None,
        }
    }
}

/// A build step, reported as it starts (and [`Step::Done`] at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Checking tools and rights.
    Checking,
    /// `mmdebstrap` is installing packages (the long step, about a minute).
    Bootstrapping {
        /// How many packages were asked for.
        packages: usize,
    },
    /// Unpacking Debian's kernel package.
    Kernel,
    /// Assembling the initramfs.
    Initramfs,
    /// Making the erofs root disk.
    RootDisk,
    /// Hashing the artefacts and writing the manifest.
    Manifest,
    /// Finished.
    Done {
        /// The image id.
        id: String,
        /// Seconds the build took.
        seconds: u64,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Checking => write!(f, "[1/6] checking tools"),
            Step::Bootstrapping { packages } => {
                write!(
                    f,
                    "[2/6] installing {packages} Debian packages with mmdebstrap (about a minute)"
                )
            }
            Step::Kernel => write!(f, "[3/6] unpacking the kernel"),
            Step::Initramfs => write!(f, "[4/6] assembling the initramfs"),
            Step::RootDisk => write!(f, "[5/6] making the read-only root disk (erofs)"),
            Step::Manifest => write!(f, "[6/6] hashing and writing the manifest"),
            Step::Done { id, seconds } => write!(f, "built image {id} in {seconds} s"),
        }
    }
}

/// A host program the build runs, and the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("mkfs.erofs", "erofs-utils"),
    ("dpkg-deb", "dpkg"),
];

/// Checks that the build's tools are installed and that it may run.
pub fn check_host() -> Result<(), ImageError> {
    for (program, package) in TOOLS {
        if find_program(program).is_none() {
            return Err(ImageError::MissingTool {
                program: (*program).to_owned(),
                package: (*package).to_owned(),
            });
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
        let detail = if userns {
            "user namespaces are available here, but unprivileged builds \
             (mmdebstrap --mode=unshare) are not supported yet — run `sudo cubicle image build`"
        } else {
            "user namespaces are unavailable here too — run `sudo cubicle image build`"
        };
        return Err(ImageError::NotPermitted(detail.to_owned()));
    }
    Ok(())
}

/// Finds `program` on `$PATH` or in the sbin directories.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Builds an image, reporting each step to `progress`; returns it once it
/// is in the cache. An identical image already cached is kept and returned.
pub fn build(opts: &BuildOptions, progress: &mut dyn FnMut(Step)) -> Result<Image, ImageError> {
    let started = Instant::now();
    progress(Step::Checking);
    check_host()?;
    if let Some(guest) = &opts.guest
        && !guest.is_file()
    {
        return Err(ImageError::Step {
            step: "installing the guest".to_owned(),
            detail: format!(
                "{} is not a file — build it with `cargo build -p cubicle-guest`",
                guest.display()
            ),
        });
    }
    std::fs::create_dir_all(&opts.cache_dir).map_err(ImageError::io(format!(
        "creating {}",
        opts.cache_dir.display()
    )))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let staging = opts
        .cache_dir
        .join(format!("{STAGING_PREFIX}{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&staging)
        .map_err(ImageError::io(format!("creating {}", staging.display())))?;
    let result = build_in(opts, &staging, progress);
    match result {
        Ok(manifest) => {
            let dest = opts.cache_dir.join(&manifest.id);
            if dest.join(crate::MANIFEST).is_file() {
                remove_quietly(&staging);
            } else {
                std::fs::rename(&staging, &dest).map_err(ImageError::io(format!(
                    "moving the image to {}",
                    dest.display()
                )))?;
            }
            progress(Step::Done {
                id: manifest.id.clone(),
                seconds: started.elapsed().as_secs(),
            });
            Image::open(&dest)
        }
        Err(e) => {
            remove_quietly(&staging);
            Err(e)
        }
    }
}

fn remove_quietly(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a build directory");
    }
}

fn build_in(
    opts: &BuildOptions,
    staging: &Path,
    progress: &mut dyn FnMut(Step),
) -> Result<Manifest, ImageError> {
    let rootfs = staging.join(ROOTFS_DIR);
    let debs = staging.join("kernel-deb");
    std::fs::create_dir_all(&debs)
        .map_err(ImageError::io(format!("creating {}", debs.display())))?;
    let mut packages: Vec<String> = opts
        .profile
        .packages()
        .into_iter()
        .map(str::to_owned)
        .collect();
    packages.extend(opts.extra_packages.iter().cloned());
    progress(Step::Bootstrapping {
        packages: packages.len(),
    });
    bootstrap(opts, &packages, staging, &rootfs, &debs)?;

    if let Some(guest) = &opts.guest {
        let dest = rootfs.join(GUEST_PATH);
        std::fs::copy(guest, &dest).map_err(ImageError::io(format!(
            "installing the guest at {}",
            dest.display()
        )))?;
    }
    let installed = read_dpkg_status(&rootfs.join("var/lib/dpkg/status"))?;
    let mut missing = opts.profile.missing();
    for p in &packages {
        if !installed.contains_key(p) {
            missing.push(MissingPackage {
                name: p.clone(),
                reason: "asked for but not installed".to_owned(),
            });
        }
    }

    progress(Step::Kernel);
    let kernel_tree = staging.join("kernel");
    let (release, vmlinuz) = unpack_kernel(&debs, &kernel_tree)?;
    std::fs::copy(&vmlinuz, staging.join(KERNEL)).map_err(ImageError::io("copying the kernel"))?;

    progress(Step::Initramfs);
    let index = index_modules(&kernel_tree.join("lib/modules").join(&release))?;
    let modules = resolve_modules(&index, WANTED_MODULES)?;
    let busybox_path = rootfs.join("bin/busybox");
    let busybox = std::fs::read(&busybox_path).map_err(ImageError::io(format!(
        "reading {} (from busybox-static)",
        busybox_path.display()
    )))?;
    let cpio = assemble(&busybox, &modules)?;
    std::fs::write(staging.join(INITRAMFS), cpio)
        .map_err(ImageError::io("writing the initramfs"))?;
    remove_quietly(&kernel_tree);
    remove_quietly(&debs);

    progress(Step::RootDisk);
    run(
        "making the root disk",
        Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg("-zlz4hc")
            .arg(staging.join(ROOT_DISK))
            .arg(&rootfs),
        &staging.join("mkfs.log"),
    )?;

    for scratch in ["fetch-kernel.sh", "mkfs.log"] {
        let _ = std::fs::remove_file(staging.join(scratch));
    }

    progress(Step::Manifest);
    let mut artefacts: BTreeMap<String, Artefact> = BTreeMap::new();
    for name in [ROOT_DISK, KERNEL, INITRAMFS] {
        artefacts.insert(name.to_owned(), hash_file(&staging.join(name))?);
    }
    let manifest = Manifest {
        format: FORMAT,
        id: image_id(&artefacts),
        profile: opts.profile,
        suite: opts.suite.clone(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        kernel_release: release,
        packages: installed,
        missing,
        modules: modules.into_iter().map(|m| m.name).collect(),
        artefacts,
    };
    manifest.store(staging)?;
    Ok(manifest)
}

/// Runs mmdebstrap; a customize hook downloads the kernel package that
/// `linux-image-amd64` points at into `debs` (outside the root file system).
fn bootstrap(
    opts: &BuildOptions,
    packages: &[String],
    staging: &Path,
    rootfs: &Path,
    debs: &Path,
) -> Result<(), ImageError> {
    let hook = staging.join("fetch-kernel.sh");
    let script = format!(
        "set -e\nroot=\"$1\"\n\
         pkg=$(chroot \"$root\" apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \\(linux-image-[^ ]*-amd64\\)$/\\1/p' | head -n1)\n\
         [ -n \"$pkg\" ] || {{ echo 'the archive has no linux-image-*-amd64 kernel' >&2; exit 1; }}\n\
         chroot \"$root\" sh -c \"cd /tmp && apt-get download $pkg\"\n\
         mv \"$root\"/tmp/linux-image-*.deb '{}'/\n",
        debs.display()
    );
    std::fs::write(&hook, script).map_err(ImageError::io("writing the kernel hook"))?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--mode=root")
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=Apt::Install-Recommends \"false\"")
        .arg(format!("--customize-hook=sh '{}' \"$1\"", hook.display()))
        .arg(&opts.suite)
        .arg(rootfs);
    if let Some(m) = &opts.mirror {
        cmd.arg(m);
    }
    run("mmdebstrap", &mut cmd, &staging.join("mmdebstrap.log"))
}

/// Runs a command with its output to `log`; on failure the error carries the
/// log's last lines.
fn run(step: &str, cmd: &mut Command, log: &Path) -> Result<(), ImageError> {
    let file = std::fs::File::create(log)
        .map_err(ImageError::io(format!("creating {}", log.display())))?;
    let err_file = file
        .try_clone()
        .map_err(ImageError::io("cloning a log handle"))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .map_err(|e| ImageError::Step {
            step: step.to_owned(),
            detail: format!("cannot run it: {e}"),
        })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(ImageError::Step {
        step: step.to_owned(),
        detail: format!("{status}; its last output:\n{}", tail.join("\n")),
    })
}

/// Installed packages and their versions from a dpkg status file.
pub fn read_dpkg_status(path: &Path) -> Result<BTreeMap<String, String>, ImageError> {
    let text = std::fs::read_to_string(path)
        .map_err(ImageError::io(format!("reading {}", path.display())))?;
    Ok(parse_dpkg_status(&text))
}

fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, false);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n.to_owned(), v.to_owned());
        }
    }
    out
}

/// Unpacks the downloaded kernel package into `tree`; returns the kernel
/// release and the path of its `vmlinuz`.
fn unpack_kernel(debs: &Path, tree: &Path) -> Result<(String, PathBuf), ImageError> {
    let step = |detail: String| ImageError::Step {
        step: "unpacking the kernel".to_owned(),
        detail,
    };
    let deb = std::fs::read_dir(debs)
        .map_err(ImageError::io(format!("reading {}", debs.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| step("mmdebstrap's hook downloaded no kernel package".to_owned()))?;
    run(
        "unpacking the kernel",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(tree),
        &debs.join("dpkg-deb.log"),
    )?;
    let boot = tree.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(ImageError::io(format!("reading {}", boot.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| step(format!("{} has no vmlinuz-*", deb.display())))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .map(str::to_owned)
        .ok_or_else(|| step("the kernel's file name is not UTF-8".to_owned()))?;
    Ok((release, vmlinuz))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn dpkg_status_keeps_installed_packages_only() {
        let text = "Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                    Package: bash\nStatus: install ok installed\nPriority: required\nVersion: 5.2.15-2+b7\n";
        assert_eq!(
            parse_dpkg_status(text),
            BTreeMap::from([
                ("bash".to_owned(), "5.2.15-2+b7".to_owned()),
                ("python3".to_owned(), "3.11.2-1+b1".to_owned()),
            ])
        );
    }

    #[test]
    fn steps_read_as_progress_lines() {
        assert_eq!(Step::Kernel.to_string(), "[3/6] unpacking the kernel");
        assert_eq!(
            Step::Done {
                id: "ab".to_owned(),
                seconds: 61
            }
            .to_string(),
            "built image ab in 61 s"
        );
    }
}
