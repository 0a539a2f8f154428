//! Prod on a real one-node swarm (this engine, `docker swarm init` on
//! 127.0.0.1:52477 with its own address pool 10.241.0.0/16; see
//! `swarm_support`): `deploy --env prod` (Grafana and Loki, which have no
//! offline image, scaled to 0) converges; Postgres reads its password from
//! the Swarm secret (no service's environment holds it, a wrong password is
//! refused over TCP and the secret's one is accepted); the `migrate` one-off
//! applied every migration; `backup postgres --stack` writes a dump that
//! `backup verify` accepts; no service publishes a port; every process of
//! the stack runs as a non-root user; `deploy rm --volumes` leaves no
//! service, container, network, secret, config or volume.
//! Needs the offline Postgres and Prometheus images and the migrate image,
//! which `deploy` builds when missing. One test in its own binary: `cargo
//! test` runs binaries one at a time, so no other test of the run sees the
//! engine in swarm mode.

mod common;
mod swarm_support;

use std::path::Path;
use std::time::Instant;

use common::{docker, docker_lines, docker_output, text};
use swarm_support::{leftovers, xtask, Addresses, Swarm};

const STACK: &str = "fogswprod";
const AT: Addresses = Addresses {
    listen: "127.0.0.1:52477",
    pool: "10.241.0.0/16",
    gwbridge_subnet: "10.241.255.0/24",
};
/// The password `swarm_support::env_file_on` writes.
const PASSWORD: &str = "Tq7vXz0pLm4Rk8sW2nYb6cHd";
const GRAFANA_PASSWORD: &str = "Pz3qWn8xKv5Lr1tYb7mCs9Dg";

fn inspect(service: &str, format: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        format,
        &format!("{STACK}_{service}"),
    ])
}

/// The running containers of the stack, as (service, container id).
fn running_containers() -> Vec<(String, String)> {
    let filter = format!("label=com.docker.stack.namespace={STACK}");
    docker_lines(&[
        "ps",
        "--filter",
        &filter,
        "--format",
        "{{.Label \"com.docker.swarm.service.name\"}} {{.ID}}",
    ])
    .into_iter()
    .filter_map(|l| {
        l.split_once(' ').map(|(s, id)| {
            (
                s.trim_start_matches(&format!("{STACK}_")).to_string(),
                id.to_string(),
            )
        })
    })
    .collect()
}

/// `psql` over TCP inside the Postgres task with `password`.
fn psql_tcp(container: &str, password: &str) -> std::process::Output {
    let env = format!("PGPASSWORD={password}");
    docker_output(&[
        "exec",
        "-e",
        &env,
        container,
        "psql",
        "-X",
        "-At",
        "-h",
        "127.0.0.1",
        "-U",
        "fog",
        "-d",
        "fog",
        "-c",
        "SELECT 1",
    ])
}

fn migration_files() -> usize {
    std::fs::read_dir(common::crate_dir().join("../migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".sql")
        })
        .count()
}

/// `migrate status`, `backup postgres` and `backup verify` on the stack.
fn data_on_the_stack(env_file: &Path, backups: &Path) {
    let out = xtask(
        env_file,
        &["migrate", "--stack", STACK, "status", "--format", "json"],
        &[],
    );
    assert!(out.status.success(), "migrate status: {}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let migrations = status["migrations"].as_array().unwrap();
    assert_eq!(migrations.len(), migration_files(), "{status}");
    for m in migrations {
        assert_eq!(m["state"], "applied", "the migrate one-off applied it: {m}");
    }

    let dir = backups.to_str().unwrap();
    let out = xtask(
        env_file,
        &[
            "backup", "postgres", "--stack", STACK, "--dir", dir, "--format", "json",
        ],
        &[],
    );
    assert!(out.status.success(), "backup postgres: {}", text(&out));
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = &written["manifest"];
    assert_eq!(manifest["project"], STACK, "{manifest}");
    assert_eq!(manifest["environment"], "prod", "{manifest}");
    assert_eq!(
        manifest["tables"]["public.fog_schema_history"],
        migration_files() as i64,
        "{manifest}"
    );
    let archive = written["path"].as_str().unwrap();
    assert!(archive.starts_with(dir) && archive.contains(&format!("{STACK}-postgres-")));
    let out = xtask(
        env_file,
        &["backup", "verify", archive, "--format", "json"],
        &[],
    );
    assert!(out.status.success(), "backup verify: {}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    eprintln!(
        "swarm_prod: backup of the stack's database {:.1}s",
        written["seconds"].as_f64().unwrap()
    );
}

#[test]
fn prod_on_a_one_node_swarm_keeps_secrets_and_ports_closed_migrates_backs_up_and_leaves_nothing() {
    let test = "swarm_prod";
    let began = Instant::now();
    let Some(mut cleanup) = common::engine_guard(test) else {
        return;
    };
    let dir = cleanup.temp_dir(STACK);
    let env_file = swarm_support::env_file_on(&dir, STACK, "10.241", 200, 55000);
    let Some(mut swarm) = Swarm::init_at(test, AT) else {
        return;
    };
    swarm.stacks.push((STACK.to_string(), env_file.clone()));

    // Deploy and converge; Grafana and Loki have no offline image.
    let out = xtask(
        &env_file,
        &[
            "deploy",
            "--env",
            "prod",
            "--stack",
            STACK,
            "--replicas",
            "grafana=0",
            "--replicas",
            "loki=0",
            "--format",
            "json",
            "--timeout",
            "240",
        ],
        &[],
    );
    assert!(out.status.success(), "deploy failed: {}", text(&out));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = outcome["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["postgres", "migrate", "prometheus"] {
        assert!(services.contains(&s), "{s} not deployed: {services:?}");
    }
    eprintln!(
        "swarm_prod: deploy -> converged in {:.1}s ({:.1}s in all)",
        outcome["converged_seconds"].as_f64().unwrap(),
        outcome["total_seconds"].as_f64().unwrap()
    );

    // The secret files deploy wrote: the env file's values, no newline.
    let secrets = dir.join("secrets");
    assert_eq!(
        std::fs::read_to_string(secrets.join("postgres_password")).unwrap(),
        PASSWORD
    );

    // No service's environment holds a password; Postgres and migrate get
    // it as a Swarm secret of the stack, mounted at /run/secrets/.
    for s in &services {
        let env = inspect(s, "{{json .Spec.TaskTemplate.ContainerSpec.Env}}");
        assert!(
            !env.contains(PASSWORD) && !env.contains(GRAFANA_PASSWORD),
            "{s}'s environment holds a password: {env}"
        );
        let vars: Vec<String> = serde_json::from_str::<Option<Vec<String>>>(&env)
            .unwrap()
            .unwrap_or_default();
        for v in vars {
            let (k, val) = v.split_once('=').unwrap_or((&v, ""));
            assert!(
                !(k.contains("PASSWORD") && !k.ends_with("_FILE") && !val.is_empty()),
                "{s} sets {k} in its environment"
            );
        }
    }
    for s in ["postgres", "migrate"] {
        let refs = inspect(s, "{{json .Spec.TaskTemplate.ContainerSpec.Secrets}}");
        let refs: serde_json::Value = serde_json::from_str(&refs).unwrap();
        let secret = refs
            .as_array()
            .and_then(|r| r.iter().find(|r| r["File"]["Name"] == "postgres_password"))
            .unwrap_or_else(|| panic!("{s} mounts no postgres_password secret: {refs}"));
        let name = secret["SecretName"].as_str().unwrap();
        assert!(name.starts_with(&format!("{STACK}_")), "{s}: {secret}");
    }
    let env = inspect("postgres", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}");
    assert!(
        env.contains("\"POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password\""),
        "{env}"
    );

    // Postgres authenticates TCP clients with the secret's password.
    let running = running_containers();
    let pg = running
        .iter()
        .find(|(s, _)| s == "postgres")
        .map(|(_, id)| id.clone())
        .unwrap_or_else(|| panic!("no running Postgres task: {running:?}"));
    let ok = psql_tcp(&pg, PASSWORD);
    assert!(ok.status.success(), "the secret's password: {}", text(&ok));
    assert_eq!(common::stdout(&ok).trim(), "1");
    let wrong = psql_tcp(&pg, "not-the-password");
    assert!(
        !wrong.status.success()
            && common::stderr(&wrong).contains("password authentication failed"),
        "a wrong password is refused: {}",
        text(&wrong)
    );

    // prod's hardening reaches the task: a read-only root filesystem with
    // tmpfs for the socket directory and /tmp (`docker stack deploy` ignores
    // `tmpfs:`; the renderer makes them tmpfs mounts), capabilities dropped.
    let host = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}} {{json .HostConfig.CapAdd}}",
        &pg,
    ]);
    assert!(
        host.starts_with("true [\"ALL\"]") && host.contains("CHOWN"),
        "Postgres task: {host}"
    );
    let tmpfs = docker(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Type \"tmpfs\"}}{{.Destination}} {{end}}{{end}}",
        &pg,
    ]);
    // The engine lists mounts in no fixed order.
    let mut tmpfs: Vec<&str> = tmpfs.split_whitespace().collect();
    tmpfs.sort_unstable();
    assert_eq!(tmpfs, ["/tmp", "/var/run/postgresql"], "Postgres task");

    // The one-off completed without an error.
    let tasks = docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.CurrentState}} {{.Error}}",
        &format!("{STACK}_migrate"),
    ]);
    assert!(
        tasks.lines().next().unwrap_or("").starts_with("Complete"),
        "migrate did not complete: {tasks}"
    );

    data_on_the_stack(&env_file, &cleanup.temp_dir("fogswprod-backups"));

    // Nothing published: no Postgres or admin port on any interface.
    for s in &services {
        let ports = inspect(
            s,
            "{{json .Spec.EndpointSpec.Ports}} {{json .Endpoint.Ports}}",
        );
        assert_eq!(ports, "null null", "{s} publishes a port: {ports}");
    }
    for s in ["postgres", "grafana", "prometheus"] {
        assert!(services.contains(&s), "{s} is not a service of the stack");
    }

    // Non-root: the specs name a user, and every process of every running
    // task (Postgres' entrypoint drops from root itself) runs as one.
    for s in ["migrate", "prometheus", "grafana", "loki"] {
        let user = inspect(s, "{{.Spec.TaskTemplate.ContainerSpec.User}}");
        let uid = user.split(':').next().unwrap_or("");
        assert!(
            !uid.is_empty() && uid != "0" && uid != "root",
            "{s} runs as `{user}`"
        );
    }
    assert!(
        running.iter().any(|(s, _)| s == "prometheus"),
        "{running:?}"
    );
    for (s, id) in &running {
        let procs = docker_lines(&["top", id, "-eo", "pid,uid,comm"]);
        let uids: Vec<&str> = procs
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert!(!uids.is_empty(), "{s}: no processes: {procs:?}");
        assert!(
            uids.iter().all(|u| *u != "0"),
            "{s} runs a process as root: {procs:?}"
        );
    }

    // `deploy rm --volumes` leaves nothing of the stack (which has volumes,
    // secrets and configs to remove).
    let before = leftovers(STACK);
    for kind in ["volume", "secret", "config", "network", "service"] {
        assert!(
            before.iter().any(|l| l.starts_with(&format!("{kind} "))),
            "the stack has no {kind} before `deploy rm`: {before:?}"
        );
    }
    swarm_support::rm_and_leave(&env_file, STACK, &mut swarm);
    let vols = docker(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(!vols.contains("fogswprod_"), "volumes left: {vols}");
    eprintln!(
        "swarm_prod: whole test {:.1}s",
        began.elapsed().as_secs_f64()
    );
}
