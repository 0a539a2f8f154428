//! Betanet on a real three-node swarm built from this machine: three Docker
//! engines (Debian's `docker.io` in an image built from the offline Debian
//! base) run as containers on the test's own network 10.238.250.0/24, their
//! APIs on 127.0.0.1:52371-52373. The host engine never joins a swarm. The
//! containers get every capability the host daemon has (it lacks
//! CAP_SYS_RESOURCE, so `--privileged` is refused here), vfs storage and
//! their own cgroup parent. The mixnode image goes through Debian's
//! `docker-registry` (pushed over 127.0.0.1:52500, pulled by the nodes by
//! digest); `deploy` places the mixnodes by node label, one per node; killing a worker
//! reschedules its mixnode and loadgen delivers again. Deploy-to-converged,
//! time to recover and the loss during failover are printed (the benchmark
//! figures in the README come from here).

mod common;
mod swarm_support;

use std::time::{Duration, Instant};

use common::{docker, docker_output, text, Cleanup};
use swarm_support::{loadgen, xtask, Place, MIXNODE_IMAGE};

const STACK: &str = "fogswarm3";
const NODE_IMAGE: &str = "fogswarm-node:2";
/// Debian's docker-registry on the node network, published on the host's loopback for pushes.
const REGISTRY_IP: &str = "10.238.250.5";
const REGISTRY_PUSH: &str = "127.0.0.1:52500";
/// Debian's config asks for htpasswd auth; the test registry needs none.
const REGISTRY_START: &str = "printf 'version: 0.1\\nstorage:\\n  filesystem:\\n    rootdirectory: /var/lib/docker-registry\\nhttp:\\n  addr: \":5000\"\\n' > /tmp/registry.yml && exec docker-registry serve /tmp/registry.yml";
const NODE_NET: &str = "fogswarm-nodes";

fn api(i: usize) -> String {
    format!("tcp://127.0.0.1:{}", 52370 + i)
}

fn on(i: usize, args: &[&str]) -> String {
    let host = api(i);
    let mut all = vec!["-H", host.as_str()];
    all.extend_from_slice(args);
    docker(&all)
}

/// The node image: Debian's docker.io on the offline Debian base.
fn ensure_node_image(env_file: &std::path::Path) {
    if docker_output(&["image", "inspect", NODE_IMAGE])
        .status
        .success()
    {
        return;
    }
    let base = || {
        docker(&[
            "images",
            "fog-offline/base",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .lines()
        .next()
        .map(str::to_string)
    };
    if base().is_none() {
        let out = xtask(env_file, &["images", "offline"], &[]);
        assert!(out.status.success(), "images offline: {}", text(&out));
    }
    let base = base().expect("images offline builds fog-offline/base");
    let dockerfile = format!(
        "FROM {base}\n\
         RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io docker-registry iptables iproute2 >/dev/null && rm -rf /var/lib/apt/lists/* /usr/share/doc\n\
         VOLUME /var/lib/docker\n\
         ENTRYPOINT [\"dockerd\", \"--host=unix:///var/run/docker.sock\", \"--host=tcp://0.0.0.0:2375\", \"--tls=false\", \"--storage-driver=vfs\", \"--insecure-registry={REGISTRY_IP}:5000\"]\n"
    );
    swarm_support::build_image(NODE_IMAGE, &dockerfile);
}

/// Start node `i` (1..=3) as a container; removed (with its engine's data) by `cleanup`.
fn start_node(cleanup: &mut Cleanup, i: usize) {
    let name = format!("fogswarm-node{i}");
    docker_output(&["rm", "-f", "-v", &name]);
    cleanup.containers.push(name.clone());
    let (ip, port, bip, cg) = (
        format!("10.238.250.1{i}"),
        format!("127.0.0.1:{}:2375", 52370 + i),
        format!("--bip=10.238.24{i}.1/24"),
        format!("--cgroup-parent=/fogswarm-node{i}"),
    );
    let hostname = format!("node{i}");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--hostname",
        &hostname,
        "--network",
        NODE_NET,
        "--ip",
        &ip,
        "-p",
        &port,
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "systempaths=unconfined",
        "--device",
        "/dev/net/tun",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs",
        "/run",
        NODE_IMAGE,
        &bip,
        &cg,
    ]);
}

fn wait_for_engine(i: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !docker_output(&["-H", &api(i), "info", "--format", "{{.ServerVersion}}"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "engine of node{i} did not start: {}",
            {
                let logs = docker_output(&["logs", "--tail", "20", &format!("fogswarm-node{i}")]);
                String::from_utf8_lossy(&logs.stderr).into_owned()
            }
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `service -> node` of the running mixnode tasks.
fn placement() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = on(
        1,
        &[
            "stack",
            "ps",
            STACK,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}}\t{{.Node}}\t{{.CurrentState}}",
        ],
    )
    .lines()
    .filter(|l| l.contains("mixnode") && l.contains("Running"))
    .filter_map(|l| {
        let mut f = l.split('\t');
        let task = f.next()?;
        Some((task.split('.').next()?.to_string(), f.next()?.to_string()))
    })
    .collect();
    rows.sort();
    rows
}

#[test]
fn three_node_swarm_places_one_mixnode_per_node_and_recovers_from_losing_a_worker() {
    let test = "swarm_cluster";
    let Some(mut cleanup) = common::engine_guard(test) else {
        return;
    };
    let dir = cleanup.temp_dir("fogswarm3");
    let env_file = swarm_support::env_file(&dir, STACK, 200, 52011);
    // Every service but the mixnodes is scaled to 0 below; they name the
    // mixnode image so the cluster needs one image only.
    let mut extra = String::new();
    for var in [
        "POSTGRES_IMAGE",
        "PROMETHEUS_IMAGE",
        "GRAFANA_IMAGE",
        "LOKI_IMAGE",
    ] {
        extra.push_str(&format!("{var}={MIXNODE_IMAGE}\n"));
    }
    let text_now = std::fs::read_to_string(&env_file).unwrap();
    std::fs::write(&env_file, text_now + &extra).unwrap();
    ensure_node_image(&env_file);
    // The stack names the migrate image too (scaled to 0 here: no Postgres).
    // Both are built here (a no-op when up to date), never assumed from an
    // earlier test: the CI lanes run the binaries in no fixed order.
    for image in ["migrate", "mixnode"] {
        let out = xtask(&env_file, &["images", "build", image, "--quiet"], &[]);
        assert!(out.status.success(), "images build {image}: {}", text(&out));
    }
    assert!(
        docker_output(&["image", "inspect", MIXNODE_IMAGE])
            .status
            .success(),
        "{MIXNODE_IMAGE} is missing: run `cargo xtask images build`"
    );

    docker_output(&["network", "rm", NODE_NET]);
    docker(&["network", "create", "--subnet", "10.238.250.0/24", NODE_NET]);
    cleanup.networks.push(NODE_NET.to_string());
    for i in 1..=3 {
        start_node(&mut cleanup, i);
    }
    for i in 1..=3 {
        wait_for_engine(i);
    }
    on(
        1,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            "10.238.250.11",
            "--listen-addr",
            "10.238.250.11:2377",
            "--default-addr-pool",
            "10.238.0.0/16",
            "--default-addr-pool-mask-length",
            "24",
        ],
    );
    let token = on(1, &["swarm", "join-token", "-q", "worker"]);
    for i in 2..=3 {
        on(
            i,
            &["swarm", "join", "--token", &token, "10.238.250.11:2377"],
        );
    }
    for i in 1..=3 {
        on(
            1,
            &[
                "node",
                "update",
                "--label-add",
                "fog.mix=true",
                &format!("node{i}"),
            ],
        );
    }
    // Distribute the image through Debian's docker-registry: push from the
    // host over 127.0.0.1, the nodes pull it by digest over the node network.
    cleanup.containers.push("fogswarm-registry".into());
    docker_output(&["rm", "-f", "-v", "fogswarm-registry"]);
    let publish = format!("{REGISTRY_PUSH}:5000");
    docker(&[
        "run",
        "-d",
        "--name",
        "fogswarm-registry",
        "--network",
        NODE_NET,
        "--ip",
        REGISTRY_IP,
        "-p",
        &publish,
        "--entrypoint",
        "/bin/sh",
        NODE_IMAGE,
        "-c",
        REGISTRY_START,
    ]);
    let pushed = format!(
        "{REGISTRY_PUSH}/fog-compute/mixnode:swarm-{}",
        std::process::id()
    );
    cleanup.images.push(pushed.clone());
    docker(&["tag", MIXNODE_IMAGE, &pushed]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker_output(&["push", "-q", &pushed]).status.success() {
        assert!(
            Instant::now() < deadline,
            "cannot push to the registry on {REGISTRY_PUSH}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let image = pushed.replace(REGISTRY_PUSH, &format!("{REGISTRY_IP}:5000"));
    let text_now = std::fs::read_to_string(&env_file).unwrap();
    std::fs::write(&env_file, text_now.replace(MIXNODE_IMAGE, &image)).unwrap();

    let host = api(1);
    let out = xtask(
        &env_file,
        &[
            "deploy",
            "--env",
            "betanet",
            "--stack",
            STACK,
            "--skip-images",
            "--format",
            "json",
            "--placement",
            "mixnode=node.labels.fog.mix==true",
            "--replicas",
            "postgres=0",
            "--replicas",
            "prometheus=0",
            "--replicas",
            "grafana=0",
            "--replicas",
            "loki=0",
            "--replicas",
            "migrate=0",
            "--timeout",
            "240",
        ],
        &[("DOCKER_HOST", &host)],
    );
    assert!(
        out.status.success(),
        "deploy on the cluster failed: {}",
        text(&out)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let converged = outcome["converged_seconds"].as_f64().unwrap();
    let spec = on(
        1,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &format!("{STACK}_mixnode-1"),
        ],
    );
    assert!(
        spec.starts_with(&format!("{REGISTRY_IP}:5000/fog-compute/mixnode@sha256:")),
        "pinned by digest: {spec}"
    );
    let placed = placement();
    let nodes: std::collections::BTreeSet<&str> = placed.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        (placed.len(), nodes.len()),
        (3, 3),
        "one mixnode per node: {placed:?}"
    );

    let network = format!("{STACK}-betanet");
    let there = Place {
        host: Some(&host),
        image: &image,
        network: &network,
    };
    let lg = cleanup.container("fogswarm3-loadgen");
    let run = loadgen(&there, &lg, 1000, 30);
    assert_eq!(
        (run.sent, run.delivered),
        (1000, 1000),
        "across three nodes: {run:?}"
    );

    // Kill the worker that runs mixnode-3 (or, if the manager does, mixnode-2's).
    let (victim_service, victim) = placed
        .iter()
        .rev()
        .find(|(_, n)| n != "node1")
        .cloned()
        .expect("a worker runs a mixnode");
    let killed = Instant::now();
    docker(&["kill", &format!("fogswarm-{victim}")]);
    let (mut sent, mut delivered, mut runs) = (0, 0, 0);
    let recovered = loop {
        let r = loadgen(&there, &lg, 100, 3);
        runs += 1;
        sent += 100;
        delivered += r.delivered;
        if r.delivered == 100 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(300),
            "no full delivery 300s after killing {victim}; placement now {:?}",
            placement()
        );
    };
    let moved = placement();
    let now_on = moved
        .iter()
        .find(|(s, _)| *s == victim_service)
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    assert!(
        !now_on.is_empty() && now_on != victim,
        "{victim_service} was not rescheduled: {moved:?}"
    );
    eprintln!(
        "swarm_cluster: deploy -> converged {converged:.1}s on 3 nodes; killed {victim} ({victim_service}), \
         rescheduled on {now_on}; loadgen delivers again after {:.1}s; during failover {delivered}/{sent} \
         probe packets delivered in {runs} runs",
        recovered.as_secs_f64()
    );
    // For `cargo xtask bench swarm`, which runs this test and reads this line.
    eprintln!(
        "swarm_cluster-json: {}",
        serde_json::json!({
            "converged_seconds": converged,
            "recovered_seconds": recovered.as_secs_f64(),
            "failover_sent": sent,
            "failover_delivered": delivered,
            "peer_dead_timeout_ms": std::env::var("PEER_DEAD_TIMEOUT_MS").ok(),
        })
    );
}
