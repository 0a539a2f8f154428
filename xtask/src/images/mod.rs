//! `cargo xtask images`: the images an environment runs on. `build` builds the
//! project's own images from `docker/` (the mixnode, `FROM scratch`) and skips
//! the build when the content hash of its inputs matches the existing image;
//! `ls` shows what an environment needs and what is present; `offline` builds
//! the third-party services from Debian packages for hosts that cannot pull;
//! `save` and `load` move images to air-gapped hosts as a checksummed bundle.
//! [`ensure_for`] is what bring-up calls before `compose up`.

pub mod build;
mod bundle;
mod catalog;
pub mod debootstrap;
mod digest;
pub mod docker;
mod envfile;
mod ls;
mod mounts;
mod offline;

use std::{path::PathBuf, time::Duration};

use crate::process::Cmd as Command;
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use xshell::{cmd, Shell};

use crate::{environments::Environment, process::Runner, project_root};
pub use build::{build_release, project_images, rfc3339, rfc3339_now, ReleaseBuild};
pub use bundle::{load_bundle, save_bundle, sha256_file};
pub use catalog::{image_vars, needed, ImageVar, Needed, Source};
pub use docker::image_id;
pub use offline::rootfs_key_for;

/// Build, list, save or load images; build third-party images offline.
#[derive(Args)]
#[command(after_help = "Examples:
  cargo xtask images build                 # build fog-compute/mixnode (skipped when up to date)
  cargo xtask images ls --env dev+betanet  # what the environment needs, and what is present
  cargo xtask images offline               # Debian-built postgres/prometheus/... for hosts that cannot pull
  cargo xtask images save --env dev+betanet -o bundle/
  cargo xtask images load bundle/")]
pub struct Cmd {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Build the project's images from docker/ (skipped when the inputs are unchanged).
    Build(build::Args),
    /// Show the images an environment needs and whether each is present.
    Ls(ls::Args),
    /// Build third-party images from Debian packages and point .env at them.
    Offline(offline::Args),
    /// Write images to a checksummed bundle directory for air-gapped hosts.
    Save(bundle::SaveArgs),
    /// Verify a bundle's checksums, then load its images.
    Load(bundle::LoadArgs),
    /// Make an environment's images available as bring-up does (build, pull, or offline).
    Ensure(EnsureArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  cargo xtask images ensure --env dev+betanet
  FOG_OFFLINE=1 cargo xtask images ensure --env dev+monitoring --format json")]
struct EnsureArgs {
    /// Environment whose images to make available.
    #[arg(long, default_value = ALL_ENV)]
    env: String,
    /// Output format for the report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Output format for listings.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> Result<()> {
        let runner = Runner::new(global);
        match self.command {
            Sub::Build(args) => build::run(sh, &runner, args),
            Sub::Ls(args) => ls::run(sh, &runner, args),
            Sub::Offline(args) => offline::run(sh, &runner, args),
            Sub::Save(args) => bundle::save(sh, &runner, args),
            Sub::Load(args) => bundle::load(sh, &runner, args),
            Sub::Ensure(args) => {
                let env: Environment = args.env.parse()?;
                let report = ensure_for(&env, &runner, !args.quiet)?;
                match args.format {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                    Format::Table => {
                        let none = || "none".to_string();
                        let list = |v: &[String]| if v.is_empty() { none() } else { v.join(", ") };
                        println!("built:   {}", list(&report.built));
                        println!("offline: {}", if report.offline { "yes" } else { "no" });
                        let updates: Vec<String> = report
                            .env_updates
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        println!("env:     {}", list(&updates));
                        println!("skipped: {}", list(&report.skipped_services));
                    }
                }
                Ok(())
            }
        }
    }
}

/// What [`ensure_for`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct EnsureReport {
    /// Project images built (`fog-compute/mixnode:0.1.0`), empty when up to date.
    pub built: Vec<String>,
    /// Whether the engine could not pull and offline images were used.
    pub offline: bool,
    /// `.env` variables pointed at offline images, as `(VAR, image)`.
    pub env_updates: Vec<(String, String)>,
    /// Services to leave out of `compose up`: no image present, none pullable,
    /// and no offline equivalent (grafana, loki, cadvisor when offline).
    pub skipped_services: Vec<String>,
}

/// Services of `env` whose image variable's default has no offline image:
/// they can only run when their upstream image is present or pullable.
pub fn unavailable_services(env: &Environment) -> Result<Vec<String>> {
    Ok(catalog::needed(env, &project_root())?
        .into_iter()
        .filter(|n| n.var.is_some() && n.source == Source::Upstream(None))
        .flat_map(|n| n.services)
        .collect())
}

/// Whether the user asked for offline images (`FOG_OFFLINE=1`).
pub fn offline_requested() -> bool {
    std::env::var("FOG_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Make every image `env` needs available before `compose up`: build stale
/// project images; when third-party images are missing and cannot be pulled
/// (or `FOG_OFFLINE=1`), build the offline images and point the env file's
/// image variables at them. Services with no image at all are reported in
/// [`EnsureReport::skipped_services`] with one warning, not an error.
pub fn ensure_for(env: &Environment, runner: &Runner, progress: bool) -> Result<EnsureReport> {
    ensure_for_with(env, runner, progress, offline_requested())
}

/// [`ensure_for`] with the offline decision made by the caller (an `--offline`
/// flag): `force_offline` skips the pull probe and uses offline images for
/// every missing third-party image.
pub fn ensure_for_with(
    env: &Environment,
    runner: &Runner,
    progress: bool,
    force_offline: bool,
) -> Result<EnsureReport> {
    let sh = Shell::new()?;
    let root = project_root();
    sh.change_dir(&root);
    let mut report = EnsureReport::default();
    let needed = catalog::needed(env, &root)?;

    for n in &needed {
        if let Source::Project(name) = &n.source {
            let outcome = match build::ensure(&sh, runner, name, false, progress) {
                Ok(outcome) => outcome,
                // An air-gapped host that loaded the image from a bundle may
                // be unable to build it (no crates): use what is there.
                Err(e) if docker::image_exists(&sh, runner, &n.image) => {
                    eprintln!(
                        "warning: could not rebuild {} ({e:#}); using the image already in the engine",
                        n.image
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            if outcome.built {
                report.built.push(outcome.image.clone());
            }
            if outcome.image != n.image && !docker::image_exists(&sh, runner, &n.image) {
                anyhow::bail!(
                    "{} is set to {} but `images build` makes {}: set {} in .env or build that image",
                    n.var.as_deref().unwrap_or("the image variable"),
                    n.image,
                    outcome.image,
                    n.var.as_deref().unwrap_or("it")
                );
            }
        }
    }

    let missing: Vec<&catalog::Needed> = needed
        .iter()
        .filter(|n| !matches!(n.source, Source::Project(_)))
        .filter(|n| !docker::image_exists(&sh, runner, &n.image))
        .collect();
    if missing.is_empty() {
        return Ok(report);
    }
    if !force_offline && can_pull(&sh, runner, &missing[0].image) {
        for n in &missing[1..] {
            let image = &n.image;
            runner.run(cmd!(sh, "docker pull {image}"))?;
        }
        return Ok(report);
    }
    report.offline = true;
    let mut wanted = Vec::new();
    for n in &missing {
        match n.source {
            Source::Upstream(Some(service)) => wanted.push(service),
            // Only a variable's image is left out; a literal image is the user's.
            _ if n.var.is_some() => report.skipped_services.extend(n.services.iter().cloned()),
            _ => {}
        }
    }
    if !wanted.is_empty() {
        let built = offline::build_services(&sh, runner, &wanted, false, false, progress)?;
        report.env_updates = missing
            .iter()
            .filter_map(|n| match n.source {
                Source::Upstream(Some(service)) => {
                    let (_, image, _) = built.iter().find(|(s, _, _)| *s == service)?;
                    Some((n.var.clone()?, image.clone()))
                }
                _ => None,
            })
            .collect();
        offline::point_env_at(runner, &root, &report.env_updates)?;
    }
    if !report.skipped_services.is_empty() {
        eprintln!(
            "warning: no image for {} here (none present, none pullable, and Debian has no package for them): starting the environment without them",
            report.skipped_services.join(", ")
        );
    }
    Ok(report)
}

/// Try `docker pull image` with a time limit: the cheap probe for "can this
/// host pull at all". Under `--dry-run` prints the command and assumes yes.
fn can_pull(sh: &Shell, runner: &Runner, image: &str) -> bool {
    if runner.dry_run {
        println!("docker pull {image}");
        return true;
    }
    let _ = sh;
    eprintln!("checking whether images can be pulled: docker pull {image}");
    runner
        .output_timeout(
            Command::new("docker").args(["pull", "--quiet", image]),
            Duration::from_secs(60),
        )
        .is_ok_and(|o| o.status.success())
}

/// Default environment for listings and bundles: every overlay.
pub const ALL_ENV: &str = "dev+betanet+monitoring";

/// A user-given path made absolute against the directory the command ran in.
pub fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| project_root())
            .join(path)
    }
}
