//! `cargo xtask report` without Docker: the legacy layouts against the
//! consolidated environments (every count and the duplicated instances), the
//! JSON schema's shape, `REV:ENV` read from a temporary git repository,
//! `--fail-on` budgets (exit 1 when exceeded, 2 on a bad expression) and bad
//! specs (exit 2, naming the flag).

mod common;

use std::path::Path;
use std::process::Command;

use common::{crate_dir, fixture, stderr, text, xtask, Cleanup};
use serde_json::Value;

fn files(dir: &str, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| fixture(dir).join(n).display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn legacy3() -> String {
    files(
        "report/legacy3",
        &[
            "docker-compose.yml",
            "docker-compose.betanet.yml",
            "docker-compose.monitoring.yml",
        ],
    )
}

/// `report ... --format json` parsed; panics with the output when it fails.
fn json(args: &[&str]) -> Value {
    let mut all = vec!["report", "--format", "json"];
    all.extend_from_slice(args);
    let out = xtask(&all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)))
}

fn instances(side: &Value, repository: &str) -> (u64, bool) {
    side["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repository"] == repository)
        .map_or((0, false), |r| {
            (
                r["instances"].as_u64().unwrap(),
                r["duplicated"].as_bool().unwrap(),
            )
        })
}

#[test]
fn three_legacy_stacks_against_the_consolidated_environment() {
    let doc = json(&["--before", &legacy3(), "--after", "betanet+monitoring"]);
    let (b, a, d) = (&doc["before"], &doc["after"], &doc["delta"]);
    // Counts from the fixture's README.
    assert_eq!(b["service_count"], 12);
    assert_eq!(b["containers"], 12);
    assert_eq!(b["ports"], 8);
    assert_eq!(b["networks"], 3);
    assert_eq!(b["volumes"], 1);
    assert_eq!(b["declared"]["memory_limit_bytes"], 0);
    assert_eq!(instances(b, "prom/prometheus"), (3, true));
    assert_eq!(instances(b, "grafana/grafana"), (3, true));
    assert_eq!(
        instances(b, "fog-compute/mixnode"),
        (3, false),
        "numbered siblings are not duplicates"
    );
    // compose/base.yml + betanet.yml + monitoring.yml (with the one-shot migrate).
    assert_eq!(a["service_count"], 11);
    assert_eq!(a["optional_services"], serde_json::json!(["loadgen"]));
    assert_eq!(a["ports"], 6);
    assert_eq!(a["networks"], 2);
    // Eleven before, plus postgres_wal_archive (WAL archiving for PITR).
    assert_eq!(a["volumes"], 12);
    assert_eq!(instances(a, "prom/prometheus"), (1, false));
    assert_eq!(instances(a, "grafana/grafana"), (1, false));
    // mixnodes 3 x 512M, node-exporter 128M, alertmanager 128M, cadvisor 256M.
    assert_eq!(a["declared"]["memory_limit_bytes"], 4u64 * (512 << 20));
    assert_eq!(a["declared"]["cpu_limit"], 4.0);
    assert_eq!(d["containers"], -1.0);
    assert_eq!(d["percent"]["containers"], -1.0 / 12.0 * 100.0);
    assert_eq!(
        d["findings_fixed"],
        serde_json::json!(["duplicate-service"])
    );
    assert_eq!(b["findings"]["by_rule"]["duplicate-service"], 4);
    let md = xtask(&[
        "report",
        "--before",
        &legacy3(),
        "--after",
        "betanet+monitoring",
    ]);
    let md = String::from_utf8_lossy(&md.stdout).into_owned();
    assert!(
        md.contains("| `prom/prometheus` ⚠ duplicated | 3 | 1 | -2 | -66.7% |"),
        "{md}"
    );
    assert!(
        md.contains("| `fog-compute/mixnode` | 3 | 3 | 0 | +0.0% |"),
        "{md}"
    );
    assert!(md.contains("| services | 12 | 11 | -1 | -8.3% |"), "{md}");
}

#[test]
fn planted_legacy_layout_against_betanet() {
    let before = files(
        "legacy",
        &[
            "docker-compose.yml",
            "docker-compose.betanet.yml",
            "docker-compose.monitoring.yml",
        ],
    );
    let doc = json(&["--before", &before, "--after", "betanet"]);
    let (b, a) = (&doc["before"], &doc["after"]);
    // postgres, prometheus (redefined by monitoring: one service), grafana,
    // mixnode-1, mixnode-2, betanet-prometheus, betanet-grafana, node-exporter, alertmanager.
    assert_eq!(b["service_count"], 9);
    assert_eq!(instances(b, "prom/prometheus"), (2, true));
    assert_eq!(instances(b, "grafana/grafana"), (2, true));
    assert_eq!(b["ports"], 5);
    // Rows of the fixture's README table for these three files.
    assert_eq!(b["findings"]["by_rule"]["unpinned-image"], 9);
    assert_eq!(b["findings"]["by_rule"]["literal-secret"], 5);
    assert_eq!(b["findings"]["by_rule"]["undeclared-network"], 4);
    assert_eq!(a["service_count"], 8);
    assert_eq!(a["containers"], 8);
    assert_eq!(a["ports"], 3);
    assert_eq!(a["findings"]["errors"], 0);
    assert_eq!(instances(a, "fog-compute/mixnode"), (3, false));
}

#[test]
fn json_has_the_documented_shape() {
    let doc = json(&["--before", "base", "--after", "betanet"]);
    assert_eq!(doc["schema"], "fog-compute/report/v1");
    assert_eq!(doc["live"], false);
    for side in ["before", "after", "delta"] {
        for key in [
            "containers",
            "memory_bytes",
            "cpu_percent",
            "images_bytes",
            "ports",
            "services",
        ] {
            assert!(
                doc[side].get(key).is_some(),
                "{side}.{key} missing: {}",
                doc[side]
            );
        }
    }
    assert!(
        doc["before"]["memory_bytes"].is_null(),
        "static reports have no measured memory"
    );
    let rows = doc["after"]["services"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "migrate",
            "prometheus",
            "grafana",
            "loki",
            "mixnode-1",
            "mixnode-2",
            "mixnode-3"
        ]
    );
    let m1 = &rows[5];
    assert_eq!(m1["memory_limit_bytes"], 512 << 20);
    assert_eq!(m1["status"], "static");
    let delta_rows = doc["delta"]["services"].as_array().unwrap();
    let m3 = delta_rows
        .iter()
        .find(|r| r["name"] == "mixnode-3")
        .unwrap();
    assert_eq!(
        (
            m3["containers_before"].as_u64(),
            m3["containers_after"].as_u64()
        ),
        (Some(0), Some(1))
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rev_env_reads_a_temporary_git_repository() {
    let mut guard = Cleanup::default();
    let repo = guard.temp_dir("fogrep-git");
    let compose = repo.join("compose");
    std::fs::create_dir_all(&compose).unwrap();
    let src = crate_dir().parent().unwrap().join("compose");
    for f in ["base.yml", "betanet.yml"] {
        std::fs::copy(src.join(f), compose.join(f)).unwrap();
    }
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "one"]);
    // The second commit adds a fourth mixnode, at the end of `services:`.
    let betanet = std::fs::read_to_string(compose.join("betanet.yml")).unwrap();
    let betanet = betanet.replacen(
        "\nvolumes:",
        "\n  mixnode-4:\n    <<: *mixnode\n    deploy:\n      replicas: 2\n      resources: {limits: {memory: 256M}}\n\nvolumes:",
        1,
    );
    std::fs::write(compose.join("betanet.yml"), betanet).unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    // The working tree differs from both commits: the report must not read it.
    std::fs::write(compose.join("betanet.yml"), "not: [valid").unwrap();
    let r = repo.display().to_string();
    let doc = json(&[
        "--repo",
        &r,
        "--before",
        "HEAD~1:betanet",
        "--after",
        "HEAD:betanet",
    ]);
    assert_eq!(doc["before"]["label"], "betanet at HEAD~1");
    assert_eq!(doc["before"]["files"][1], "compose/betanet.yml@HEAD~1");
    assert_eq!(doc["before"]["containers"], 8);
    assert_eq!(
        doc["after"]["containers"], 10,
        "mixnode-4 runs two replicas"
    );
    assert_eq!(doc["delta"]["containers"], 2.0);
    // Its own `deploy` replaces the anchor's (`<<` merges shallowly): 256M, two replicas.
    assert_eq!(
        doc["delta"]["declared_memory_limit_bytes"],
        2.0 * (256 << 20) as f64
    );
    for (before, says) in [
        (
            "HEAD~1:monitoring",
            "`compose/monitoring.yml` does not exist at revision HEAD~1",
        ),
        ("nosuchrev:betanet", "`nosuchrev` is not a git revision"),
    ] {
        let out = xtask(&[
            "report", "--repo", &r, "--before", before, "--after", "betanet",
        ]);
        assert_eq!(out.status.code(), Some(2), "{before}: {}", text(&out));
        assert!(stderr(&out).contains(says), "{before}: {}", text(&out));
    }
}

#[test]
fn budgets_fail_the_run_and_bad_ones_are_usage_errors() {
    let run = |budget: &str| {
        xtask(&[
            "report",
            "--before",
            &legacy3(),
            "--after",
            "betanet+monitoring",
            "--format",
            "json",
            "--fail-on",
            budget,
        ])
    };
    let ok = run("containers>+0");
    assert!(ok.status.success(), "{}", text(&ok));
    let doc: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(doc["budgets"][0]["exceeded"], false);
    let grew = run("memory-limit>+10%");
    assert_eq!(grew.status.code(), Some(1), "{}", text(&grew));
    assert!(
        stderr(&grew).contains("budget exceeded: `memory-limit>+10%`"),
        "{}",
        text(&grew)
    );
    let doc: Value = serde_json::from_slice(&grew.stdout).unwrap();
    assert_eq!(
        doc["budgets"][0]["exceeded"], true,
        "the report is still printed"
    );
    let ports = run("ports>=6");
    assert_eq!(ports.status.code(), Some(1), "{}", text(&ports));
    for bad in ["memory>>10%", "memroy>+10%", "containers", "ports>+3MB"] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(
            stderr(&out).contains("METRIC>LIMIT"),
            "{bad}: {}",
            text(&out)
        );
    }
    let live_only = run("memory>+10%");
    assert_eq!(live_only.status.code(), Some(2), "{}", text(&live_only));
    assert!(
        stderr(&live_only).contains("only with --live"),
        "{}",
        text(&live_only)
    );
}

#[test]
fn bad_specs_are_usage_errors() {
    for (spec, says) in [
        (
            "staging",
            "--before `staging`: unknown environment part `staging`",
        ),
        ("missing-1.yml,missing-2.yml", "does not exist"),
        ("main:", "REV:ENV needs both parts"),
    ] {
        let out = xtask(&["report", "--before", spec, "--after", "betanet"]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", text(&out));
        assert!(stderr(&out).contains(says), "{spec}: {}", text(&out));
    }
    let out = xtask(&["report", "--after", "betanet"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--before is required: {}",
        text(&out)
    );
}

#[test]
fn one_run_writes_several_formats() {
    let mut guard = Cleanup::default();
    let dir = guard.temp_dir("fogrep-out");
    let path = |name: &str| dir.join(name).display().to_string();
    let out = xtask(&[
        "report",
        "--before",
        "base",
        "--after",
        "betanet",
        "--out",
        &path("r.md"),
        "--out",
        &path("r.json"),
        "--out",
        &path("r.html"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "with --out nothing goes to stdout");
    let md = std::fs::read_to_string(dir.join("r.md")).unwrap();
    assert!(md.starts_with("# Resource report: base → betanet"), "{md}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(doc["after"]["containers"], 8);
    let html = std::fs::read_to_string(dir.join("r.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg id=\"memory\""));
}
