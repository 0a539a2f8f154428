//! What every release step shares: [`Release`] (version, commit, its
//! `SOURCE_DATE_EPOCH`, the target triple, the artifact directory and the
//! artifact names), atomic file writes, and the marker `cargo xtask ci`
//! leaves under `target/ci-passed/<commit>` so `release plan` can tell
//! whether CI passed on this commit.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::Common;
use crate::{process::Runner, project_root};

/// One release: everything a step needs to name and stamp its artifacts.
#[derive(Debug, Clone)]
pub struct Release {
    pub root: PathBuf,
    pub version: String,
    /// The full commit hash.
    pub revision: String,
    /// The first 7 hex digits of [`Release::revision`] (image sha tags).
    pub short: String,
    /// The commit time: every timestamp in the artifacts.
    pub epoch: u64,
    /// The Rust target triple the binaries are built for.
    pub target: String,
    /// The artifact directory.
    pub out: PathBuf,
}

impl Release {
    /// Read the version, commit and target for `common`'s options.
    pub fn load(sh: &Shell, runner: &Runner, common: &Common) -> Result<Release> {
        let root = project_root();
        sh.change_dir(&root);
        let version = match &common.version {
            Some(v) => check_version(v)?,
            None => env!("CARGO_PKG_VERSION").to_string(),
        };
        let revision = runner
            .read(cmd!(sh, "git rev-parse HEAD"))
            .context("release steps need a git checkout (`git rev-parse HEAD` failed)")?;
        let epoch = runner
            .read(cmd!(sh, "git log -1 --format=%ct HEAD"))?
            .parse()
            .context("`git log --format=%ct` did not print a number")?;
        let rustc = runner.read(cmd!(sh, "rustc -vV"))?;
        let target = rustc
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .context("`rustc -vV` printed no host triple")?
            .to_string();
        let out = match &common.out {
            Some(dir) => crate::absolute(dir.clone()),
            None => root.join("target/release-artifacts").join(&version),
        };
        Ok(Release {
            short: revision.get(..7).unwrap_or(&revision).to_string(),
            root,
            version,
            revision,
            epoch,
            target,
            out,
        })
    }

    /// `fog-compute-<version>-<target>.tar.gz`
    pub fn archive_name(&self) -> String {
        format!("fog-compute-{}-{}.tar.gz", self.version, self.target)
    }

    /// The top directory inside the archive.
    pub fn archive_dir(&self) -> String {
        format!("fog-compute-{}-{}", self.version, self.target)
    }

    /// `fog-compute-<version>.cdx.json` (CycloneDX SBOM).
    pub fn sbom_name(&self) -> String {
        format!("fog-compute-{}.cdx.json", self.version)
    }

    /// `fog-compute-<version>-images.tar` (an `images save` bundle).
    pub fn bundle_name(&self) -> String {
        format!("fog-compute-{}-images.tar", self.version)
    }

    /// The git tag of the release.
    pub fn tag(&self) -> String {
        format!("v{}", self.version)
    }

    /// The commit time as RFC 3339.
    pub fn created(&self) -> String {
        crate::clock::rfc3339(self.epoch)
    }
}

pub const LOCK: &str = "images.lock";
pub const SUMS: &str = "SHA256SUMS";
pub const SIG: &str = "SHA256SUMS.minisig";
pub const PUBLISHED: &str = "images.published.json";

/// A version usable in a git tag and an image tag: `X.Y.Z` with an optional
/// `-prerelease` of letters, digits, `.` and `-`.
fn check_version(v: &str) -> Result<String> {
    let (core, pre) = v.split_once('-').unwrap_or((v, ""));
    let core_ok = core.split('.').count() == 3
        && core
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let pre_ok = pre
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !core_ok || !pre_ok || v.len() > 100 {
        crate::usage_bail!("--version `{v}` is not X.Y.Z or X.Y.Z-pre (letters, digits, `.`, `-`)");
    }
    Ok(v.to_string())
}

/// Write the artifact `path` atomically (0644), creating its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("artifact path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::atomic::write(path, bytes, 0o644)
}

/// Prints `<step>: <what> in N.Ns` when dropped, for the step timings.
pub struct Timer(pub &'static str, pub Instant);

impl Timer {
    pub fn start(step: &'static str) -> Timer {
        Timer(step, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!("release {}: {:.1}s", self.0, self.1.elapsed().as_secs_f64());
        }
    }
}

/// A size for humans: `12.3 MB`, `456 kB`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{} kB", bytes.div_ceil(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked() {
        assert!(check_version("1.2.3").is_ok());
        assert!(check_version("0.1.0-rc.1").is_ok());
        for bad in [
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "1.2.x",
            "1.2.3+meta",
            "1.2.3-a b",
            "",
        ] {
            let err = check_version(bad).unwrap_err();
            assert!(err.to_string().contains("--version"), "{bad}: {err}");
        }
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = std::env::temp_dir().join(format!("xtask-release-common-{}", std::process::id()));
        let path = dir.join("a/b.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
