//! The Docker images an environment runs on, shared by the `images` command,
//! bring-up, `deploy`, `migrate` and `release`: which images an environment
//! needs ([`catalog`]), the project's own images built from `docker/` and
//! skipped when the content hash of their inputs matches ([`build`]), the
//! third-party services built from Debian packages for hosts that cannot
//! pull ([`offline`]), checksummed save/load bundles for air-gapped hosts
//! ([`bundle`]). [`ensure_for`] is what bring-up calls before `compose up`.

pub mod build;
pub mod bundle;
pub mod catalog;
pub mod debootstrap;
mod digest;
pub mod docker;
mod envfile;
mod mounts;
pub mod offline;

use std::time::Duration;

use crate::process::Cmd;
use anyhow::Result;
use xshell::{cmd, Shell};

use crate::{environments::Environment, process::Runner, project_root};
pub use build::{build_release, project_images, ReleaseBuild};
pub use bundle::{load_bundle, save_bundle, sha256_file};
pub use catalog::{image_vars, needed, ImageVar, Needed, Source};
pub use docker::image_id;
pub use offline::rootfs_key_for;

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
            Cmd::new("docker").args(["pull", "--quiet", image]),
            Duration::from_secs(60),
        )
        .is_ok_and(|o| o.status.success())
}

/// Default environment for listings and bundles: every overlay.
pub const ALL_ENV: &str = "dev+betanet+monitoring";
