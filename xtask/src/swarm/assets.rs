//! Swarm secrets and configs. Both are immutable in Swarm, so each object is
//! named by its content (`STACK_KEY_HASH12`): a changed secret file or config
//! file gets a new object and the services roll to it, the old object is
//! removed after the deploy converged. Every object carries the stack's
//! `com.docker.stack.namespace` label, so `docker stack rm` (and `deploy rm`)
//! removes it. Read-only bind mounts of a file or a directory below the
//! repository become one config per file (Swarm has no directory configs),
//! bounded in count and size.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::process::Runner;

/// The label `docker stack` uses to find a stack's objects.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// Swarm's limit for one config or secret.
const MAX_BYTES: u64 = 500 * 1024;
/// Files one bind mount may turn into.
const MAX_FILES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn command(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

/// One Swarm secret or config to create from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub kind: Kind,
    /// The key in the stack file.
    pub key: String,
    /// The Swarm object name (content-addressed).
    pub name: String,
    pub file: PathBuf,
}

impl Asset {
    /// The secret `key` from `file`.
    pub fn secret(stack: &str, key: &str, file: &Path) -> Result<Asset> {
        let hash = hash_file(file)?;
        Ok(Asset {
            kind: Kind::Secret,
            key: key.to_string(),
            name: format!("{stack}_{key}_{hash}"),
            file: file.to_path_buf(),
        })
    }

    /// A config holding `file`.
    pub fn config(stack: &str, file: &Path) -> Result<Asset> {
        let hash = hash_file(file)?;
        Ok(Asset {
            kind: Kind::Config,
            key: format!("cfg_{hash}"),
            name: format!("{stack}_cfg_{hash}"),
            file: file.to_path_buf(),
        })
    }
}

/// The first 12 hex digits of the sha256 of `file`; refuses files Swarm
/// cannot hold.
fn hash_file(file: &Path) -> Result<String> {
    let meta = std::fs::metadata(file).with_context(|| {
        format!(
            "{} is missing; create it (prod secrets: `cargo xtask env` or `cargo xtask prod` once)",
            file.display()
        )
    })?;
    if meta.len() > MAX_BYTES {
        bail!(
            "{} is {} bytes; Swarm secrets and configs hold at most {MAX_BYTES}",
            file.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().take(6).map(|b| format!("{b:02x}")).collect())
}

/// A read-only bind of `source` (a file or a directory) at `target` as
/// configs: `(config, path in the container)` per file.
pub fn bind_configs(stack: &str, source: &Path, target: &str) -> Result<Vec<(Asset, String)>> {
    if source.is_file() {
        return Ok(vec![(Asset::config(stack, source)?, target.to_string())]);
    }
    let mut files = Vec::new();
    collect(source, source, 0, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|rel| {
            let path = source.join(&rel);
            let inside = format!("{}/{}", target.trim_end_matches('/'), rel.display());
            Ok((Asset::config(stack, &path)?, inside))
        })
        .collect()
}

fn collect(base: &Path, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if depth > 8 {
        bail!("{} nests deeper than 8 directories", dir.display());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            collect(base, &path, depth + 1, out)?;
        } else if path.is_file() {
            if out.len() == MAX_FILES {
                bail!(
                    "{} holds more than {MAX_FILES} files; mount fewer as configs",
                    base.display()
                );
            }
            out.push(path.strip_prefix(base).expect("below base").to_path_buf());
        }
    }
    Ok(())
}

/// Create every asset that does not exist yet. Returns how many were created.
pub fn create(sh: &Shell, runner: &Runner, stack: &str, assets: &[Asset]) -> Result<usize> {
    let mut created = 0;
    let label = format!("{NAMESPACE_LABEL}={stack}");
    let id = "{{.ID}}";
    for a in assets {
        let (kind, name, file) = (a.kind.command(), &a.name, &a.file);
        if runner
            .probe(cmd!(sh, "docker {kind} inspect --format {id} {name}"))
            .is_some()
        {
            continue;
        }
        runner.run_capture(cmd!(
            sh,
            "docker {kind} create --label {label} {name} {file}"
        ))?;
        created += 1;
    }
    Ok(created)
}

/// Remove the stack's secrets and configs that `keep` does not name (older
/// contents). One still in use by a task is left for the next deploy.
pub fn prune(sh: &Shell, runner: &Runner, stack: &str, keep: &[Asset]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let filter = format!("label={NAMESPACE_LABEL}={stack}");
    let format = "{{.Name}}";
    for kind in [Kind::Secret, Kind::Config] {
        let kind = kind.command();
        let names = runner.read(cmd!(
            sh,
            "docker {kind} ls --filter {filter} --format {format}"
        ))?;
        for name in names.lines().filter(|n| !keep.iter().any(|a| a.name == *n)) {
            if runner.dry_run {
                println!("docker {kind} rm {name}");
            } else if runner.probe(cmd!(sh, "docker {kind} rm {name}")).is_some() {
                removed.push(name.to_string());
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_content_and_directories_expand_per_file() {
        let dir = std::env::temp_dir().join(format!("xtask-assets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.yml"), "one").unwrap();
        std::fs::write(dir.join("sub/b.yml"), "two").unwrap();
        let found = bind_configs("fogswarm", &dir, "/etc/x/").unwrap();
        let targets: Vec<_> = found.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(targets, ["/etc/x/a.yml", "/etc/x/sub/b.yml"]);
        let first = found[0].0.clone();
        assert!(first.name.starts_with("fogswarm_cfg_") && first.name.len() == 25);
        std::fs::write(dir.join("a.yml"), "changed").unwrap();
        let again = Asset::config("fogswarm", &dir.join("a.yml")).unwrap();
        assert_ne!(again.name, first.name, "new content, new object");
        let secret = Asset::secret("s", "pw", &dir.join("a.yml")).unwrap();
        assert!(secret.name.starts_with("s_pw_"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_missing_and_oversized_files() {
        let err = Asset::secret("s", "pw", Path::new("/nonexistent/pw")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/pw is missing"));
        let dir = std::env::temp_dir().join(format!("xtask-assets-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; 600 * 1024]).unwrap();
        let err = Asset::config("s", &big).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        for i in 0..=MAX_FILES {
            std::fs::write(dir.join(format!("f{i}")), "x").unwrap();
        }
        std::fs::remove_file(&big).unwrap();
        let err = bind_configs("s", &dir, "/x").unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
