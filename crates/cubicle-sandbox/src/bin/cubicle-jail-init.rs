//! `cubicle-jail-init`: the jail launcher. Started by the `jail` backend
//! with the launch spec as its one argument; builds the namespaces, mounts,
//! limits, landlock and seccomp around itself, then executes
//! `cubicle-guest`, which serves the guest protocol on the inherited stdin
//! and stdout. See `cubicle_sandbox::jail` for the steps.

#[cfg(target_os = "linux")]
fn main() {
    // Nothing may run before this: the launcher must still be
    // single-threaded when it creates the user namespace.
    cubicle_sandbox::jail::init::main_from_args()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("cubicle-jail: the jail backend exists only on Linux");
    std::process::exit(2);
}
