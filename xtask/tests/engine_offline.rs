//! End-to-end tests on the real images, offline: `dev` with the Debian-built
//! `fog-offline/*` images (built or reused by the images step, which points the
//! env file at them) comes up with PostgreSQL and Prometheus healthy and
//! Grafana and Loki left out with one warning; `env use betanet` on top of it
//! makes the three mixnodes healthy, and a loadgen smoke run through Compose
//! delivers 1,000 packets.

mod common;
mod engine_support;

use common::*;
use engine_support::*;
use serde_json::Value;

fn healthy_services(stack: &Stack) -> Vec<String> {
    let out = stack.xtask(&["ps", "--format", "json"]);
    let ps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut s: Vec<String> = ps
        .iter()
        .filter(|c| c["health"] == "healthy")
        .map(|c| c["service"].as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

#[test]
fn dev_offline_then_betanet_with_a_loadgen_smoke_run() {
    if !engine_or_skip("dev_offline_then_betanet_with_a_loadgen_smoke_run") {
        return;
    }
    let stack = Stack::new("offline", 9, None, &[("LOADGEN_PACKETS", "1000".into())]);
    let offline = [("FOG_OFFLINE", "1")];

    let out = stack.xtask_with(&["dev", "--timeout", "240"], &offline);
    assert!(out.status.success(), "dev failed: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("grafana") && err.contains("loki") && err.contains("warning"),
        "one warning names the left-out services: {err}"
    );
    assert_eq!(healthy_services(&stack), ["postgres", "prometheus"]);
    let env = std::fs::read_to_string(&stack.env_file).unwrap();
    assert!(
        env.contains("POSTGRES_IMAGE=fog-offline/postgres:"),
        "env file points at the offline image: {env}"
    );

    let out = stack.xtask_with(&["env", "use", "betanet", "--timeout", "300"], &offline);
    assert!(
        out.status.success(),
        "env use betanet failed: {}",
        stderr(&out)
    );
    assert_eq!(
        healthy_services(&stack),
        [
            "mixnode-1",
            "mixnode-2",
            "mixnode-3",
            "postgres",
            "prometheus"
        ]
    );

    // The loadgen smoke run, exactly as a developer types it with plain Compose.
    let files = ["compose/base.yml", "compose/betanet.yml"];
    let mut cmd = compose_command();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR").trim_end_matches("/xtask"))
        .args(["--project-directory", "compose", "--env-file"])
        .arg(&stack.env_file)
        .args(["-p", &stack.project]);
    for f in files {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .args(["--profile", "loadgen", "run", "--rm", "loadgen"])
        .output()
        .unwrap();
    let text = stdout(&out);
    eprintln!("loadgen: {text}\n{}", stderr(&out));
    assert!(out.status.success(), "loadgen failed: {}", stderr(&out));
    let report: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("loadgen --json prints a JSON report");
    assert_eq!(report["sent"].as_u64(), Some(1000), "{report}");
    assert_eq!(report["delivered"].as_u64(), Some(1000), "{report}");

    let out = stack.xtask(&["down", "--volumes", "--yes"]);
    assert!(out.status.success());
    assert!(
        stack.containers().is_empty() && stack.networks().is_empty() && stack.volumes().is_empty()
    );
}
