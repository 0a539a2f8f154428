//! Making sure debootstrap is there before the offline images need it, so
//! `cargo xtask dev` alone works on a fresh machine with Docker and Rust: when
//! it is missing and we run as root with apt-get, install it (saying so in one
//! line: `apt-get update` then `apt-get install debootstrap`, both through
//! [`Runner`], so `--dry-run` prints them); otherwise fail with the one
//! command that installs it. The search path is a parameter so tests can hide
//! the real debootstrap and put a recording apt-get double in its place.

use std::{ffi::OsStr, path::PathBuf};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::process::Runner;

/// Where apt-get puts debootstrap, searched after PATH once it is installed
/// (a user's PATH may lack the sbin directories).
const SBIN: &[&str] = &["/usr/sbin", "/sbin"];

/// The debootstrap to run: found on `path`, or installed with apt-get (found
/// on `path`) when `root`. Under `--dry-run` a missing one is
/// reported by printing the install commands.
pub fn ensure(runner: &Runner, path: Option<&OsStr>, root: bool) -> Result<PathBuf> {
    if let Some(found) = find("debootstrap", path, false) {
        return Ok(found);
    }
    let apt = find("apt-get", path, false);
    let Some(apt) = apt.filter(|_| root) else {
        bail!(
            "debootstrap is not installed and is needed to build the offline images: run `sudo apt-get install debootstrap` (Debian/Ubuntu), then `cargo xtask dev` again"
        );
    };
    eprintln!("debootstrap is missing: installing it with `apt-get install debootstrap` (needed once, to build the offline images)");
    let sh = Shell::new()?;
    if let Some(dir) = path {
        sh.set_var("PATH", dir);
    }
    sh.set_var("DEBIAN_FRONTEND", "noninteractive");
    runner.run_capture(cmd!(sh, "{apt} update -qq"))?;
    runner.run_capture(cmd!(
        sh,
        "{apt} install -y -qq --no-install-recommends debootstrap"
    ))?;
    if runner.dry_run {
        return Ok(PathBuf::from("debootstrap"));
    }
    match find("debootstrap", path, true) {
        Some(found) => Ok(found),
        None => bail!("`apt-get install debootstrap` succeeded but no debootstrap is on PATH or in /usr/sbin: install it by hand (`apt-get install debootstrap`)"),
    }
}

/// [`ensure`] with the process's PATH and user.
pub fn ensure_here(runner: &Runner) -> Result<PathBuf> {
    ensure(runner, std::env::var_os("PATH").as_deref(), is_root())
}

/// Whether this process runs as root (`/proc/self` belongs to its euid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` (an executable file) in the directories of `path`, and with
/// `sbin` also in [`SBIN`].
fn find(program: &str, path: Option<&OsStr>, sbin: bool) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    if sbin {
        dirs.extend(SBIN.iter().map(PathBuf::from));
    }
    let dirs = std::env::join_paths(dirs).ok()?;
    which::which_in(program, Some(dirs), "/").ok()
}
