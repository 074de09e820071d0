//! Choosing and starting the computer a session runs in. `auto` means the
//! best isolated backend this machine has; Cubicle never falls back to the
//! unisolated `host` backend on its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use cubicle_sandbox::guest_client::EgressConnector;
use cubicle_sandbox::host::{HostComputer, HostConfig};
use cubicle_sandbox::jail::{JailComputer, JailConfig, Limits, locate_jail_init, probe};
use cubicle_sandbox::locate::GuestProgram;
use cubicle_sandbox::{Computer, Grant};

/// Backends this build can start, best first.
pub const BACKENDS: &[&str] = &["jail", "vm", "host"];

/// Options that change how a backend starts.
#[derive(Clone, Default)]
pub struct BackendOptions {
    /// Run the jail where landlock cannot be enforced.
    pub dangerously_allow_no_landlock: bool,
    /// Where the cubicle's proxy connections go; `None` refuses them.
    pub egress: Option<Arc<dyn EgressConnector>>,
    /// Variables added to every command's environment.
    pub env: BTreeMap<String, String>,
    /// Skill folders to show read-only, each at `/mnt/.skills/<path>` where
    /// `<path>` is the skill's [`cubicle_skills::Skill::cubicle_dir`] below
    /// `/mnt/.skills` (a plugin skill's is two levels deep: `plugin/skill`).
    pub skills: Vec<(String, PathBuf)>,
    /// Installed plugins' folders to show read-only at `/mnt/.plugins/<name>`.
    pub plugins: Vec<(String, PathBuf)>,
}

/// Resolves a backend name; `auto` becomes the best isolated backend here.
pub fn resolve(name: &str) -> Result<&'static str> {
    match name {
        "jail" => Ok("jail"),
        "vm" => Ok("vm"),
        "host" => Ok("host"),
        "auto" => {
            if vm_with_kvm().is_ok() {
                return Ok("vm");
            }
            let features = probe::probe();
            if probe::jail_usable(&features) {
                Ok("jail")
            } else {
                let missing: Vec<String> = features
                    .iter()
                    .filter(|f| f.required && !f.available)
                    .map(|f| format!("{} ({})", f.name, f.detail))
                    .collect();
                bail!(
                    "no isolated backend is usable on this machine: {} — see `cubicle doctor`; `--backend host` runs without isolation",
                    missing.join("; ")
                )
            }
        }
        other => bail!(
            "unknown backend `{other}` — available: auto, {}",
            BACKENDS.join(", ")
        ),
    }
}

/// Whether `auto` takes the VM: a cubicle image is built and KVM boots it
/// (a probe VM, its verdict kept in `~/.cache/cubicle/kvm-probe`). Under
/// TCG a VM is isolated but slow, so `auto` then takes the jail; `--backend
/// vm` still runs it.
pub fn vm_with_kvm() -> std::result::Result<(), String> {
    let image = built_image().map_err(|e| e.to_string())?;
    cubicle_sandbox::vm::accel::kvm_usable_blocking(
        std::path::Path::new("qemu-system-x86_64"),
        &cubicle_sandbox::vm::VmImage::from_image(&image),
    )
}

/// The newest built image, `office` before `minimal`.
fn built_image() -> Result<cubicle_image::Image> {
    let cache = cubicle_image::default_cache_dir()?;
    cubicle_image::find_latest(&cache, cubicle_image::Profile::Office)
        .or_else(|_| cubicle_image::find_latest(&cache, cubicle_image::Profile::Minimal))
        .map_err(|_| {
            anyhow::anyhow!(
                "no cubicle image is built for the vm backend — run `cubicle image build` (needs root, mmdebstrap, erofs-utils and qemu-system-x86)"
            )
        })
}

/// The guest program: an installed `cubicle-guest`, else this binary, which
/// carries the guest too.
pub fn guest_program() -> Result<GuestProgram> {
    match GuestProgram::locate() {
        Ok(g) => Ok(g),
        Err(_) => Ok(GuestProgram {
            path: std::env::current_exe()?,
            args: vec!["__guest".to_owned()],
        }),
    }
}

/// The jail launcher: an installed `cubicle-jail-init`, else this binary.
fn jail_launcher() -> Result<(PathBuf, Vec<String>)> {
    match locate_jail_init() {
        Ok(p) => Ok((p, Vec::new())),
        Err(_) => Ok((std::env::current_exe()?, vec!["__jail-init".to_owned()])),
    }
}

/// The root the jail builds on: the `office` image's root file system when
/// one is built (it carries Python, Node and the office tool-chain, so the
/// host needs none of them), else the host's system directories. A
/// `minimal` image is not used: most hosts have more than it does.
pub fn jail_rootfs() -> Option<PathBuf> {
    let cache = cubicle_image::default_cache_dir().ok()?;
    let image = cubicle_image::find_latest(&cache, cubicle_image::Profile::Office).ok()?;
    let rootfs = image.rootfs();
    if rootfs.is_dir() {
        tracing::info!("jail root: the office image {}", image.manifest.id);
        Some(rootfs)
    } else {
        None
    }
}

/// Starts a computer.
pub async fn start(
    backend: &str,
    grants: Vec<Grant>,
    workspace: PathBuf,
    options: &BackendOptions,
) -> Result<Arc<dyn Computer>> {
    match resolve(backend)? {
        "jail" => {
            let (launcher, launcher_args) = jail_launcher()?;
            let computer = JailComputer::start(JailConfig {
                grants,
                workspace,
                guest: guest_program()?,
                launcher,
                launcher_args,
                rootfs: jail_rootfs(),
                limits: Limits::default(),
                env: options.env.clone(),
                dangerously_allow_no_landlock: options.dangerously_allow_no_landlock,
                egress: options.egress.clone(),
                skills: options.skills.clone(),
                plugins: options.plugins.clone(),
            })
            .await?;
            Ok(Arc::new(computer))
        }
        "vm" => {
            let image = built_image()?;
            cubicle_image::verify_cached(&image.dir).map_err(|e| {
                anyhow::anyhow!(
                    "the cubicle image in {} failed verification: {e} — build a fresh one with `cubicle image build`, then remove the broken one",
                    image.dir.display()
                )
            })?;
            let mut config = cubicle_sandbox::vm::VmConfig::new(
                cubicle_sandbox::vm::VmImage::from_image(&image),
                workspace,
            );
            config.grants = grants;
            config.read_only = options
                .skills
                .iter()
                .map(|(path, host)| (format!("/mnt/.skills/{path}"), host.clone()))
                .chain(
                    options
                        .plugins
                        .iter()
                        .map(|(name, host)| (format!("/mnt/.plugins/{name}"), host.clone())),
                )
                .collect();
            config.guest = Some(guest_program()?);
            config.env = options.env.clone();
            config.egress = options.egress.clone();
            let computer = cubicle_sandbox::vm::VmComputer::start(config).await?;
            tracing::info!("vm backend: {}", computer.accel_reason());
            Ok(Arc::new(computer))
        }
        "host" => {
            let computer = HostComputer::start(HostConfig {
                grants,
                workspace,
                guest: guest_program()?,
                env: options.env.clone(),
                egress: None,
                egress_listen: None,
            })
            .await?;
            Ok(Arc::new(computer))
        }
        other => bail!("backend `{other}` is not available in this build"),
    }
}

/// Parses `--grant` values, making names unique.
pub fn parse_grants(specs: &[String]) -> Result<Vec<Grant>> {
    let mut grants = specs
        .iter()
        .map(|s| Grant::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    cubicle_sandbox::grants::dedupe_names(&mut grants);
    Ok(grants)
}
