//! Shared helpers for the real-stack end-to-end tests (`stack_real.rs`,
//! `stack_prod.rs`): each test gets its own temp env file (`FOG_ENV_FILE`),
//! compose project `foghon<name><pid>`, networks `foghon-<name>-*` on two /24
//! subnets from 10.239.0.0/16 and ten host ports from 53000-53999 (127.0.0.1
//! only), chosen from a bank that no Docker network or listener uses yet. The
//! stack runs the real offline images (`FOG_OFFLINE=1`) with the overlays'
//! own healthchecks; [`RealStack`]'s `Drop` removes its containers, networks
//! and volumes (by label and name) even when the test fails. Checks from
//! outside: [`http_get`] on 127.0.0.1 and [`psql`] over TCP; the start-up
//! order from the engine's live event stream ([`EventWatch`]).
#![allow(dead_code)]

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::common::{docker, docker_output, text};

/// The host-port variables of `.env.example`, in the order they get ports.
pub const PORT_VARS: [&str; 10] = [
    "POSTGRES_PORT",
    "PROMETHEUS_PORT",
    "GRAFANA_PORT",
    "LOKI_PORT",
    "MIXNODE1_PORT",
    "MIXNODE2_PORT",
    "MIXNODE3_PORT",
    "NODE_EXPORTER_PORT",
    "CADVISOR_PORT",
    "ALERTMANAGER_PORT",
];

/// A strong (not placeholder, long enough) secret prod accepts; URL-safe.
pub const POSTGRES_PASSWORD: &str = "hN4rT8vQ2mX6kP9wL3zB7cF5dJ1sG0yA";

/// One test's isolated stack on the real images.
pub struct RealStack {
    pub dir: PathBuf,
    pub env_file: PathBuf,
    pub project: String,
    pub fog_network: String,
    pub betanet_network: String,
    port_base: u16,
}

/// Bank `k` (0..40): subnets 10.239.(2k).0/24 and 10.239.(2k+1).0/24, ports
/// 53000 + 20k ...; the first free one from a pid-derived start.
fn free_bank() -> u16 {
    let ids = String::from_utf8_lossy(&docker_output(&["network", "ls", "-q"]).stdout).into_owned();
    let mut args = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ];
    args.extend(ids.lines());
    let used = String::from_utf8_lossy(&docker_output(&args).stdout).into_owned();
    let start = (std::process::id() % 40) as u16;
    (0..40)
        .map(|i| (start + i) % 40)
        .find(|k| {
            let subnets = [2 * k, 2 * k + 1].map(|o| format!("10.239.{o}.0/24"));
            !used
                .split_whitespace()
                .any(|u| subnets.iter().any(|s| s == u))
                && (0..10)
                    .all(|p| std::net::TcpListener::bind(("127.0.0.1", 53000 + 20 * k + p)).is_ok())
        })
        .expect("a free bank of 10.239.0.0/16 subnets and 53000-53999 ports")
}

impl RealStack {
    /// A fresh env file for `name` (lowercase letters only); `extra` lines are appended.
    pub fn new(name: &str, extra: &[(&str, &str)]) -> RealStack {
        let bank = free_bank();
        let project = format!("foghon{name}{}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let stack = RealStack {
            env_file: dir.join(".env"),
            dir,
            fog_network: format!("foghon-{name}-{}-fog", std::process::id()),
            betanet_network: format!("foghon-{name}-{}-betanet", std::process::id()),
            project,
            port_base: 53000 + 20 * bank,
        };
        let mut text = format!(
            "COMPOSE_PROJECT_NAME={}\nFOG_NETWORK_NAME={}\nFOG_NETWORK_SUBNET=10.239.{}.0/24\n\
             BETANET_NETWORK_NAME={}\nBETANET_NETWORK_SUBNET=10.239.{}.0/24\n\
             POSTGRES_USER=fog\nPOSTGRES_DB=fog\nPOSTGRES_PASSWORD={POSTGRES_PASSWORD}\n\
             GRAFANA_ADMIN_USER=admin\nGRAFANA_ADMIN_PASSWORD=Wq5eR7tY9uI2oP4aS6dF8gH1jK3lZ0xC\n",
            stack.project,
            stack.fog_network,
            2 * bank,
            stack.betanet_network,
            2 * bank + 1
        );
        for (i, var) in PORT_VARS.iter().enumerate() {
            text.push_str(&format!("{var}={}\n", stack.port_base + i as u16));
        }
        for (k, v) in extra {
            text.push_str(&format!("{k}={v}\n"));
        }
        fs::write(&stack.env_file, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&stack.env_file, fs::Permissions::from_mode(0o600)).unwrap();
        stack
    }

    /// The host port this stack gave `var` (one of [`PORT_VARS`]).
    pub fn port(&self, var: &str) -> u16 {
        let i = PORT_VARS
            .iter()
            .position(|v| *v == var)
            .expect("a port variable");
        self.port_base + i as u16
    }

    /// Run the built xtask on this stack's env file, offline images allowed.
    pub fn xtask(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("FOG_ENV_FILE", &self.env_file)
            .env("FOG_OFFLINE", "1")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .stdin(Stdio::null())
            .output()
            .expect("xtask runs");
        eprintln!("$ xtask {}\n{}", args.join(" "), text(&out));
        out
    }

    /// [`RealStack::xtask`], asserting success.
    pub fn xtask_ok(&self, args: &[&str]) -> Output {
        let out = self.xtask(args);
        assert!(
            out.status.success(),
            "xtask {} failed:\n{}",
            args.join(" "),
            text(&out)
        );
        out
    }

    /// The id of `service`'s running container.
    pub fn container(&self, service: &str) -> String {
        let id = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "one container for {service}: {id:?}"
        );
        id
    }

    /// `docker inspect --format FORMAT` of `service`'s container.
    pub fn inspect(&self, service: &str, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.container(service)])
    }

    /// Services of this project with a running container, sorted.
    pub fn services(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Label \"com.docker.compose.service\"}}",
        ]);
        let mut s: Vec<String> = out.lines().map(String::from).collect();
        s.sort();
        s
    }

    /// Containers, networks and volumes of this stack that still exist.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut left = crate::common::docker_lines(&["ps", "-aq", "--filter", &label]);
        left.extend(crate::common::docker_lines(&[
            "volume", "ls", "-q", "--filter", &label,
        ]));
        left.extend(
            crate::common::docker_lines(&["network", "ls", "--format", "{{.Name}}"])
                .into_iter()
                .filter(|n| *n == self.fog_network || *n == self.betanet_network),
        );
        left
    }
}

impl Drop for RealStack {
    fn drop(&mut self) {
        crate::common::remove_project(
            &self.project,
            &[&self.fog_network, &self.betanet_network],
            &self.dir,
        );
    }
}

/// `GET path` on 127.0.0.1:`port`: (status code, body); `(0, error)` when the
/// connection fails, so callers can poll.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let attempt = || -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let code = raw
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    };
    attempt().unwrap_or_else(|e| (0, e.to_string()))
}

/// Poll `probe` every second until it returns `Some`, or panic after `secs`
/// with the last failure `describe` gives.
pub fn eventually<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not true after {secs}s; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// `psql -tAc QUERY` over TCP to 127.0.0.1:`port` as fog/fog with `password`.
pub fn psql(port: u16, password: &str, query: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "fog",
            "-d",
            "fog",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-tAc", query])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("psql is installed (scripts/ci-setup.sh installs postgresql-client-15)")
}

/// Prometheus's active targets of `job` whose health is `up`, from the JSON of
/// `/api/v1/targets`, as their `service` (or `instance`) labels, sorted.
pub fn targets_up(targets_json: &str, job: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(targets_json).unwrap_or_default();
    let mut up: Vec<String> = doc["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["labels"]["job"] == job && t["health"] == "up")
        .map(|t| {
            let labels = &t["labels"];
            labels["service"]
                .as_str()
                .or(labels["instance"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    up.sort();
    up
}

/// A live `docker events` stream of `project`'s container `start` and
/// `health_status` events, read when [`EventWatch::finish`] stops it. Live,
/// because the engine replays only its last 256 events for `--since`, and
/// healthcheck execs fill that buffer within a minute.
pub struct EventWatch(Option<std::process::Child>);

impl EventWatch {
    pub fn start(project: &str) -> EventWatch {
        let child = Command::new("docker")
            .args(["events", "--filter", "type=container"])
            .args(["--filter", &format!("label=com.docker.compose.project={project}")])
            .args(["--filter", "event=start", "--filter", "event=health_status"])
            .args([
                "--format",
                "{{.TimeNano}}|{{index .Actor.Attributes \"com.docker.compose.service\"}}|{{.Status}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker events runs");
        // Let the stream subscribe before anything happens.
        std::thread::sleep(Duration::from_secs(1));
        EventWatch(Some(child))
    }

    /// Stop the stream: (nanoseconds, service, `start` or `health_status: ...`), in engine order.
    pub fn finish(mut self) -> Vec<(u128, String, String)> {
        std::thread::sleep(Duration::from_secs(1));
        let mut child = self.0.take().unwrap();
        let _ = child.kill();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = child.wait();
        out.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '|');
                let nanos = parts.next()?.parse().ok()?;
                Some((nanos, parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect()
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
