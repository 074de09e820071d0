//! `cubicle image build|list|verify|prune`: the cubicle image cache from
//! the command line, over the `cubicle-image` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use cubicle_image::{BuildOptions, Profile};

/// Profiles as clap values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    /// A shell, coreutils, Python 3 and CA certificates.
    Minimal,
    /// Minimal plus Node.js and the office tool-chain Debian packages.
    Office,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Minimal => Profile::Minimal,
            ProfileArg::Office => Profile::Office,
        }
    }
}

/// The `image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build an image from Debian's packages (needs root and mmdebstrap).
    Build {
        /// Which package set.
        #[arg(long, value_enum, default_value = "minimal")]
        profile: ProfileArg,
        /// Another Debian package to install (repeatable), e.g. `pandoc`.
        #[arg(long = "add", value_name = "PACKAGE")]
        add: Vec<String>,
        /// Debian suite; bookworm matches this build's glibc.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// The cubicle-guest to install; default: the one beside `cubicle`.
        #[arg(long)]
        guest: Option<PathBuf>,
        /// Image cache directory; default ~/.local/share/cubicle/images.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// List built images, newest first.
    List {
        /// Image cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Recompute every artefact's SHA-256 and compare with the manifest.
    Verify {
        /// Image id (or a prefix); default: every image.
        id: Option<String>,
        /// Image cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Remove all but the newest image of each profile.
    Prune {
        /// Image cache directory.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

fn cache_dir(cache: Option<PathBuf>) -> Result<PathBuf> {
    match cache {
        Some(c) => Ok(c),
        None => Ok(cubicle_image::default_cache_dir()?),
    }
}

/// Runs an `image` subcommand.
pub async fn run(cmd: ImageCommand) -> Result<ExitCode> {
    // Building and hashing are long blocking work.
    tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .context("the image task failed")?
}

#[allow(clippy::print_stdout)]
fn run_blocking(cmd: ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Build {
            profile,
            add,
            suite,
            guest,
            cache,
        } => {
            let mut opts = BuildOptions::new(profile.into(), cache_dir(cache)?);
            opts.suite = suite;
            opts.extra_packages = add;
            opts.guest = match guest {
                Some(g) => Some(g),
                None => match cubicle_sandbox::locate::GuestProgram::locate() {
                    Ok(g) => Some(g.path),
                    Err(e) => {
                        eprintln!(
                            "cubicle: warning: the image gets no guest ({e}); VMs will need one shared in"
                        );
                        None
                    }
                },
            };
            let image = cubicle_image::build(&opts, &mut |step| eprintln!("{step}"))?;
            let m = &image.manifest;
            println!("{}", image.dir.display());
            println!(
                "profile {}, {} packages, kernel {}, {} MB of artefacts",
                m.profile,
                m.packages.len(),
                m.kernel_release,
                m.artefact_bytes() >> 20
            );
            for missing in &m.missing {
                println!("not included: {} ({})", missing.name, missing.reason);
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::List { cache } => {
            let images = cubicle_image::list(&cache_dir(cache)?)?;
            if images.is_empty() {
                eprintln!("cubicle: no images yet — build one with `cubicle image build`");
            }
            for image in images {
                let m = &image.manifest;
                println!(
                    "{}  {:<8} {:>5} MB  {} packages  kernel {}",
                    m.id,
                    m.profile.name(),
                    m.artefact_bytes() >> 20,
                    m.packages.len(),
                    m.kernel_release
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Verify { id, cache } => {
            let images = cubicle_image::list(&cache_dir(cache)?)?;
            let chosen: Vec<_> = images
                .into_iter()
                .filter(|i| id.as_deref().is_none_or(|p| i.manifest.id.starts_with(p)))
                .collect();
            if chosen.is_empty() {
                anyhow::bail!("no image matches — see `cubicle image list`");
            }
            let mut failed = false;
            for image in chosen {
                match cubicle_image::verify(&image.dir) {
                    Ok(m) => println!("{}  ok", m.id),
                    Err(e) => {
                        failed = true;
                        eprintln!("cubicle: {e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ImageCommand::Prune { cache } => {
            for dir in cubicle_image::prune(&cache_dir(cache)?)? {
                println!("removed {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
