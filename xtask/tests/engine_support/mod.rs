//! Shared helpers for the engine's Docker end-to-end tests: each test gets its
//! own temp env file (`FOG_ENV_FILE`), compose project `fogeng-<test>-<pid>`, two
//! /24 subnets carved from 10.231.0.0/16 and host ports from 15000-15999 by its
//! slot number, and a [`Stack`] guard whose `Drop` removes the project's
//! containers, networks and volumes (by label and name) even when the test
//! fails. The engine check, Docker queries and output helpers are `common`'s.
#![allow(dead_code)]

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::Mutex,
};

use crate::common::{docker, docker_output};

/// A throwaway image for the mechanics tests: `/bin/sh` and `sleep` from the
/// host, plus `wget`, `pg_isready` and `mixnode healthcheck` stand-ins that
/// succeed, and `up` (the one-shot migrate service's command) exiting 0, so
/// every service of the real overlays starts and turns healthy.
pub const STUB_IMAGE: &str = "fogt-stub:2";

static STUB_LOCK: Mutex<()> = Mutex::new(());

/// Build [`STUB_IMAGE`] with `docker import` unless it exists.
pub fn ensure_stub_image() {
    let _guard = STUB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if docker_output(&["image", "inspect", STUB_IMAGE])
        .status
        .success()
    {
        return;
    }
    let script = r#"set -eu
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT; cd "$R"
mkdir -p bin usr/bin usr/local/bin tmp; chmod 1777 tmp
cp /bin/dash bin/sh; cp /bin/sleep bin/sleep
for l in $( (ldd /bin/dash; ldd /bin/sleep) | grep -o '/[^ :]*' | sort -u); do
  mkdir -p ".$(dirname "$l")"; cp -L "$l" ".$l"
done
cat > usr/local/bin/stub <<'EOF'
#!/bin/sh
case "${0##*/} ${1:-}" in
  "wget "*|"pg_isready "*|"mixnode healthcheck") exit 0 ;;
  "stub up") exit 0 ;; # the one-shot migrate service
esac
trap 'exit 0' TERM INT
while :; do sleep 1 & wait $!; done
EOF
chmod 755 usr/local/bin/stub
ln -s /usr/local/bin/stub usr/bin/wget; ln -s /usr/local/bin/stub usr/bin/pg_isready
ln -s stub usr/local/bin/mixnode
tar -C "$R" -c . | docker import --change 'ENTRYPOINT ["/usr/local/bin/stub"]' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - fogt-stub:2 >/dev/null
"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "building {STUB_IMAGE} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stub that logs a line and exits 3 at once: a service that never comes up.
pub fn ensure_failing_image() -> String {
    const FAILING: &str = "fogt-stub:fail";
    ensure_stub_image();
    let _guard = STUB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !docker_output(&["image", "inspect", FAILING])
        .status
        .success()
    {
        let dockerfile = format!(
            "FROM {STUB_IMAGE}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo 'stub: configured to fail' >&2; exit 3\", \"stub\"]\n"
        );
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", FAILING, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker build runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "building {FAILING} failed");
    }
    FAILING.to_string()
}

/// Slots per run; a run uses slots `1..SLOTS` shifted by `SLOTS * k`, k in 0..4.
const SLOTS: u16 = 12;

/// `slot` shifted into one of four banks, so that two runs at once (a developer
/// and CI) do not collide: the first bank, from the pid on, whose fog subnet no
/// Docker network uses and whose first port is free.
fn free_slot(slot: u16) -> u16 {
    let ids = String::from_utf8_lossy(&docker_output(&["network", "ls", "-q"]).stdout).into_owned();
    let mut args = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ];
    args.extend(ids.lines());
    let used = String::from_utf8_lossy(&docker_output(&args).stdout).into_owned();
    let start = (std::process::id() % 4) as u16;
    (0..4)
        .map(|i| slot + SLOTS * ((start + i) % 4))
        .find(|s| {
            let subnet = format!("10.231.{}.0/24", 2 * s);
            !used.split_whitespace().any(|u| u == subnet)
                && std::net::TcpListener::bind(("127.0.0.1", 15000 + 20 * s)).is_ok()
        })
        .unwrap_or(slot + SLOTS * start)
}

/// One test's isolated stack: env file, project, networks, ports.
pub struct Stack {
    pub dir: PathBuf,
    pub env_file: PathBuf,
    pub project: String,
    pub fog_network: String,
    pub betanet_network: String,
    pub fog_subnet: String,
    pub betanet_subnet: String,
    /// First of 20 host ports reserved for this slot.
    pub port_base: u16,
    /// The effective slot, after the shift into a free bank.
    pub slot: u16,
}

impl Stack {
    /// `slot` (1..12, shifted by [`free_slot`]) picks subnets 10.231.(2*slot).0/24
    /// and 10.231.(2*slot+1).0/24 and ports 15000 + 20*slot ...; every image variable points at `image`
    /// when given. `extra` lines are appended to the env file.
    pub fn new(test: &str, slot: u16, image: Option<&str>, extra: &[(&str, String)]) -> Stack {
        assert!((1..SLOTS).contains(&slot));
        let slot = free_slot(slot);
        let project = format!("fogeng-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let env_file = dir.join(".env");
        let port_base = 15000 + 20 * slot;
        let stack = Stack {
            fog_network: format!("{project}-fog"),
            betanet_network: format!("{project}-betanet"),
            fog_subnet: format!("10.231.{}.0/24", 2 * slot),
            betanet_subnet: format!("10.231.{}.0/24", 2 * slot + 1),
            dir,
            env_file,
            project,
            port_base,
            slot,
        };
        let mut lines = vec![
            ("COMPOSE_PROJECT_NAME", stack.project.clone()),
            ("FOG_NETWORK_NAME", stack.fog_network.clone()),
            ("FOG_NETWORK_SUBNET", stack.fog_subnet.clone()),
            ("BETANET_NETWORK_NAME", stack.betanet_network.clone()),
            ("BETANET_NETWORK_SUBNET", stack.betanet_subnet.clone()),
            ("POSTGRES_USER", "fog".into()),
            ("POSTGRES_DB", "fog".into()),
            ("POSTGRES_PASSWORD", "Tq7vXz0pLm4Rk8sW2nYb6cHd".into()),
            ("GRAFANA_ADMIN_USER", "admin".into()),
            ("GRAFANA_ADMIN_PASSWORD", "Pz3qWn8xKv5Lr1tYb7mCs9Dg".into()),
            // Secret files in the stack's own temp dir (removed on drop),
            // never the repository's `secrets/` with a test password.
            (
                "FOG_SECRETS_DIR",
                stack.dir.join("secrets").display().to_string(),
            ),
        ];
        let ports = [
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
        for (i, var) in ports.iter().enumerate() {
            lines.push((var, (port_base + i as u16).to_string()));
        }
        if let Some(image) = image {
            for var in [
                "POSTGRES_IMAGE",
                "PROMETHEUS_IMAGE",
                "GRAFANA_IMAGE",
                "LOKI_IMAGE",
                "NODE_EXPORTER_IMAGE",
                "CADVISOR_IMAGE",
                "ALERTMANAGER_IMAGE",
                "MIGRATE_IMAGE",
                "MIXNODE_IMAGE",
            ] {
                lines.push((var, image.to_string()));
            }
        }
        let mut text = String::new();
        for (k, v) in lines
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
        {
            text.push_str(&format!("{k}={v}\n"));
        }
        fs::write(&stack.env_file, text).unwrap();
        stack
    }

    /// [`Stack::new`] on [`STUB_IMAGE`] when the engine answers (see
    /// `common::engine_or_skip`); `None` skips the test.
    pub fn stub(test: &str, name: &str, slot: u16) -> Option<Stack> {
        if !crate::common::engine_or_skip(test) {
            return None;
        }
        ensure_stub_image();
        Some(Stack::new(name, slot, Some(STUB_IMAGE), &[]))
    }

    /// The host port of `var` in this stack.
    pub fn port(&self, var: &str) -> u16 {
        let text = fs::read_to_string(&self.env_file).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{var}="))
                    .map(|v| v.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{var} not in the test env file"))
    }

    /// Run the built xtask against this stack's env file.
    pub fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_with(args, &[])
    }

    pub fn xtask_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args)
            .env("FOG_ENV_FILE", &self.env_file)
            .env_remove("COMPOSE_FILE")
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

    /// Containers (any state) labelled with this project.
    pub fn containers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        docker(&["ps", "-aq", "--filter", &filter])
            .lines()
            .map(String::from)
            .collect()
    }

    /// Which of this stack's two networks exist.
    pub fn networks(&self) -> Vec<String> {
        docker(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .filter(|n| *n == self.fog_network || *n == self.betanet_network)
            .map(String::from)
            .collect()
    }

    pub fn volumes(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        docker(&["volume", "ls", "-q", "--filter", &filter])
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        crate::common::remove_project(
            &self.project,
            &[&self.fog_network, &self.betanet_network],
            &self.dir,
        );
    }
}
