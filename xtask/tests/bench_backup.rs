//! E2E on the real engine: `cargo xtask bench backup --size-mb 8 --runs 1
//! --json` (its own project `fogbench-backup-<pid>`, subnets 10.240.2.0/24 and
//! 10.240.3.0/24, nothing published) prints every row with a positive time,
//! throughput, data size and archive size, and leaves no container, volume
//! or network of its project behind. The figures are not asserted.

mod common;

use std::process::{Command, Stdio};

use common::{docker_output, engine_or_skip, text};

const ROWS: [&str; 14] = [
    "backup_postgres",
    "backup_postgres_encrypted",
    "upload_postgres_s3",
    "pg_dump_exec_devnull",
    "pg_dump_in_container",
    "tar_czf_pgdata",
    "restore_postgres",
    "pg_restore_in_container",
    "tar_xzf_pgdata",
    "backup_volume",
    "tar_czf_volume",
    "restore_volume",
    "untar_volume_streamed",
    "tar_xzf_volume",
];

#[test]
fn bench_backup_small_run_reports_every_row_and_leaves_nothing() {
    if !engine_or_skip("bench_backup") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "backup",
            "--size-mb",
            "8",
            "--runs",
            "1",
            "--json",
            "--fog-subnet",
            "10.240.2.0/24",
            "--betanet-subnet",
            "10.240.3.0/24",
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
        .find(|w| w.starts_with("fogbench-backup-"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .map(str::to_string);
    // Whatever happened, the bench removed its project.
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
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(report["benchmark"], "backup");
    assert!(report["data"]["postgres_table_bytes"].as_u64().unwrap() >= 8 << 20);
    assert!(report["data"]["volume_bytes"].as_u64().unwrap() >= 8 << 20);
    assert!(report["data"]["volume_files"].as_u64().unwrap() > 100);
    let rows = report["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ROWS, "{report:#}");
    for row in rows {
        for key in ["seconds", "mb_per_s"] {
            let v = row[key].as_f64().unwrap_or(0.0);
            assert!(v > 0.0 && v.is_finite(), "{key} of {row}");
        }
        for key in ["data_bytes", "archive_bytes"] {
            assert!(row[key].as_u64().unwrap_or(0) > 0, "{key} of {row}");
        }
    }
    for id in ["backup_postgres", "backup_volume"] {
        let row = rows.iter().find(|r| r["id"] == id).unwrap();
        assert!(row["stream_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
    }
    assert_eq!(report["goals"].as_array().map(Vec::len), Some(5));
}
