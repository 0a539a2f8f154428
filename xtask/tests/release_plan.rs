//! `release plan` and the steps' preconditions against real clones of HEAD:
//! a clean clone with a key passes; a dirty tree, an existing tag, a missing
//! changelog section, a missing (or in-repository) key and an unreachable
//! registry each fail with their one-line error; the CI marker is honoured
//! by `--require-ci`; `--dry-run` prints the exact commands and writes
//! nothing. No Docker and no builds: cheap.

mod common;
mod release_support;

use common::Cleanup;
use release_support::*;

/// A throwaway "key" file for the presence check (plan does not sign).
fn key_file(cleanup: &mut Cleanup) -> String {
    let dir = cleanup.temp_dir("fogrel-key");
    let path = dir.join("sec");
    std::fs::write(&path, "untrusted comment: test\n").unwrap();
    path.display().to_string()
}

#[test]
fn clean_clone_plans_every_step_and_ci_marker_counts() {
    let mut cleanup = Cleanup::default();
    let clone = clone_head(&mut cleanup, &repo_root(), "fogrel-plan");
    let key = key_file(&mut cleanup);
    let env = [("FOG_MINISIGN_KEY_FILE", key.as_str())];
    let json = xtask_ok(&clone, &["release", "plan", "--format", "json"], &env);
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["dist", "images", "sign", "verify", "publish", "tag"]
    );
    let version = plan["version"].as_str().unwrap().to_string();
    assert_eq!(plan["tag"], format!("v{version}"));
    let dist = &plan["steps"][0]["artifacts"];
    assert!(
        dist[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("fog-compute-{version}-")),
        "{dist}"
    );
    for check in plan["checks"].as_array().unwrap() {
        let pending_ci = check["name"] == "ci passed" && check["blocking"] == false;
        assert!(check["ok"] == true || pending_ci, "{check}");
    }

    let err = xtask_err(&clone, &["release", "plan", "--require-ci"], &env);
    assert!(err.contains("no `cargo xtask ci` pass recorded"), "{err}");
    let head = git(&clone, &["rev-parse", "HEAD"]);
    let marker = shared_target().join("ci-passed").join(&head);
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "test").unwrap();
    cleanup.paths.push(marker);
    let table = xtask_ok(&clone, &["release", "plan", "--require-ci"], &env);
    assert!(table.contains("`cargo xtask ci` passed on"), "{table}");
}

#[test]
fn dirty_tree_existing_tag_and_missing_changelog_are_one_line_errors() {
    let mut cleanup = Cleanup::default();
    let clone = clone_head(&mut cleanup, &repo_root(), "fogrel-plan-err");
    let key = key_file(&mut cleanup);
    let env = [("FOG_MINISIGN_KEY_FILE", key.as_str())];

    let err = xtask_err(&clone, &["release", "plan", "--version", "9.9.9"], &env);
    assert!(
        err.contains("CHANGELOG.md has no `## [9.9.9]` section"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    git(&clone, &["tag", "v9.9.8"]);
    let err = xtask_err(&clone, &["release", "plan", "--version", "9.9.8"], &env);
    assert!(err.contains("tag v9.9.8 already exists"), "{err}");

    std::fs::write(clone.join("stray.txt"), "x").unwrap();
    let err = xtask_err(&clone, &["release", "plan"], &env);
    assert!(
        err.contains("the tree is dirty") && err.contains("stray.txt"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_or_in_repo_key_and_unreachable_registry_are_refused() {
    let mut cleanup = Cleanup::default();
    let clone = clone_head(&mut cleanup, &repo_root(), "fogrel-plan-key");

    let err = xtask_err(&clone, &["release", "plan"], &[]);
    assert!(err.contains("no signing key"), "{err}");
    let err = xtask_err(&clone, &["release", "sign"], &[]);
    assert!(err.contains("no signing key"), "{err}");

    let inside = clone.join("README.md").display().to_string();
    let out = xtask_at(&clone, &["release", "sign", "--key", &inside], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a key in the repository is a usage error"
    );
    assert!(
        common::stderr(&out).contains("inside the repository"),
        "{}",
        common::text(&out)
    );

    // Nothing listens on a port we just found free.
    let registry = format!("127.0.0.1:{}", free_port());
    let key = key_file(&mut cleanup);
    let env = [("FOG_MINISIGN_KEY_FILE", key.as_str())];
    let err = xtask_err(&clone, &["release", "plan", "--registry", &registry], &env);
    assert!(
        err.contains(&format!("registry {registry} is unreachable")),
        "{err}"
    );
    let err = xtask_err(
        &clone,
        &["release", "publish", "--registry", &registry],
        &env,
    );
    assert!(err.contains("is unreachable"), "{err}");
    let err = xtask_err(
        &clone,
        &["release", "publish", "--registry", "http://x/y"],
        &env,
    );
    assert!(err.contains("is not HOST[:PORT]"), "{err}");
}

#[test]
fn dry_run_prints_the_exact_commands_and_writes_nothing() {
    let mut cleanup = Cleanup::default();
    let clone = clone_head(&mut cleanup, &repo_root(), "fogrel-dry");
    let out_dir = cleanup.temp_dir("fogrel-dry-out").join("artifacts");
    let out_s = out_dir.display().to_string();
    let dist = xtask_ok(
        &clone,
        &["--dry-run", "release", "dist", "--out", &out_s],
        &[],
    );
    for want in [
        "cargo build --release --locked --target",
        "--remap-path-prefix=",
        "SOURCE_DATE_EPOCH=",
        "+crt-static",
    ] {
        assert!(
            dist.contains(want),
            "dist --dry-run lacks `{want}`:\n{dist}"
        );
    }
    let key = key_file(&mut cleanup);
    let env = [("FOG_MINISIGN_KEY_FILE", key.as_str())];
    let sign = xtask_ok(
        &clone,
        &["--dry-run", "release", "sign", "--out", &out_s],
        &env,
    );
    assert!(sign.contains("minisign -S -s"), "{sign}");
    assert!(!out_dir.exists(), "--dry-run wrote {}", out_dir.display());
}
