//! End-to-end tests of bring-up, switching and tear-down against the real
//! engine and the real compose overlays, with every image variable pointed at
//! a small stub image (so they need no registry and no offline build; betanet
//! runs with `--skip-images` so the mixnode image is not built): `dev`
//! comes up healthy, `env use betanet` adds three healthy mixnodes and removes
//! nothing it should keep, `env use dev` removes the mixnodes, and `down`
//! leaves no container or network of the project behind while keeping volumes.
//! Every test here is named `stub_images_xtask_logic_*`: the stub image shows
//! the xtask's own logic (order, flags, cleanup, messages), not that the real
//! services work; `engine_switch` and `engine_offline` run the real images.

mod common;
mod engine_support;

use common::*;
use engine_support::*;
use serde_json::Value;

/// `ps --format json` without the one-shot `migrate` service, which must
/// have run to completion (exited 0) wherever it appears.
fn ps_json(stack: &Stack) -> Vec<Value> {
    let out = stack.xtask(&["ps", "--format", "json"]);
    assert!(out.status.success());
    let all: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("ps --format json prints JSON");
    all.into_iter()
        .filter(|c| {
            if c["service"] != "migrate" {
                return true;
            }
            assert_eq!(c["state"], "exited", "the one-shot migrate ran: {c}");
            assert_eq!(c["exit_code"], 0, "the one-shot migrate succeeded: {c}");
            false
        })
        .collect()
}

fn services(ps: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = ps
        .iter()
        .map(|c| c["service"].as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

#[test]
fn stub_images_xtask_logic_dev_switch_to_betanet_and_back_then_down_leaves_nothing() {
    let Some(stack) = Stack::stub(
        "stub_images_xtask_logic_dev_switch_to_betanet_and_back_then_down_leaves_nothing",
        "life",
        1,
    ) else {
        return;
    };

    let out = stack.xtask(&["dev", "--timeout", "120"]);
    assert!(out.status.success(), "dev failed: {}", stderr(&out));
    let noise = stderr(&out).to_lowercase();
    assert!(
        !noise
            .lines()
            .any(|l| l.contains("warn") && l.contains("network")),
        "Compose adopts the pre-created networks without a warning: {noise}"
    );
    let pg = stack.port("POSTGRES_PORT");
    assert!(
        stdout(&out).contains(&format!("127.0.0.1:{pg}")),
        "URL table names the postgres port"
    );
    let ps = ps_json(&stack);
    assert_eq!(services(&ps), ["grafana", "loki", "postgres", "prometheus"]);
    for c in &ps {
        assert_eq!(c["state"], "running", "{c}");
        assert_eq!(c["health"], "healthy", "{c}");
    }
    let env = std::fs::read_to_string(&stack.env_file).unwrap();
    assert!(
        env.contains("COMPOSE_FILE=compose/base.yml:compose/dev.yml\n"),
        "{env}"
    );
    assert!(stack.networks().len() == 2, "both networks exist");
    let volumes_after_dev = stack.volumes();
    assert!(!volumes_after_dev.is_empty(), "dev creates named volumes");

    let out = stack.xtask(&["env", "use", "betanet", "--timeout", "120", "--skip-images"]);
    assert!(
        out.status.success(),
        "env use betanet failed: {}",
        stderr(&out)
    );
    let ps = ps_json(&stack);
    assert_eq!(
        services(&ps),
        [
            "grafana",
            "loki",
            "mixnode-1",
            "mixnode-2",
            "mixnode-3",
            "postgres",
            "prometheus"
        ]
    );
    assert!(ps.iter().all(|c| c["health"] == "healthy"), "{ps:?}");
    let show = stdout(&stack.xtask(&["env", "show"]));
    assert!(show.contains("environment:  betanet"), "{show}");

    let out = stack.xtask(&["env", "use", "dev", "--timeout", "120"]);
    assert!(out.status.success(), "env use dev failed: {}", stderr(&out));
    let ps = ps_json(&stack);
    assert_eq!(
        services(&ps),
        ["grafana", "loki", "postgres", "prometheus"],
        "mixnodes removed"
    );
    for v in &volumes_after_dev {
        assert!(stack.volumes().contains(v), "switching keeps volume {v}");
    }

    let out = stack.xtask(&["down"]);
    assert!(out.status.success(), "down failed: {}", stderr(&out));
    assert!(
        stack.containers().is_empty(),
        "down removes every container"
    );
    assert!(stack.networks().is_empty(), "down removes both networks");
    for v in &volumes_after_dev {
        assert!(stack.volumes().contains(v), "down keeps volume {v}");
    }

    let out = stack.xtask(&["down", "--volumes"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--volumes without a TTY and --yes is refused"
    );
    assert!(stderr(&out).contains("--yes"));
    let out = stack.xtask(&["down", "--volumes", "--yes"]);
    assert!(out.status.success());
    assert!(
        stack.volumes().is_empty(),
        "down --volumes --yes deletes the volumes"
    );
}

#[test]
fn stub_images_xtask_logic_dry_run_prints_the_compose_commands_and_changes_nothing() {
    let Some(stack) = Stack::stub(
        "stub_images_xtask_logic_dry_run_prints_the_compose_commands_and_changes_nothing",
        "dry",
        2,
    ) else {
        return;
    };
    let before = std::fs::read_to_string(&stack.env_file).unwrap();
    let out = stack.xtask(&["--dry-run", "betanet", "--dev", "--skip-images"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "docker network create --driver bridge --subnet {}",
            stack.fog_subnet
        )),
        "{text}"
    );
    let up = text
        .lines()
        .find(|l| l.contains(" up -d --remove-orphans"))
        .expect("prints the up command");
    assert!(up.contains(&format!("-p {}", stack.project)), "{up}");
    assert!(
        up.contains("--renew-anon-volumes"),
        "a recreated container never inherits its predecessor's volumes: {up}"
    );
    assert!(
        up.contains("-f compose/base.yml -f compose/dev.yml -f compose/betanet.yml"),
        "{up}"
    );
    assert!(
        up.contains(&format!("--env-file {}", stack.env_file.display())),
        "{up}"
    );
    assert!(stack.networks().is_empty(), "dry run creates no network");
    assert!(stack.containers().is_empty(), "dry run starts nothing");
    assert_eq!(
        std::fs::read_to_string(&stack.env_file).unwrap(),
        before,
        "dry run leaves .env alone"
    );

    // Before the first real run there is no env file: a dry run works from
    // the one it would create, and still writes nothing.
    let fresh = stack.dir.join("fresh.env");
    let out = stack.xtask_with(
        &["--dry-run", "dev", "--skip-images"],
        &[("FOG_ENV_FILE", fresh.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "# would create {} from .env.example with new random secrets (mode 0600)",
            fresh.display()
        )),
        "{text}"
    );
    let up = text
        .lines()
        .find(|l| l.contains(" up -d --remove-orphans"))
        .unwrap_or_else(|| panic!("no up command:\n{text}"));
    assert!(
        up.contains(&format!("--env-file {}", fresh.display())),
        "{up}"
    );
    assert!(!fresh.exists(), "dry run creates no env file");
    assert!(stack.networks().is_empty(), "dry run creates no network");

    // Prod, too: its strong-secret check accepts the secrets it would
    // generate, and it writes neither the env file nor the secret files.
    let secrets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../secrets");
    let had_secrets = secrets.exists();
    let out = stack.xtask_with(
        &["--dry-run", "prod", "--skip-images"],
        &[("FOG_ENV_FILE", fresh.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# would create"), "{text}");
    assert!(text.contains(" up -d --remove-orphans"), "{text}");
    assert!(!fresh.exists(), "dry run creates no env file");
    assert_eq!(
        secrets.exists(),
        had_secrets,
        "dry run writes no secret files"
    );
}

#[test]
fn stub_images_xtask_logic_restart_names_an_unknown_service_and_restarts_a_known_one() {
    let Some(stack) = Stack::stub(
        "stub_images_xtask_logic_restart_names_an_unknown_service_and_restarts_a_known_one",
        "restart",
        3,
    ) else {
        return;
    };
    let out = stack.xtask(&["dev", "--timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stack.xtask(&["restart", "postgress"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("`postgress`") && err.contains("postgres,") && err.contains("prometheus"),
        "{err}"
    );
    let out = stack.xtask(&["restart", "prometheus", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stack.xtask(&["logs", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stub_images_xtask_logic_a_failing_service_is_named_with_its_last_log_lines() {
    if !engine_or_skip("stub_images_xtask_logic_a_failing_service_is_named_with_its_last_log_lines")
    {
        return;
    }
    ensure_stub_image();
    let failing = ensure_failing_image();
    let stack = Stack::new("fail", 11, Some(STUB_IMAGE), &[("POSTGRES_IMAGE", failing)]);
    let out = stack.xtask(&["dev", "--timeout", "90"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("service `postgres` is crash-looping"), "{err}");
    assert!(err.contains("last 20 log lines of postgres"), "{err}");
    assert!(
        err.contains("stub: configured to fail"),
        "shows the service's own log: {err}"
    );
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: service `postgres` is crash-looping"),
        "the xtask's diagnosis comes first, Compose's message (if any) after it: {line}"
    );
}

/// Compose v2 waits for `service_completed_successfully` itself and fails
/// `up` with "service migrate didn't complete successfully"; v1 likewise for
/// its conditions. Either way the one-shot is named with its own log lines.
#[test]
fn stub_images_xtask_logic_a_failing_one_shot_migrate_is_named_with_its_log_lines() {
    if !engine_or_skip(
        "stub_images_xtask_logic_a_failing_one_shot_migrate_is_named_with_its_log_lines",
    ) {
        return;
    }
    ensure_stub_image();
    let failing = ensure_failing_image();
    let stack = Stack::new(
        "failmig",
        4,
        Some(STUB_IMAGE),
        &[("MIGRATE_IMAGE", failing)],
    );
    let out = stack.xtask(&["betanet", "--skip-images", "--timeout", "90"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("service `migrate` is exited (exit code 3)"),
        "names the one-shot and its exit code: {err}"
    );
    assert!(err.contains("last 20 log lines of migrate"), "{err}");
    assert!(err.contains("stub: configured to fail"), "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: service `migrate`"),
        "the xtask's diagnosis comes first, Compose's message after it: {line}"
    );
}
