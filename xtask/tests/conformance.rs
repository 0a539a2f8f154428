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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use common::{compose_or_skip, crate_dir, fixture, xtask, Cleanup};

/// The facts compared for one service.
#[derive(Debug, PartialEq, Eq)]
struct ServiceFacts {
    image: Option<String>,
    command: Option<Vec<String>>,
    environment: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    ports: BTreeSet<String>,
    volume_targets: BTreeSet<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// `ip:published:target/proto` from either port syntax.
fn port(v: &Value) -> String {
    let (ip, published, target, proto) = match v {
        Value::Mapping(m) => {
            let get = |k: &str| m.get(k).map(text).unwrap_or_default();
            let proto = m.get("protocol").map(text).unwrap_or_else(|| "tcp".into());
            (get("host_ip"), get("published"), get("target"), proto)
        }
        other => {
            let s = text(other);
            let (spec, proto) = s.rsplit_once('/').unwrap_or((&s, "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            let (ip, published, target) = match parts.as_slice() {
                [t] => ("", "", *t),
                [p, t] => ("", *p, *t),
                [ip, p, t] => (*ip, *p, *t),
                _ => panic!("unexpected port {s}"),
            };
            (ip.into(), published.into(), target.into(), proto.into())
        }
    };
    let ip = if ip == "0.0.0.0" { String::new() } else { ip };
    format!("{ip}:{published}:{target}/{proto}")
}

fn volume_target(v: &Value) -> String {
    match v {
        Value::Mapping(m) => text(&m["target"]),
        other => {
            let s = text(other);
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [t] | [_, t] | [_, t, _] => t.to_string(),
                _ => panic!("unexpected volume {s}"),
            }
        }
    }
}

fn facts(doc: &Value) -> BTreeMap<String, ServiceFacts> {
    let services = doc["services"].as_mapping().expect("services mapping");
    services
        .iter()
        .map(|(name, s)| {
            let list = |k: &str| -> Vec<&Value> {
                s.get(k)
                    .and_then(Value::as_sequence)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default()
            };
            let command = s.get("command").map(|c| match c {
                Value::Sequence(items) => items.iter().map(text).collect(),
                other => text(other).split_whitespace().map(str::to_string).collect(),
            });
            let environment = s
                .get("environment")
                .and_then(Value::as_mapping)
                .map(|m| m.iter().map(|(k, v)| (text(k), text(v))).collect())
                .unwrap_or_default();
            let networks = match s.get("networks") {
                Some(Value::Mapping(m)) => m.keys().map(text).collect(),
                Some(Value::Sequence(items)) => items.iter().map(text).collect(),
                _ => BTreeSet::new(),
            };
            let facts = ServiceFacts {
                image: s.get("image").map(text),
                command,
                environment,
                networks,
                ports: list("ports").into_iter().map(port).collect(),
                volume_targets: list("volumes").into_iter().map(volume_target).collect(),
            };
            (text(name), facts)
        })
        .collect()
}

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
