//! `cargo xtask ci`'s own promises, without Docker: `--list` names every
//! check (the claim map's `claims` among them), an unknown `--only` is a usage
//! error (exit 2) naming the known checks, and `scripts/test-docker-configs.sh`
//! never skips silently: under `CI=true` a missing promtool, amtool or Compose
//! is a failure naming the tool, outside CI a `SKIPPED` line says what did
//! not run. The script runs with a PATH holding only the few shell tools it
//! needs, so every checker is missing. The backup and WAL alert rules pass
//! their promtool unit tests (`compose/config/prometheus/tests/`), and a
//! rule whose threshold is changed fails them.

mod common;

use std::{path::PathBuf, process::Command};

use common::*;

#[test]
fn ci_lists_its_checks_and_refuses_an_unknown_one() {
    let out = xtask(&["ci", "--list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Vec<String> = stdout(&out).lines().map(String::from).collect();
    for check in ["fmt", "clippy", "test", "fuzz", "check", "claims"] {
        assert!(listed.iter().any(|l| l == check), "{check} in {listed:?}");
    }
    let out = xtask(&["ci", "--only", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("unknown check `nope`") && stderr(&out).contains("claims"));
}

/// Run the config script with PATH = a dir of links to `tools` only.
fn run_script_without_checkers(guard: &mut Cleanup, ci: bool) -> std::process::Output {
    let bin = guard.temp_dir("ci-tools-bin");
    for tool in ["dirname", "sed", "grep", "tr", "cat"] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| PathBuf::from(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} is installed"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let root = crate_dir().parent().unwrap().to_path_buf();
    let mut cmd = Command::new("/bin/bash");
    cmd.arg(root.join("scripts/test-docker-configs.sh"))
        .env_clear()
        .env("PATH", &bin)
        .current_dir(&root);
    if ci {
        cmd.env("CI", "true");
    }
    cmd.output().expect("bash runs")
}

#[test]
fn config_checks_fail_naming_each_missing_tool_under_ci_and_say_skipped_outside() {
    let mut guard = Cleanup::default();
    let out = run_script_without_checkers(&mut guard, true);
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    for tool in ["promtool", "amtool", "Compose"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("FAIL  {tool}")) && l.contains("CI=true")),
            "{tool} is named as a failure: {err}"
        );
    }
    let out = run_script_without_checkers(&mut guard, false);
    let err = stderr(&out);
    for what in ["Prometheus config", "Alertmanager config", "compose config"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("==> SKIPPED") && l.contains(what)),
            "a SKIPPED line for the {what} checks: {err}"
        );
    }
}

/// `promtool` on PATH, else `None` (a failure under CI=true).
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(!in_ci(), "promtool is missing; run scripts/ci-setup.sh");
        eprintln!("skipping: no promtool");
    }
    found
}

#[test]
fn backup_and_wal_alerts_pass_their_promtool_tests_and_a_changed_threshold_fails() {
    let Some(promtool) = promtool() else { return };
    let root = crate_dir().parent().unwrap().to_path_buf();
    let prom = root.join("compose/config/prometheus");
    let run = |tests: &std::path::Path| {
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(tests.join("backup_test.yml"))
            .arg(tests.join("wal_test.yml"))
            .output()
            .unwrap()
    };
    let out = run(&prom.join("tests"));
    assert!(out.status.success(), "{}", text(&out));
    // A copy with the stall threshold at 20 minutes instead of 10 fails.
    let mut guard = Cleanup::default();
    let copy = guard.temp_dir("wal-rules");
    std::fs::create_dir_all(copy.join("rules")).unwrap();
    std::fs::create_dir_all(copy.join("tests")).unwrap();
    let rules = std::fs::read_to_string(prom.join("rules/backup.yml")).unwrap();
    let changed = rules.replace(
        "(fog_wal_last_archived_timestamp_seconds) > 600",
        "(fog_wal_last_archived_timestamp_seconds) > 1200",
    );
    assert_ne!(rules, changed);
    std::fs::write(copy.join("rules/backup.yml"), changed).unwrap();
    for t in ["backup_test.yml", "wal_test.yml"] {
        std::fs::copy(prom.join("tests").join(t), copy.join("tests").join(t)).unwrap();
    }
    let out = run(&copy.join("tests"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("FogWalArchivingStalled"),
        "{}",
        text(&out)
    );
}

/// Issue 19 item 7: the backup alerts fire by their own promtool unit tests
/// (`FogBackupTooOld` after 26 h plus `for`, `FogBackupDrillTooOld` after 8
/// days), and those tests fail when the rule's age changes: a copy of the
/// rules with 30 h instead of 26 h is caught.
#[test]
fn backup_alerts_pass_their_promtool_tests_and_a_changed_age_fails_them() {
    let Some(promtool) = promtool() else { return };
    let prometheus = crate_dir()
        .parent()
        .unwrap()
        .join("compose/config/prometheus");
    let run = |dir: &std::path::Path| {
        Command::new(&promtool)
            .args(["test", "rules", "tests/backup_test.yml"])
            .current_dir(dir)
            .output()
            .expect("promtool runs")
    };
    let out = run(&prometheus);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("SUCCESS"), "{}", text(&out));

    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copy.path().join("rules")).unwrap();
    std::fs::create_dir_all(copy.path().join("tests")).unwrap();
    let rules = std::fs::read_to_string(prometheus.join("rules/backup.yml")).unwrap();
    assert!(rules.contains("> 26 * 3600"), "{rules}");
    std::fs::write(
        copy.path().join("rules/backup.yml"),
        rules.replace("> 26 * 3600", "> 30 * 3600"),
    )
    .unwrap();
    std::fs::copy(
        prometheus.join("tests/backup_test.yml"),
        copy.path().join("tests/backup_test.yml"),
    )
    .unwrap();
    let out = run(copy.path());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FogBackupTooOld"), "{}", text(&out));
}

/// CI runs `.ci/run` on a fresh clone; it must run the README's test command,
/// word for word (the README's first `sh` block after "Run the tests").
#[test]
fn ci_run_calls_the_readme_test_command() {
    let root = crate_dir().parent().unwrap().to_path_buf();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let after = readme
        .split_once("Run the tests")
        .expect("README.md has a \"Run the tests\" paragraph")
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a ```sh block after \"Run the tests\"")
        .0;
    let command = block.trim();
    assert!(command.contains("cargo xtask ci"), "{command}");
    let ci_run = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci_run
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.trim() == command),
        ".ci/run does not run README.md's test command `{command}` on a line of its own"
    );
}
