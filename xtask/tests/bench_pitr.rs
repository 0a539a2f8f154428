//! E2E on the real engine: `cargo xtask bench pitr --size-mb 4 --runs 1
//! --pgbench-seconds 2 --rpo-seconds 6 --json` (its own project
//! `fogbench-pitr-<pid>`, subnets 10.229.2.0/24 and 10.229.3.0/24, nothing
//! published) measures every figure (tps with archiving off and on, the base
//! backup, the RPO from the archive and from crash recovery, the restore by
//! phase after at least 4 MiB of WAL) and leaves no container, volume or
//! network of its project behind. The values are not asserted beyond being
//! measured.

mod common;

use std::process::{Command, Stdio};

use common::{docker_output, engine_or_skip, text};

#[test]
fn bench_pitr_small_run_measures_every_figure_and_leaves_nothing() {
    if !engine_or_skip("bench_pitr") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "pitr",
            "--size-mb",
            "4",
            "--runs",
            "1",
            "--pgbench-seconds",
            "2",
            "--rpo-seconds",
            "6",
            "--json",
            "--fog-subnet",
            "10.229.2.0/24",
            "--betanet-subnet",
            "10.229.3.0/24",
        ])
        .env_remove("FOG_ENV_FILE")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .stdin(Stdio::null())
        .output()
        .expect("xtask runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let project = stderr
        .split_whitespace()
        .find(|w| w.starts_with("fogbench-pitr-"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .map(str::to_string);
    if let Some(project) = &project {
        let label = format!("label=com.docker.compose.project={project}");
        let name = format!("name={project}");
        for args in [
            vec!["ps", "-aq", "--filter", label.as_str()],
            vec!["ps", "-aq", "--filter", name.as_str()],
            vec!["volume", "ls", "-q", "--filter", name.as_str()],
            vec!["network", "ls", "-q", "--filter", name.as_str()],
        ] {
            let left = String::from_utf8_lossy(&docker_output(&args).stdout).into_owned();
            assert!(left.trim().is_empty(), "docker {args:?} still lists {left}");
        }
    }
    assert!(out.status.success(), "{}", text(&out));
    assert!(project.is_some(), "no project named on stderr: {stderr}");
    let f: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let num = |k: &str| f[k].as_f64().unwrap_or_else(|| panic!("{k}: {f}"));
    for k in ["tps_off", "tps_on"] {
        let v = f[k].as_array().unwrap_or_else(|| panic!("{k}: {f}"));
        assert_eq!(v.len(), 1, "{k}: {f}");
        assert!(v[0].as_f64().unwrap() > 0.0, "{k}: {f}");
    }
    assert!(num("base_seconds") > 0.0 && num("base_mb") > 0.0, "{f}");
    // The writer ran for 6 s at about 10 rows/s; crash recovery keeps them
    // all, the archive (archive_timeout 60 s) may have fewer.
    assert!(f["rpo_crash_rows"].as_u64().unwrap() >= 10, "{f}");
    assert!(f["rpo_archive_rows"].as_u64().unwrap() <= f["rpo_crash_rows"].as_u64().unwrap());
    assert!(
        num("rpo_crash_seconds") >= 0.0 && num("rpo_archive_seconds") >= num("rpo_crash_seconds"),
        "{f}"
    );
    assert!(num("wal_mb") >= 4.0, "{f}");
    assert!(f["wal_segments"].as_u64().unwrap() >= 1, "{f}");
    assert!(
        num("restore_seconds") > 0.0 && num("restore_replay_seconds") > 0.0,
        "{f}"
    );
    assert!(num("restore_swap_seconds") > 0.0, "{f}");
}
