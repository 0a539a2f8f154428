//! Helpers for the release tests: a clone of HEAD in a temp folder (the tree
//! `.ci/run` sees: clean, committed), the xtask binary run against it with
//! `FOG_ROOT`, and a commit that adds a changelog section for a test version.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use crate::common::{crate_dir, text, Cleanup};

/// Variables that could leak a developer's key or registry into a test.
const SCRUBBED: &[&str] = &[
    "FOG_MINISIGN_KEY",
    "FOG_MINISIGN_KEY_FILE",
    "FOG_MINISIGN_PASSWORD",
    "FOG_MINISIGN_PUBKEY_FILE",
    "FOG_ENV_FILE",
];

pub fn repo_root() -> PathBuf {
    crate_dir().parent().unwrap().to_path_buf()
}

/// `git <args>` in `dir`, panicking with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=fogrel test",
            "-c",
            "user.email=fogrel@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A clone of `from`'s HEAD commit in a new temp folder (removed by `cleanup`).
pub fn clone_head(cleanup: &mut Cleanup, from: &Path, prefix: &str) -> PathBuf {
    let head = git(from, &["rev-parse", "HEAD"]);
    let dir = cleanup.temp_dir(prefix);
    let dest = dir.join("fog-compute");
    let (from_s, dest_s) = (from.display().to_string(), dest.display().to_string());
    git(&dir, &["clone", "-q", "--no-checkout", &from_s, &dest_s]);
    git(&dest, &["checkout", "-q", "--detach", &head]);
    dest
}

/// Add a `## [version]` changelog section and commit it.
pub fn commit_changelog_section(clone: &Path, version: &str) {
    let path = clone.join("CHANGELOG.md");
    let old = std::fs::read_to_string(&path).unwrap();
    let new = old.replacen(
        "## [Unreleased]\n",
        &format!("## [Unreleased]\n\n## [{version}] - test\n- release pipeline test\n"),
        1,
    );
    assert_ne!(old, new, "CHANGELOG.md has no `## [Unreleased]` heading");
    std::fs::write(&path, new).unwrap();
    git(
        clone,
        &["commit", "-q", "-am", &format!("changelog: {version}")],
    );
}

/// The target dir the release tests share between clones: cached across
/// runs, apart from the worktree's own build so neither evicts the other.
pub fn shared_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release-test")
}

/// Run the built xtask against the checkout `root`.
pub fn xtask_at(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .current_dir(root)
        .env("FOG_ROOT", root)
        .env("CARGO_TARGET_DIR", shared_target())
        .stdin(Stdio::null());
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the xtask binary")
}

/// Like [`xtask_at`] but panics unless it succeeds; returns stdout.
pub fn xtask_ok(root: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = xtask_at(root, args, env);
    assert!(out.status.success(), "xtask {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`xtask_at`] but panics if it succeeds; returns stderr.
pub fn xtask_err(root: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = xtask_at(root, args, env);
    assert!(
        !out.status.success(),
        "xtask {args:?} should fail: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `program` runs; under CI a missing one is a failure, else a skip.
pub fn tool_or_skip(test: &str, program: &str, arg: &str) -> bool {
    let ok = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .is_ok();
    if !ok {
        assert!(
            !crate::common::in_ci(),
            "{test}: CI is set but `{program}` is not installed (scripts/ci-setup.sh installs it)"
        );
        eprintln!("{test}: skipped: `{program}` is not installed");
    }
    ok
}

/// A free 127.0.0.1 port in 51500-51599 (our allotted range).
pub fn free_port() -> u16 {
    let start = 51500 + (std::process::id() % 100) as u16;
    (0..100)
        .map(|i| 51500 + (start - 51500 + i) % 100)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 51500-51599")
}
