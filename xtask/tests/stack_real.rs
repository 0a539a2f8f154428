//! E2E on the real offline images with their real healthchecks (no stub):
//! one stack, brought up through the xtask as `dev`, then switched with
//! `env use` to `betanet`, `monitoring` and `dev+betanet+monitoring`, each
//! checked from outside on 127.0.0.1: `psql` answers a query, Prometheus is
//! `/-/ready` and its targets show the three mixnodes (and node-exporter and
//! Alertmanager) up, Alertmanager is `/-/healthy`, node-exporter serves
//! `/metrics`, each mixnode's `/health` answers. On the way: `restart` really
//! restarts (the container's start time changes), `--dry-run` on down,
//! restart, network, env use and images changes nothing, plain `docker
//! compose ps` / `docker-compose ps` with no flags sees the active stack, and
//! the mixnode chain starts health-gated (engine events). Own project, networks
//! and ports (see `real_support`); everything removed even on failure.

mod common;
mod real_support;

use common::*;
use real_support::*;
use std::process::Command;

#[test]
fn real_stacks_dev_betanet_monitoring_and_a_combination_are_healthy_from_outside() {
    if !engine_or_skip("real_stacks_dev_betanet_monitoring_and_a_combination") {
        return;
    }
    let Some(_) = compose_or_skip("real_stacks_dev_betanet_monitoring_and_a_combination") else {
        return;
    };
    let stack = RealStack::new("real", &[]);

    // dev: postgres and prometheus on the offline images, published on 127.0.0.1.
    stack.xtask_ok(&["dev", "--timeout", "300"]);
    assert_eq!(stack.services(), ["postgres", "prometheus"]);
    assert_eq!(
        stack
            .inspect("postgres", "{{.Config.Image}}")
            .split(':')
            .next(),
        Some("fog-offline/postgres"),
        "dev runs the Debian-built image, not a stub"
    );
    let pg = stack.port("POSTGRES_PORT");
    let out = psql(pg, POSTGRES_PASSWORD, "select 41 + 1");
    assert!(out.status.success(), "psql: {}", text(&out));
    assert_eq!(stdout(&out).trim(), "42");
    let out = psql(pg, "a-wrong-password", "select 1");
    assert!(
        !out.status.success(),
        "postgres must refuse a wrong password"
    );
    let (code, body) = http_get(stack.port("PROMETHEUS_PORT"), "/-/ready");
    assert_eq!(code, 200, "prometheus /-/ready: {body}");

    everyday_commands_describe_the_running_stack(&stack);
    dry_runs_change_nothing(&stack);
    restart_changes_the_start_time(&stack);
    plain_compose_ps_sees_the_active_stack(&stack, &["postgres", "prometheus"]);

    // betanet: three mixnodes, each /health answering on its published port.
    stack.xtask_ok(&["env", "use", "betanet", "--timeout", "300"]);
    assert_eq!(
        stack.services(),
        [
            "mixnode-1",
            "mixnode-2",
            "mixnode-3",
            "postgres",
            "prometheus"
        ]
    );
    for var in ["MIXNODE1_PORT", "MIXNODE2_PORT", "MIXNODE3_PORT"] {
        let (code, body) = http_get(stack.port(var), "/health");
        assert_eq!(code, 200, "{var} /health: {body}");
    }

    // monitoring: the mixnodes are removed as orphans; exporters answer.
    stack.xtask_ok(&["env", "use", "monitoring", "--timeout", "300"]);
    assert_eq!(
        stack.services(),
        ["alertmanager", "node-exporter", "postgres", "prometheus"],
        "cAdvisor has no Debian package and is left out offline"
    );
    let (code, body) = http_get(stack.port("ALERTMANAGER_PORT"), "/-/healthy");
    assert_eq!(code, 200, "alertmanager /-/healthy: {body}");
    let (code, body) = http_get(stack.port("NODE_EXPORTER_PORT"), "/metrics");
    assert!(
        code == 200
            && body.contains("node_exporter_build_info")
            && body.contains("node_cpu_seconds_total"),
        "node-exporter /metrics ({code}): {}",
        &body[..body.len().min(300)]
    );

    // A `+` combination: everything at once, Prometheus scraping it all.
    let watch = EventWatch::start(&stack.project);
    stack.xtask_ok(&["up", "--env", "dev+betanet+monitoring", "--timeout", "300"]);
    let events = watch.finish();
    let prometheus = stack.port("PROMETHEUS_PORT");
    let (code, body) = http_get(prometheus, "/-/ready");
    assert_eq!(code, 200, "prometheus /-/ready: {body}");
    eventually(
        120,
        "prometheus sees every mixnode, node-exporter and alertmanager up",
        || {
            let (_, body) = http_get(prometheus, "/api/v1/targets?state=active");
            let found = (
                targets_up(&body, "mixnode"),
                targets_up(&body, "node-exporter").len(),
                targets_up(&body, "alertmanager").len(),
            );
            if found.0 == ["mixnode-1", "mixnode-2", "mixnode-3"] && found.1 == 1 && found.2 == 1 {
                Ok(())
            } else {
                // Name the likely cause: Docker's embedded DNS not resolving the services.
                let prometheus = stack.container("prometheus");
                let dns = docker_output(&["exec", &prometheus, "getent", "hosts", "mixnode-1"]);
                Err(format!(
                    "{found:?}; `getent hosts mixnode-1` in prometheus: {} {}",
                    dns.status,
                    stdout(&dns).trim()
                ))
            }
        },
    );
    let out = psql(
        stack.port("POSTGRES_PORT"),
        POSTGRES_PASSWORD,
        "select count(*) >= 0 from pg_stat_activity",
    );
    assert!(
        out.status.success() && stdout(&out).trim() == "t",
        "psql: {}",
        text(&out)
    );
    chain_is_health_gated(&stack, &events);
    save_names_every_image_the_environment_runs(&stack, "dev+betanet+monitoring");

    stack.xtask_ok(&["down", "--volumes", "--yes"]);
    assert!(
        stack.leftovers().is_empty(),
        "left after down: {:?}",
        stack.leftovers()
    );
}

/// `ps --format json`, `env show`, `env list` and `logs SERVICE` on the
/// running dev stack say what is really there.
fn everyday_commands_describe_the_running_stack(stack: &RealStack) {
    let out = stack.xtask_ok(&["ps", "--format", "json"]);
    let ps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("ps prints JSON");
    // The one-shot `migrate` has run to completion; the rest are healthy.
    for c in ps.iter().filter(|c| c["service"] == "migrate") {
        assert_eq!(
            (&c["state"], &c["exit_code"]),
            (&serde_json::json!("exited"), &serde_json::json!(0)),
            "{c}"
        );
    }
    let mut rows: Vec<(String, String)> = ps
        .iter()
        .filter(|c| c["service"] != "migrate")
        .map(|c| {
            (
                c["service"].as_str().unwrap_or("").to_string(),
                c["health"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("postgres".into(), "healthy".into()),
            ("prometheus".into(), "healthy".into())
        ],
        "{ps:?}"
    );
    let show = stdout(&stack.xtask_ok(&["env", "show"]));
    assert!(
        show.lines()
            .any(|l| l.starts_with("environment:") && l.trim_end().ends_with(" dev")),
        "{show}"
    );
    assert!(
        show.contains(&format!("project:      {}", stack.project)),
        "{show}"
    );
    let list = stdout(&stack.xtask_ok(&["env", "list"]));
    assert!(
        list.lines().any(|l| l.starts_with("* dev ")),
        "the active one is marked: {list}"
    );
    for named in ["prod", "betanet", "monitoring", "dev+betanet"] {
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().next() == Some(named)),
            "{named}: {list}"
        );
    }
    let logs = stack.xtask_ok(&["logs", "postgres", "--tail", "200"]);
    let logs = format!("{}{}", stdout(&logs), stderr(&logs));
    assert!(
        logs.contains("database system is ready to accept connections"),
        "{logs}"
    );
}

/// Every `--dry-run` prints the docker command it would run and changes
/// nothing: the same containers with the same start times, networks and env file.
fn dry_runs_change_nothing(stack: &RealStack) {
    let started = stack.inspect("postgres", "{{.Id}} {{.State.StartedAt}}");
    let env_before = std::fs::read_to_string(&stack.env_file).unwrap();
    let secret = crate_dir()
        .parent()
        .unwrap()
        .join("secrets/postgres_password");
    let secret_before = secret.exists();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--dry-run", "down", "--volumes", "--yes"],
            " down --remove-orphans --volumes",
        ),
        (&["--dry-run", "restart", "postgres"], " restart postgres"),
        (
            &["--dry-run", "env", "use", "betanet"],
            " up -d --remove-orphans",
        ),
        (
            &["--dry-run", "betanet", "--dev"],
            "-f compose/base.yml -f compose/dev.yml -f compose/betanet.yml up -d",
        ),
        (&["--dry-run", "prod"], "-f compose/prod.yml up -d"),
        (&["--dry-run", "images", "build", "--force"], "docker build"),
        (
            &["--dry-run", "images", "offline", "--refresh"],
            "docker import",
        ),
    ];
    // `network rm` with the stack up would fail, so its dry run fails the same way.
    let out = stack.xtask(&["--dry-run", "network", "rm"]);
    assert!(
        !out.status.success() && stderr(&out).contains("container(s) attached"),
        "{}",
        text(&out)
    );
    // Both networks exist, so `network create` has nothing to do, even for real.
    let out = stack.xtask(&["--dry-run", "network", "create"]);
    assert!(
        out.status.success() && !stdout(&out).contains("docker network create"),
        "{}",
        text(&out)
    );
    for (args, shown) in cases {
        let out = stack.xtask(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            stdout(&out).contains(shown),
            "{args:?} prints `{shown}`: {}",
            text(&out)
        );
        assert_eq!(
            stack.services(),
            ["postgres", "prometheus"],
            "{args:?} changed the containers"
        );
        assert_eq!(
            stack.inspect("postgres", "{{.Id}} {{.State.StartedAt}}"),
            started,
            "{args:?}"
        );
        assert!(
            stack.leftovers().contains(&stack.fog_network),
            "{args:?} removed a network"
        );
        assert_eq!(
            std::fs::read_to_string(&stack.env_file).unwrap(),
            env_before,
            "{args:?} wrote the env file"
        );
        assert_eq!(
            secret.exists(),
            secret_before,
            "{args:?} wrote a secret file"
        );
    }
}

/// `restart postgres` keeps the container but starts it again, and it turns
/// healthy again (the xtask waits for that).
fn restart_changes_the_start_time(stack: &RealStack) {
    let format = "{{.Id}}|{{.State.StartedAt}}";
    let before = stack.inspect("postgres", format);
    stack.xtask_ok(&["restart", "postgres", "--timeout", "120"]);
    let after = stack.inspect("postgres", format);
    let (id_before, at_before) = before.split_once('|').unwrap();
    let (id_after, at_after) = after.split_once('|').unwrap();
    assert_eq!(id_before, id_after, "restart keeps the container");
    assert!(
        at_after > at_before,
        "StartedAt moved on: {at_before} -> {at_after}"
    );
    assert_eq!(
        stack.inspect("postgres", "{{.State.Health.Status}}"),
        "healthy"
    );
    let out = psql(stack.port("POSTGRES_PORT"), POSTGRES_PASSWORD, "select 1");
    assert!(out.status.success(), "psql after restart: {}", text(&out));
}

/// The README: after `env use`, plain `docker compose ps` / `docker-compose
/// ps` from the repository root acts on the active stack, because the env
/// file records `COMPOSE_FILE` and `COMPOSE_PROJECT_NAME`. Done in a copy of
/// the repository's layout (the stack's dir: `.env` is the test's env file,
/// `compose/` a copy with `compose/.env -> ../.env` as the xtask links it for
/// the repository's own `.env`), so the default project is never touched.
fn plain_compose_ps_sees_the_active_stack(stack: &RealStack, services: &[&str]) {
    stack.xtask_ok(&["env", "use", "dev", "--timeout", "300"]);
    let env = std::fs::read_to_string(&stack.env_file).unwrap();
    assert!(
        env.contains("COMPOSE_FILE=compose/base.yml:compose/dev.yml"),
        "{env}"
    );
    assert!(
        env.contains(&format!("COMPOSE_PROJECT_NAME={}", stack.project)),
        "{env}"
    );
    let repo = crate_dir().parent().unwrap().to_path_buf();
    let copy = stack.dir.join("compose");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(repo.join("compose"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let _ = std::fs::remove_file(copy.join(".env"));
    std::os::unix::fs::symlink("../.env", copy.join(".env")).unwrap();
    let mut programs: Vec<Vec<&str>> = Vec::new();
    if docker_ok(&["compose", "version"]) {
        programs.push(vec!["docker", "compose"]);
    }
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        programs.push(vec!["docker-compose"]);
    }
    assert!(!programs.is_empty());
    for program in programs {
        let out = Command::new(program[0])
            .args(&program[1..])
            .arg("ps")
            .current_dir(&stack.dir)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{program:?} ps: {}", text(&out));
        let listed = stdout(&out);
        for service in services {
            assert!(
                listed
                    .lines()
                    .any(|l| l.contains(&stack.project) && l.contains(service)),
                "{program:?} ps lists {service} of {}:\n{listed}",
                stack.project
            );
        }
    }
}

/// betanet.yml's chain postgres -> mixnode-1 -> mixnode-2 -> mixnode-3: each
/// node's container started only after the one before it (in its current
/// incarnation) reported healthy, by the engine's own event order during the
/// bring-up. A predecessor that was not restarted in it (postgres, when its
/// container is reused) must have been running and healthy before it began.
fn chain_is_health_gated(stack: &RealStack, events: &[(u128, String, String)]) {
    let chain = ["postgres", "mixnode-1", "mixnode-2", "mixnode-3"];
    for pair in chain.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        let started = events
            .iter()
            .find(|(_, s, e)| s == after && e == "start")
            .unwrap_or_else(|| panic!("no start of {after} in the bring-up: {events:?}"))
            .0;
        let last_start = events
            .iter()
            .filter(|(t, s, e)| s == before && e == "start" && *t < started)
            .map(|(t, _, _)| *t)
            .max();
        match last_start {
            Some(last_start) => assert!(
                events.iter().any(|(t, s, e)| s == before
                    && e == "health_status: healthy"
                    && *t > last_start
                    && *t < started),
                "{after} started before {before} was healthy: {events:?}"
            ),
            None => {
                assert!(
                    !events.iter().any(|(_, s, _)| s == before),
                    "{before} has events but no start before {after}: {events:?}"
                );
                assert_eq!(stack.inspect(before, "{{.State.Health.Status}}"), "healthy");
            }
        }
    }
}

/// `images save --env ENV` bundles every image the running environment uses
/// (shown with `--dry-run`: the real save/load round trip and its checksum
/// check are `images_bundle.rs`'s; a full bundle of these images is large).
fn save_names_every_image_the_environment_runs(stack: &RealStack, env: &str) {
    let bundle = stack.dir.join("bundle");
    let bundle = bundle.display().to_string();
    let out = stack.xtask_ok(&["--dry-run", "images", "save", "--env", env, "-o", &bundle]);
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("docker save "))
        .map(String::from)
        .unwrap_or_else(|| panic!("no `docker save` line: {}", text(&out)));
    for service in stack.services() {
        let image = stack.inspect(&service, "{{.Config.Image}}");
        assert!(
            line.split_whitespace().any(|w| w == image),
            "{service}'s image {image} is not in `{line}`"
        );
    }
    assert!(
        !std::path::Path::new(&bundle).exists(),
        "a dry run writes no bundle"
    );
}
