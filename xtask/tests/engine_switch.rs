//! End-to-end test of an environment switch on the real engine, under the
//! Compose flavour `FOG_COMPOSE` selects (CI runs it under v1 and v2): a row
//! written in dev's Postgres (the offline Debian image, which declares
//! `VOLUME /var/lib/postgresql/data` as the upstream one does) survives
//! dev -> betanet -> dev and is not visible in betanet, and after each step
//! every container mounts exactly the volumes and bind mounts of the merged
//! model the xtask's own `compose` module reads, nothing carried over from
//! the previous container. Grafana, Loki and the mixnodes run the stub image.

mod common;
mod engine_support;

use std::collections::BTreeSet;

use common::*;
use engine_support::*;
use serde_json::Value;
use xtask::compose::{EnvSource, MountKind};
use xtask::engine::compose::ModelExt;
use xtask::selection::Selection;

/// `(kind, source, target)` of every mount, as `docker inspect` shows it.
type Mounts = BTreeSet<(String, String, String)>;

/// What the merged model of `environment` says each service mounts.
fn model_mounts(stack: &Stack, environment: &str) -> Vec<(String, Mounts)> {
    let env = EnvSource::with_process_env(Some(&stack.env_file)).unwrap();
    let model = Selection::named(environment.parse().unwrap(), &env)
        .load()
        .unwrap();
    let volumes = model.section("volumes").cloned().unwrap_or_default();
    let secret_files = model.secret_files();
    model
        .services()
        .iter()
        .filter(|s| s.profiles.is_empty())
        .map(|s| {
            let mounts = s
                .volumes
                .iter()
                .filter_map(|m| {
                    let source = m.source.clone()?;
                    Some(match m.kind {
                        MountKind::Bind => ("bind".into(), host_path(&source), m.target.clone()),
                        _ => {
                            let name = volumes
                                .get(source.as_str())
                                .and_then(|v| v.get("name"))
                                .and_then(|n| n.as_str())
                                .map(String::from)
                                .unwrap_or_else(|| format!("{}_{source}", stack.project));
                            ("volume".into(), name, m.target.clone())
                        }
                    })
                })
                .chain(secret_mounts(s, &secret_files))
                .collect();
            (s.name.clone(), mounts)
        })
        .collect()
}

/// Without Swarm, Compose bind-mounts each file secret of a service at
/// `/run/secrets/<target or name>`.
fn secret_mounts(
    service: &xtask::compose::Service,
    files: &[(String, std::path::PathBuf)],
) -> Vec<(String, String, String)> {
    let Some(list) = service.raw.get("secrets").and_then(|s| s.as_sequence()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let (source, target) = match entry.as_str() {
                Some(name) => (name.to_string(), name.to_string()),
                None => {
                    let source = entry.get("source")?.as_str()?.to_string();
                    let target = entry
                        .get("target")
                        .and_then(|t| t.as_str())
                        .map_or(source.clone(), String::from);
                    (source, target)
                }
            };
            let (_, file) = files.iter().find(|(n, _)| *n == source)?;
            let target = if target.starts_with('/') {
                target
            } else {
                format!("/run/secrets/{target}")
            };
            Some(("bind".to_string(), file.display().to_string(), target))
        })
        .collect()
}

/// A bind source as the engine shows it: relative to the project directory
/// (`compose/`) made absolute.
fn host_path(source: &str) -> String {
    match source.strip_prefix("./") {
        Some(rel) => xtask::project_root()
            .join("compose")
            .join(rel)
            .display()
            .to_string(),
        None => source.to_string(),
    }
}

/// What each running container of the stack mounts: service -> mounts.
fn engine_mounts(stack: &Stack) -> Vec<(String, Mounts)> {
    let mut out = Vec::new();
    for id in stack.containers() {
        let doc: Value = serde_json::from_str(&docker(&["inspect", &id])).unwrap();
        let c = &doc[0];
        let service = c["Config"]["Labels"]["com.docker.compose.service"]
            .as_str()
            .unwrap()
            .to_string();
        let mounts = c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let kind = m["Type"].as_str().unwrap_or("").to_string();
                let source = if kind == "volume" {
                    m["Name"].as_str().unwrap_or("")
                } else {
                    m["Source"].as_str().unwrap_or("")
                };
                (
                    kind,
                    source.to_string(),
                    m["Destination"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.push((service, mounts));
    }
    out.sort();
    out
}

/// Every running container mounts exactly what the model of `environment` names.
fn assert_mounts_match(stack: &Stack, environment: &str) {
    let mut want = model_mounts(stack, environment);
    want.sort();
    let got = engine_mounts(stack);
    assert_eq!(
        got, want,
        "after switching to {environment}: containers' mounts (left) differ from the merged model (right)"
    );
}

/// Run SQL in the stack's Postgres container over its local socket.
fn psql(stack: &Stack, sql: &str) -> std::process::Output {
    let project = format!("label=com.docker.compose.project={}", stack.project);
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &project,
        "--filter",
        "label=com.docker.compose.service=postgres",
    ]);
    assert!(!id.is_empty(), "a running postgres container");
    docker_output(&[
        "exec",
        &id,
        "psql",
        "-U",
        "fog",
        "-d",
        "fog",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ])
}

#[test]
fn switch_round_trip_keeps_dev_data_apart_and_mounts_match_the_model() {
    if !engine_or_skip("switch_round_trip_keeps_dev_data_apart_and_mounts_match_the_model") {
        return;
    }
    ensure_stub_image();
    let stub = || STUB_IMAGE.to_string();
    let stack = Stack::new(
        "switch",
        7,
        None,
        &[
            ("GRAFANA_IMAGE", stub()),
            ("LOKI_IMAGE", stub()),
            ("MIXNODE_IMAGE", stub()),
        ],
    );
    let offline = [("FOG_OFFLINE", "1")];

    let out = stack.xtask_with(&["dev", "--timeout", "300"], &offline);
    assert!(out.status.success(), "dev failed: {}", text(&out));
    assert_mounts_match(&stack, "dev");
    let out = psql(
        &stack,
        "CREATE TABLE switch_probe (v text); INSERT INTO switch_probe VALUES ('written in dev');",
    );
    assert!(out.status.success(), "insert in dev: {}", text(&out));

    let out = stack.xtask_with(
        &["env", "use", "betanet", "--timeout", "300", "--skip-images"],
        &offline,
    );
    assert!(
        out.status.success(),
        "env use betanet failed: {}",
        text(&out)
    );
    assert!(
        !stderr(&out).contains("from the previous container"),
        "Compose carried a volume over: {}",
        stderr(&out)
    );
    assert_mounts_match(&stack, "betanet");
    let out = psql(&stack, "SELECT to_regclass('switch_probe') IS NULL;");
    assert!(out.status.success(), "query in betanet: {}", text(&out));
    assert_eq!(
        stdout(&out).trim(),
        "t",
        "betanet's Postgres must not see dev's table"
    );

    let out = stack.xtask_with(&["env", "use", "dev", "--timeout", "300"], &offline);
    assert!(out.status.success(), "env use dev failed: {}", text(&out));
    assert_mounts_match(&stack, "dev");
    let out = psql(&stack, "SELECT v FROM switch_probe;");
    assert!(out.status.success(), "query back in dev: {}", text(&out));
    assert_eq!(
        stdout(&out).trim(),
        "written in dev",
        "dev's row survives the round trip"
    );
}
