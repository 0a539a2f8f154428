//! What every command shares: the global flags (`--dry-run`, `-v`) and the
//! repository root that paths are resolved against. Nothing here depends on
//! any command module, so every module can import it without a cycle.

use clap::Args;

/// Flags every subcommand accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Print the exact commands a mutating step would run, and run none of them.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Print each external command as it runs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The repository root: `FOG_ROOT` when set (run this build of the tool
/// against another checkout, e.g. a fresh clone to release from), else the
/// parent of this crate's manifest directory.
pub fn project_root() -> std::path::PathBuf {
    if let Some(root) = std::env::var_os("FOG_ROOT").filter(|r| !r.is_empty()) {
        return std::path::PathBuf::from(root);
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// A path from the command line made absolute against the directory the
/// command ran in (the repository root when that is gone).
pub fn absolute(path: impl AsRef<std::path::Path>) -> std::path::PathBuf {
    let path = path.as_ref();
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| project_root())
            .join(path)
    }
}

/// The repository the offline images are tagged under: `FOG_OFFLINE_REPO`
/// when set (a private namespace, for example to push them to a registry of
/// one's own, or a test's throwaway one), else `fog-offline`. The base image
/// is `<repo>/base:…` and each service `<repo>/<service>:…`; the rootfs cache
/// is keyed by it too, so another repository is a build of its own.
pub fn offline_repo() -> String {
    std::env::var("FOG_OFFLINE_REPO")
        .ok()
        .filter(|r| valid_repo(r))
        .unwrap_or_else(|| "fog-offline".to_string())
}

/// Refuses a `FOG_OFFLINE_REPO` that is not a Docker repository name, with
/// one line, instead of falling back to the default behind the user's back.
pub fn check_env() -> Result<(), crate::UsageError> {
    match std::env::var("FOG_OFFLINE_REPO") {
        Ok(repo) if !valid_repo(&repo) => Err(crate::UsageError(format!(
            "FOG_OFFLINE_REPO={repo:?} is not a Docker repository name: use lowercase letters, digits and `._-/` (for example `registry.example.com/fog-offline`), or unset it"
        ))),
        _ => Ok(()),
    }
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 200
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:".contains(&b))
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::valid_repo;

    #[test]
    fn offline_repositories_are_docker_names() {
        for ok in [
            "fog-offline",
            "registry.example.com/fog",
            "localhost:5000/a/b",
            "fogdeb-123",
        ] {
            assert!(valid_repo(ok), "{ok}");
        }
        for bad in ["", "Fog", "a//b", "/a", "a/", "-a", "a b", "a:b/../c"] {
            assert!(!valid_repo(bad), "{bad}");
        }
    }
}
