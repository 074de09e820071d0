//! Step 7 of the jail: a landlock ruleset, the second wall behind the mount
//! namespace. Everything in the new root may be read and executed; writes
//! are allowed only under `/workspace`, `/tmp`, `/dev/shm`, `/dev/pts`, the
//! harmless devices and the read-write grants.
//!
//! The rights handled are those of landlock ABI 2 (Linux 5.19): every file
//! access plus `REFER` (renames and links across directories). Later ABIs
//! add truncate and device-ioctl control, which the read-only mounts
//! already cover; asking for them would make older kernels fail closed for
//! nothing.

use std::path::Path;

use ::landlock::{
    ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};

use super::config::LaunchSpec;
use super::init::InitError;

/// The landlock ABI whose rights the jail requires.
pub const REQUIRED_ABI: ABI = ABI::V2;

/// Devices the jail may open for writing.
const WRITABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

/// Restricts the calling process (and its future children). Fails closed
/// when the kernel cannot enforce every handled right, unless the spec says
/// `dangerously_allow_no_landlock`.
pub fn restrict(spec: &LaunchSpec) -> Result<(), InitError> {
    let status = build_and_apply(spec)
        .map_err(|e| InitError::new(format!("cannot set up landlock: {e}")))?;
    match status {
        RulesetStatus::FullyEnforced => Ok(()),
        RulesetStatus::PartiallyEnforced | RulesetStatus::NotEnforced
            if spec.dangerously_allow_no_landlock =>
        {
            super::init::warn(format_args!(
                "landlock is not fully enforced ({status:?}); running anyway because of \
                 --dangerously-allow-no-landlock"
            ));
            Ok(())
        }
        RulesetStatus::PartiallyEnforced | RulesetStatus::NotEnforced => {
            Err(InitError::new(format!(
                "landlock is not enforced by this kernel ({status:?}; ABI {} found, {} needed, \
                 Linux 5.19 or later with landlock in the `lsm=` list) — see `cubicle doctor`, \
                 or pass --dangerously-allow-no-landlock",
                super::sys::landlock_abi(),
                REQUIRED_ABI as i32
            )))
        }
    }
}

fn build_and_apply(spec: &LaunchSpec) -> Result<RulesetStatus, Box<dyn std::error::Error>> {
    let all = AccessFs::from_all(REQUIRED_ABI);
    let read = AccessFs::from_read(REQUIRED_ABI);
    let file_rw = AccessFs::ReadFile | AccessFs::WriteFile;
    let mut ruleset = Ruleset::default()
        .handle_access(all)?
        .create()?
        .add_rule(PathBeneath::new(PathFd::new("/")?, read))?;
    let mut writable: Vec<String> = ["/workspace", "/tmp", "/dev/shm", "/dev/pts"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    writable.extend(
        spec.grants
            .iter()
            .filter(|g| g.writable)
            .map(|g| format!("/mnt/{}", g.name)),
    );
    for dir in writable {
        if Path::new(&dir).is_dir() {
            ruleset = ruleset.add_rule(PathBeneath::new(PathFd::new(&dir)?, all))?;
        }
    }
    for dev in WRITABLE_DEVICES {
        if Path::new(dev).exists() {
            ruleset = ruleset.add_rule(PathBeneath::new(PathFd::new(dev)?, file_rw))?;
        }
    }
    Ok(ruleset.restrict_self()?.ruleset)
}
