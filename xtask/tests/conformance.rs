//! Conformance: our compose model against Compose itself. For every named
//! environment (with `.env.example` as the env file) and for the merge
//! fixture, the services, images, commands, environment, networks, published
//! ports and volume targets of `cargo xtask config` must equal what
//! `docker-compose ... config` (v1) or `docker compose ... config` (v2)
//! prints. Both outputs are parsed here with a port normaliser of its own, so
//! short and long port syntax compare equal. With `CI=true` a missing Compose
//! fails the test; elsewhere the test skips.

mod common;

#[path = "../src/usage.rs"]
mod usage;
pub use usage::UsageError;
#[allow(dead_code)] // only NAMED and files() are used here
#[path = "../src/environments.rs"]
mod environments;

// The facts compared, shared with the compose crate's corpus test.
#[path = "../../crates/compose/tests/support/facts.rs"]
mod facts;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use common::{compose_or_skip, crate_dir, fixture, xtask, Cleanup};
use facts::{facts, text};

/// Compare `xtask config` with compose's `config` for `files`.
fn assert_conforms(compose: &[&str], project_dir: &Path, env_file: &Path, files: &[PathBuf]) {
    let mut ours_args = vec!["config".to_string()];
    for f in files {
        ours_args.extend(["-f".to_string(), f.display().to_string()]);
    }
    ours_args.extend(["--env-file".to_string(), env_file.display().to_string()]);
    let args: Vec<&str> = ours_args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    assert!(
        out.status.success(),
        "xtask config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours_text = out.stdout;
    let ours: Value = serde_yaml::from_slice(&ours_text).expect("our config output is YAML");

    let mut cmd = Command::new(compose[0]);
    cmd.args(&compose[1..])
        .arg("--project-directory")
        .arg(project_dir)
        .arg("--env-file")
        .arg(env_file);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    // v2 leaves services of inactive profiles out; enable every profile we saw.
    let profiles: BTreeSet<String> = ours["services"]
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|s| s.get("profiles").and_then(Value::as_sequence))
        .flatten()
        .map(text)
        .collect();
    for p in &profiles {
        cmd.arg("--profile").arg(p);
    }
    let out = cmd.arg("config").output().expect("run compose config");
    assert!(
        out.status.success(),
        "compose config failed for {files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_yaml::from_slice(&out.stdout).expect("compose config output is YAML");
    assert_eq!(
        facts(&ours),
        facts(&theirs),
        "model differs from compose for {files:?}"
    );

    // Compose reads our output back to the same model.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp =
        std::env::temp_dir().join(format!("xtask-conformance-{}-{n}.yml", std::process::id()));
    std::fs::write(&tmp, &ours_text).unwrap();
    let mut cleanup = Cleanup::default();
    cleanup.paths.push(tmp.clone());
    let mut cmd = Command::new(compose[0]);
    cmd.args(&compose[1..]).arg("-f").arg(&tmp);
    for p in &profiles {
        cmd.arg("--profile").arg(p);
    }
    let out = cmd.arg("config").output().expect("run compose config");
    assert!(
        out.status.success(),
        "compose rejects our config output for {files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reread: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        facts(&ours),
        facts(&reread),
        "our output reads back differently"
    );
}

#[test]
fn merge_fixture_matches_compose() {
    let Some(compose) = compose_or_skip("merge_fixture_matches_compose") else {
        return;
    };
    let dir = fixture("merge");
    let files = [dir.join("base.yml"), dir.join("override.yml")];
    assert_conforms(&compose, &dir, &dir.join(".env"), &files);
    assert_conforms(&compose, &dir, &dir.join(".env"), &files[..1]);
}

#[test]
fn named_environments_match_compose() {
    let Some(compose) = compose_or_skip("named_environments_match_compose") else {
        return;
    };
    let root = crate_dir().parent().unwrap().to_path_buf();
    let env_file = root.join(".env.example");
    if !root.join("compose").is_dir() {
        eprintln!("skipping: compose/ has not landed on this branch yet");
        return;
    }
    assert!(
        root.join("compose/base.yml").is_file() && env_file.is_file(),
        "the repository's compose/ overlays and .env.example must exist"
    );
    for name in environments::NAMED {
        let env: environments::Environment = name.parse().unwrap();
        let files: Vec<PathBuf> = env.files().iter().map(|f| root.join(f)).collect();
        assert_conforms(&compose, &root.join("compose"), &env_file, &files);
    }
}

/// `cargo xtask config --compose v1|v2 -f FILE` prints exactly what the
/// compose crate makes of the file (the crate's corpus test compares that
/// with Compose): for every corpus file and both flavours, the same bytes,
/// or both refuse. No Docker needed.
#[test]
fn config_command_prints_the_compose_crate_model() {
    let root = crate_dir().join("../crates/compose/tests/fixtures/corpus");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("yml" | "yaml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 150,
        "the corpus is missing: {}",
        root.display()
    );
    let (mut printed, mut refused) = (0, 0);
    for file in &files {
        let dir = file.parent().unwrap();
        for (name, flavour) in [
            ("v1", xtask::compose::Flavour::V1),
            ("v2", xtask::compose::Flavour::V2),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
                .env_remove("FOG_ENV_FILE")
                .current_dir(dir)
                .args(["config", "--compose", name, "-f"])
                .arg(file)
                .output()
                .expect("run xtask config");
            let dot_env = dir.join(".env");
            let env = xtask::compose::EnvSource::with_process_env(
                Some(dot_env.as_path()).filter(|p| p.is_file()),
            )
            .map(|env| env.with_flavour(flavour));
            let ours = env.and_then(|env| {
                let project = xtask::compose::Project::load(std::slice::from_ref(file), &env)?;
                project.check_dependencies()?;
                Ok(project.to_yaml())
            });
            match ours {
                Ok(yaml) => {
                    assert!(
                        out.status.success(),
                        "{} ({name}): the crate loads it, `config` refuses: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&out.stdout),
                        yaml,
                        "{} ({name})",
                        file.display()
                    );
                    printed += 1;
                }
                Err(e) => {
                    assert!(
                        !out.status.success(),
                        "{} ({name}): the crate refuses ({e}), `config` prints it",
                        file.display()
                    );
                    refused += 1;
                }
            }
        }
    }
    eprintln!(
        "config -f on {} corpus files x 2 flavours: {printed} printed as the crate does, {refused} refused by both",
        files.len()
    );
}
