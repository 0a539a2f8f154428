//! End-to-end tests of the engine's error paths: one clear line for a daemon
//! that does not answer, a host port that is already taken (naming the port,
//! the variable and the holder), and a subnet that clashes with another Docker
//! network; plus `.env` creation, idempotent labelled networks, and prod's
//! refusal of weak secrets.

mod common;
mod engine_support;

use std::{net::TcpListener, os::unix::fs::PermissionsExt};

use common::*;
use engine_support::*;

#[test]
fn unreachable_daemon_is_one_clear_line() {
    let stack = Stack::new("nodaemon", 4, None, &[]);
    let out = stack.xtask_with(&["ps"], &[("DOCKER_HOST", "unix:///nonexistent.sock")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        line.contains("unix:///nonexistent.sock") && line.contains("does not answer"),
        "{err}"
    );
    assert!(line.contains("start it"), "says what to do: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
}

#[test]
fn missing_cli_and_missing_compose_each_say_what_to_install() {
    let stack = Stack::new("nocli", 10, None, &[]);
    let empty = stack.dir.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = stack.xtask_with(&["ps"], &[("PATH", empty.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("docker CLI is not on PATH") && err.contains("install"),
        "{err}"
    );

    // Only the docker CLI on PATH (no docker-compose), and a HOME and
    // DOCKER_CONFIG without the v2 plugin in `cli-plugins/`.
    if !engine_or_skip("missing_compose") {
        return;
    }
    let only_docker = stack.dir.join("only-docker");
    let home = stack.dir.join("home");
    std::fs::create_dir_all(&only_docker).unwrap();
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let docker_path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
        .unwrap();
    std::os::unix::fs::symlink(docker_path, only_docker.join("docker")).unwrap();
    let config = home.join(".docker");
    // An empty FOG_COMPOSE is "either flavour", whatever the caller set.
    let hidden = [
        ("FOG_COMPOSE", ""),
        ("PATH", only_docker.to_str().unwrap()),
        ("HOME", home.to_str().unwrap()),
        ("DOCKER_CONFIG", config.to_str().unwrap()),
    ];
    let plugin_hidden = !std::process::Command::new(only_docker.join("docker"))
        .args(["compose", "version"])
        .env("HOME", &home)
        .env("DOCKER_CONFIG", &config)
        .output()
        .unwrap()
        .status
        .success();
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = hidden.to_vec();
        env.extend_from_slice(extra);
        stack.xtask_with(&["ps"], &env)
    };
    if plugin_hidden {
        let out = with(&[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains("Docker Compose is missing") && err.contains("docker-compose-plugin"),
            "{err}"
        );
        let out = with(&[("FOG_COMPOSE", "v2")]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr(&out).contains("FOG_COMPOSE=v2 but `docker compose` does not answer"),
            "{}",
            text(&out)
        );
    } else {
        // A system-wide plugin (/usr/lib/docker/cli-plugins) cannot be hidden.
        eprintln!(
            "missing_compose: the v2 plugin is installed system-wide; testing FOG_COMPOSE=v1 only"
        );
    }
    let out = with(&[("FOG_COMPOSE", "v1")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FOG_COMPOSE=v1 but `docker-compose` is not on PATH")
            && err.contains("apt-get install docker-compose"),
        "{err}"
    );
    let out = with(&[("FOG_COMPOSE", "v3")]);
    assert_eq!(out.status.code(), Some(2), "a bad flavour is a usage error");
    assert!(stderr(&out).contains("FOG_COMPOSE=`v3`"), "{}", text(&out));
}

#[test]
fn first_run_creates_a_private_env_file_with_random_secrets() {
    let dir = std::env::temp_dir().join(format!("fogt-envfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join(".env");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["env", "show"])
            .env("FOG_ENV_FILE", &env_file)
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = std::fs::metadata(&env_file).expect(".env was created");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&env_file).unwrap();
    let value = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing"))
            .to_string()
    };
    for key in ["POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"] {
        let v = value(key);
        assert!(
            v.len() >= 32 && v.chars().all(|c| c.is_ascii_alphanumeric()),
            "{key}={v}"
        );
    }
    assert_ne!(value("POSTGRES_PASSWORD"), value("GRAFANA_ADMIN_PASSWORD"));
    assert_eq!(
        value("POSTGRES_USER"),
        "fog",
        "non-secrets copied from .env.example"
    );
    assert!(
        stdout(&out).contains("compose:      unavailable"),
        "env show works without an engine"
    );

    // A second run never overwrites; a missing key is a warning, not a silent append.
    std::fs::write(&env_file, "POSTGRES_PASSWORD=keepme\n").unwrap();
    let out = run();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "POSTGRES_PASSWORD=keepme\n"
    );
    assert!(
        stderr(&out).contains("lacks") && stderr(&out).contains("POSTGRES_USER"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn taken_port_names_port_variable_and_holder() {
    let Some(stack) = Stack::stub("taken_port_names_port_variable_and_holder", "port", 5) else {
        return;
    };
    let port = stack.port("PROMETHEUS_PORT");
    let _holder = TcpListener::bind(("127.0.0.1", port)).expect("the test's port range is free");
    let out = stack.xtask(&["dev", "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("`prometheus`"), "{line}");
    assert!(
        line.contains(&format!("process {}", std::process::id())),
        "names the holder: {line}"
    );
    assert!(
        line.contains("PROMETHEUS_PORT"),
        "names the variable: {line}"
    );
    assert!(
        stack.containers().is_empty(),
        "nothing started after the failed check"
    );
}

#[test]
fn networks_are_idempotent_labelled_and_conflicts_are_named() {
    if !engine_or_skip("networks_are_idempotent_labelled_and_conflicts_are_named") {
        return;
    }
    let stack = Stack::new("net", 6, None, &[]);
    for _ in 0..2 {
        let out = stack.xtask(&["network", "create"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let labels = docker(&[
        "network",
        "inspect",
        "--format",
        "{{json .Labels}}",
        &stack.fog_network,
    ]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["com.docker.compose.project"], stack.project.as_str());
    assert_eq!(labels["com.docker.compose.network"], "fog-network");
    let subnet = docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        &stack.betanet_network,
    ]);
    assert_eq!(subnet, stack.betanet_subnet);
    let ls = stdout(&stack.xtask(&["network", "ls"]));
    assert!(
        ls.lines().filter(|l| l.contains(" ok ")).count() == 2,
        "{ls}"
    );

    let out = stack.xtask(&["network", "rm"]);
    assert!(out.status.success());
    assert!(stack.networks().is_empty());

    // Another network overlapping our fog subnet is named in the error.
    let blocker = format!("{}-blocker", stack.project);
    let half = stack.fog_subnet.replace(".0/24", ".128/25");
    docker(&[
        "network",
        "create",
        "--subnet",
        &half,
        "--label",
        &format!("com.docker.compose.project={}", stack.project),
        &blocker,
    ]);
    let out = stack.xtask(&["network", "create"]);
    docker_output(&["network", "rm", &blocker]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&blocker) && err.contains(&half) && err.contains(&stack.fog_subnet),
        "{err}"
    );

    // Our own network name with the wrong subnet is named too (slot 7 is kept free for this).
    let spare = format!("10.231.{}.0/24", 2 * (stack.slot + 1));
    docker(&[
        "network",
        "create",
        "--subnet",
        &spare,
        "--label",
        &format!("com.docker.compose.project={}", stack.project),
        &stack.fog_network,
    ]);
    let out = stack.xtask(&["network", "create"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&spare) && err.contains(&stack.fog_subnet) && err.contains("network rm"),
        "{err}"
    );
}

#[test]
fn prod_refuses_placeholder_and_short_secrets() {
    if !engine_or_skip("prod_refuses_placeholder_and_short_secrets") {
        return;
    }
    let stack = Stack::new(
        "weak",
        8,
        None,
        &[
            ("POSTGRES_PASSWORD", "change-me".into()),
            ("GRAFANA_ADMIN_PASSWORD", "changeme-before-release-1".into()),
            ("FOG_API_TOKEN", "short1".into()),
        ],
    );
    let out = stack.xtask(&["prod"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("POSTGRES_PASSWORD still has the value from .env.example"),
        "{err}"
    );
    assert!(
        err.contains("GRAFANA_ADMIN_PASSWORD looks like a placeholder"),
        "{err}"
    );
    assert!(
        err.contains("FOG_API_TOKEN is shorter than 16 characters"),
        "{err}"
    );
    assert!(stack.networks().is_empty() && stack.containers().is_empty());
}
