//! `release publish --registry HOST[:PORT]`: push every project image of
//! `images.lock` (its version and sha tags) to the registry, then record the
//! digest the registry reports for each in `images.published.json`
//! (`HOST/fog-compute/<name>@sha256:...`, what a deployment pins). The
//! registry must answer a TCP connection first: an unreachable one is one
//! clear error before anything is tagged. The registry-prefixed local tags
//! exist only for the push and are removed afterwards.

use std::{
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use super::{
    common::{write_atomic, Release, Timer, PUBLISHED},
    images, Common,
};
use crate::{process::Runner, usage_bail};

#[derive(clap::Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:
  cargo xtask release publish --registry registry.example:5000
  cargo xtask release publish --registry 127.0.0.1:51500 --dry-run"
)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Registry to push to, `HOST[:PORT]` (no scheme, no path).
    #[arg(long, value_name = "HOST[:PORT]")]
    registry: String,
}

#[derive(Serialize)]
struct Published {
    registry: String,
    version: String,
    revision: String,
    images: Vec<Pushed>,
}

#[derive(Serialize)]
struct Pushed {
    image: String,
    repository: String,
    tags: Vec<String>,
    digest: String,
    pinned: String,
}

/// Check `HOST[:PORT]` is well-formed and accepts TCP connections.
pub fn check_registry(registry: &str) -> Result<()> {
    let valid = !registry.is_empty()
        && !registry.contains("://")
        && !registry.contains('/')
        && registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !valid {
        usage_bail!("--registry `{registry}` is not HOST[:PORT] (no scheme, no path)");
    }
    let with_port = match registry.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => registry.to_string(),
        _ => format!("{registry}:443"),
    };
    let addrs: Vec<_> = with_port
        .to_socket_addrs()
        .map_err(|e| {
            anyhow::anyhow!("registry {registry} is unreachable: cannot resolve it ({e})")
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    bail!(
        "registry {registry} is unreachable ({}): start it or check --registry",
        last.map_or("no address".to_string(), |e| e.to_string())
    )
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let _timer = Timer::start("publish");
    let release = Release::load(sh, runner, &args.common)?;
    let registry = args.registry.trim_end_matches('/').to_string();
    check_registry(&registry)?;
    let lock = images::read_lock(&release.out)?;
    let mut pushed = Vec::new();
    for locked in lock.images.iter().filter(|l| l.project) {
        let name = locked
            .image
            .rsplit_once(':')
            .map_or(&*locked.image, |(n, _)| n);
        let repository = format!("{registry}/{name}");
        // Tag from the pinned id, not the local tags: those can move (a later
        // `images build` retags, and untags stale sha tags).
        let Some(id) = locked.id.clone() else {
            bail!(
                "{}: images.lock has no id for it: rerun `cargo xtask release images`",
                locked.image
            );
        };
        if !runner.dry_run && crate::image::image_id(sh, runner, &id).is_none() {
            bail!(
                "{} ({id}) is not in the engine: `cargo xtask release verify` loads the bundle",
                locked.image
            );
        }
        let mut remote_tags = Vec::new();
        for tag in &locked.tags {
            let remote = format!("{registry}/{tag}");
            runner.run(cmd!(sh, "docker tag {id} {remote}"))?;
            runner.run(cmd!(sh, "docker push {remote}"))?;
            remote_tags.push(remote);
        }
        let digest = if runner.dry_run {
            "sha256:<digest>".to_string()
        } else {
            repo_digest(sh, runner, &remote_tags[0], &repository)?
        };
        for remote in &remote_tags {
            runner.run(cmd!(sh, "docker rmi {remote}"))?;
        }
        println!("pushed {repository}@{digest}");
        pushed.push(Pushed {
            image: locked.image.clone(),
            pinned: format!("{repository}@{digest}"),
            repository,
            tags: remote_tags,
            digest,
        });
    }
    if pushed.is_empty() {
        bail!("images.lock has no project images to publish");
    }
    let record = Published {
        registry,
        version: release.version.clone(),
        revision: release.revision.clone(),
        images: pushed,
    };
    let path = release.out.join(PUBLISHED);
    if runner.dry_run {
        println!("# write {}", path.display());
        return Ok(());
    }
    write_atomic(
        &path,
        (serde_json::to_string_pretty(&record)? + "\n").as_bytes(),
    )?;
    println!("recorded digests in {}", path.display());
    Ok(())
}

/// The `sha256:...` digest the registry gave `image` after a push.
fn repo_digest(_sh: &Shell, runner: &Runner, image: &str, repository: &str) -> Result<String> {
    let json = crate::docker::inspect_image(runner, image, "{{json .RepoDigests}}")
        .with_context(|| format!("`docker image inspect {image}` failed"))?;
    let digests: Vec<String> = serde_json::from_str(&json).context("parsing RepoDigests")?;
    digests
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{repository}@")))
        .map(str::to_string)
        .with_context(|| format!("{image} was pushed but has no digest for {repository}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_registries_are_usage_errors() {
        for bad in ["", "http://x:5000", "x:5000/path", "a b"] {
            let err = check_registry(bad).unwrap_err();
            assert!(
                err.downcast_ref::<crate::UsageError>().is_some(),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = check_registry(&format!("127.0.0.1:{port}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unreachable"), "{err}");
    }
}
