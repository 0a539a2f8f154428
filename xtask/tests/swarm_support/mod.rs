//! Helpers for the Swarm end-to-end tests: a [`Swarm`] guard that turns this
//! engine into a one-node swarm on 127.0.0.1 (by default listen port 52377,
//! address pool 10.238.0.0/16 in /24s, `docker_gwbridge` pre-created on
//! 10.238.255.0/24 so Swarm takes no other range; [`Swarm::init_at`] takes a
//! test's own [`Addresses`]) only when it is not in a swarm already, and on
//! drop removes the test's stack, leaves the swarm and removes the networks
//! it made, even when the test fails; an env file for a test's stack with its
//! own networks and subnets; and `loadgen` runs on the stack's attachable
//! overlay network.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{docker, docker_ok, docker_output, in_ci};

pub const LISTEN: &str = "127.0.0.1:52377";
pub const POOL: &str = "10.238.0.0/16";
pub const GWBRIDGE: &str = "docker_gwbridge";
pub const GWBRIDGE_SUBNET: &str = "10.238.255.0/24";
pub const MIXNODE_IMAGE: &str = "fog-compute/mixnode:0.1.0";

/// Where a test's swarm listens and which addresses it takes.
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    /// `--listen-addr`, on 127.0.0.1.
    pub listen: &'static str,
    /// `--default-addr-pool`, split into /24s.
    pub pool: &'static str,
    /// The subnet `docker_gwbridge` is pre-created on (inside `pool`).
    pub gwbridge_subnet: &'static str,
}

/// The addresses of `swarm_single` and `swarm_cluster`.
pub const DEFAULT: Addresses = Addresses {
    listen: LISTEN,
    pool: POOL,
    gwbridge_subnet: GWBRIDGE_SUBNET,
};

/// This engine as a one-node swarm for the test's lifetime.
pub struct Swarm {
    /// Stacks to remove (with their volumes) before leaving.
    pub stacks: Vec<(String, PathBuf)>,
    created_gwbridge: bool,
    left: bool,
}

fn swarm_state() -> String {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
}

impl Swarm {
    /// `None` (skip) outside CI when the engine is already part of a swarm:
    /// the test must not take over or leave a swarm it did not make.
    pub fn init(test: &str) -> Option<Swarm> {
        Swarm::init_at(test, DEFAULT)
    }

    /// [`Swarm::init`] on the test's own listen address and address pool.
    pub fn init_at(test: &str, at: Addresses) -> Option<Swarm> {
        let state = swarm_state();
        if state != "inactive" {
            assert!(
                !in_ci(),
                "{test}: the engine is already in a swarm (state {state}); the test needs an engine outside any swarm"
            );
            eprintln!("{test}: skipped: the engine is already in a swarm (state {state})");
            return None;
        }
        let created_gwbridge = !docker_ok(&["network", "inspect", GWBRIDGE]);
        let guard = Swarm {
            stacks: Vec::new(),
            created_gwbridge,
            left: false,
        };
        if created_gwbridge {
            docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                at.gwbridge_subnet,
                "--opt",
                "com.docker.network.bridge.name=docker_gwbridge",
                "--opt",
                "com.docker.network.bridge.enable_icc=false",
                "--opt",
                "com.docker.network.bridge.enable_ip_masquerade=true",
                GWBRIDGE,
            ]);
        }
        docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            at.listen,
            "--default-addr-pool",
            at.pool,
            "--default-addr-pool-mask-length",
            "24",
        ]);
        Some(guard)
    }

    /// Remove the stacks, leave the swarm, remove `docker_gwbridge` if the
    /// test made it. Idempotent; also run on drop.
    pub fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        for (stack, env_file) in &self.stacks {
            let _ = Command::new(env!("CARGO_BIN_EXE_xtask"))
                .args([
                    "deploy",
                    "rm",
                    "--stack",
                    stack,
                    "--volumes",
                    "--yes",
                    "--timeout",
                    "60",
                ])
                .env("FOG_ENV_FILE", env_file)
                .stdin(Stdio::null())
                .output();
            // A `migrate` one-off beside the stack carries its label too.
            remove_labelled("container", stack);
            remove_labelled("volume", stack);
        }
        docker_output(&["swarm", "leave", "--force"]);
        if self.created_gwbridge {
            // The bridge's endpoints go a moment after the swarm.
            let deadline = Instant::now() + Duration::from_secs(30);
            while docker_ok(&["network", "inspect", GWBRIDGE])
                && !docker_output(&["network", "rm", GWBRIDGE]).status.success()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Remove every object of `kind` with the stack's namespace label.
pub fn remove_labelled(kind: &str, stack: &str) {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    let ids = docker_output(&[kind, "ls", "-q", "--filter", &filter]);
    for id in String::from_utf8_lossy(&ids.stdout).lines() {
        docker_output(&[kind, "rm", "-f", id]);
    }
}

/// `deploy rm --volumes` of `stack` leaves nothing of it (no labelled object,
/// no network named `<stack>-...`), then leaving the swarm leaves it inactive
/// with no `docker_gwbridge` or `ingress`.
pub fn rm_and_leave(env_file: &Path, stack: &str, swarm: &mut Swarm) {
    let out = xtask(
        env_file,
        &["deploy", "rm", "--stack", stack, "--volumes", "--yes"],
        &[],
    );
    assert!(out.status.success(), "{}", crate::common::text(&out));
    assert_eq!(leftovers(stack), Vec::<String>::new());
    let nets = docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !nets.contains(&format!("{stack}-")),
        "networks left: {nets}"
    );
    swarm.leave();
    let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(state, "inactive");
    let nets = docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !nets
            .lines()
            .any(|n| n == "docker_gwbridge" || n == "ingress"),
        "swarm networks left: {nets}"
    );
}

/// What of `stack` is left on this engine, as `kind id` lines.
pub fn leftovers(stack: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    let mut left = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-aq"]),
        ("network", vec!["network", "ls", "-q"]),
        ("volume", vec!["volume", "ls", "-q"]),
        ("service", vec!["service", "ls", "-q"]),
        ("secret", vec!["secret", "ls", "-q"]),
        ("config", vec!["config", "ls", "-q"]),
    ] {
        let mut args = args.clone();
        args.extend(["--filter", &filter]);
        let out = docker_output(&args);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            left.push(format!("{kind} {id}"));
        }
    }
    left
}

/// An env file for stack `stack` in `dir`: its own networks on
/// 10.238.(base).0/24 and 10.238.(base+1).0/24, ports from `port`.
pub fn env_file(dir: &Path, stack: &str, base: u8, port: u16) -> PathBuf {
    env_file_on(dir, stack, "10.238", base, port)
}

/// [`env_file`] with the networks on `prefix`.(base).0/24 and
/// `prefix`.(base+1).0/24 (`prefix` the first two octets of the test's pool).
pub fn env_file_on(dir: &Path, stack: &str, prefix: &str, base: u8, port: u16) -> PathBuf {
    let file = dir.join(".env");
    let text = format!(
        "COMPOSE_PROJECT_NAME={stack}\n\
         FOG_NETWORK_NAME={stack}-fog\nFOG_NETWORK_SUBNET={prefix}.{base}.0/24\n\
         BETANET_NETWORK_NAME={stack}-betanet\nBETANET_NETWORK_SUBNET={prefix}.{}.0/24\n\
         POSTGRES_USER=fog\nPOSTGRES_DB=fog\nPOSTGRES_PASSWORD=Tq7vXz0pLm4Rk8sW2nYb6cHd\n\
         GRAFANA_ADMIN_USER=admin\nGRAFANA_ADMIN_PASSWORD=Pz3qWn8xKv5Lr1tYb7mCs9Dg\n\
         MIXNODE_IMAGE={MIXNODE_IMAGE}\n\
         MIXNODE1_PORT={port}\nMIXNODE2_PORT={}\nMIXNODE3_PORT={}\n\
         FOG_SECRETS_DIR={}\n",
        base + 1,
        port + 1,
        port + 2,
        dir.join("secrets").display()
    );
    std::fs::write(&file, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// Run the built xtask with `FOG_ENV_FILE` and extra variables, echoing its output.
pub fn xtask(env_file: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env("FOG_ENV_FILE", env_file)
        .env_remove("COMPOSE_PROJECT_NAME")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("xtask runs");
    eprintln!(
        "$ xtask {} -> {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One loadgen run's figures.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub sent: u64,
    pub delivered: u64,
    /// The error when loadgen could not reach a node.
    pub error: Option<String>,
}

/// `docker build -t tag -` from `dockerfile` (no context; nothing pulled
/// when its `FROM` is local).
pub fn build_image(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker build runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "building {tag} failed");
}

/// Where and how [`loadgen`] runs: this engine (or `host`), the image.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub host: Option<&'a str>,
    pub image: &'a str,
    pub network: &'a str,
}

/// Send `packets` through mixnode-1..3 from a container on the network.
pub fn loadgen(at: &Place<'_>, container: &str, packets: u64, timeout_s: u64) -> Run {
    let Place {
        host,
        image,
        network,
    } = *at;
    let packets = packets.to_string();
    let timeout = timeout_s.to_string();
    let mut args: Vec<&str> = match host {
        Some(h) => vec!["-H", h],
        None => Vec::new(),
    };
    args.extend([
        "run",
        "--rm",
        "--name",
        container,
        "--network",
        network,
        "--user",
        "10001:10001",
        "--read-only",
        "--entrypoint",
        "/usr/local/bin/loadgen",
        image,
        "--nodes",
        "http://mixnode-1:8080,http://mixnode-2:8080,http://mixnode-3:8080",
        "--packets",
        &packets,
        "--timeout",
        &timeout,
        "--json",
    ]);
    let out = docker_output(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<serde_json::Value>(stdout.trim()) {
        Ok(doc) => Run {
            sent: doc["sent"].as_u64().unwrap_or(0),
            delivered: doc["delivered"].as_u64().unwrap_or(0),
            error: None,
        },
        Err(_) => Run {
            error: Some(format!(
                "{}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            ..Run::default()
        },
    }
}
