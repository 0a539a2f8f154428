//! DATABASE_URL registration against a real, throwaway PostgreSQL 15
//! cluster (initdb + pg_ctl on a free 127.0.0.1 port, run as `nobody` when
//! the tests run as root since initdb refuses root). The migration file is
//! applied with psql, then the node must UPSERT its row and keep
//! `last_seen` fresh. Skips only when the binaries are missing and CI is unset.

mod common;

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{may_skip, Node};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    as_nobody: bool,
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let path = PathBuf::from(PG_BIN).join(program);
        if self.as_nobody {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A running cluster, or `None` (skip) when the binaries are missing and CI is unset.
    fn start_or_skip() -> Option<Cluster> {
        if !Path::new(PG_BIN).join("initdb").exists() || !Path::new(PG_BIN).join("psql").exists() {
            may_skip("PostgreSQL 15 binaries");
            return None;
        }
        Some(Cluster::start())
    }

    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let as_nobody = unsafe_is_root();
        let cluster = Cluster {
            dir,
            port: common::free_port(),
            as_nobody,
        };
        if as_nobody {
            chown(cluster.dir.path(), Some(65534), Some(65534)).unwrap();
        }
        let ok = |out: Output, what: &str| {
            assert!(
                out.status.success(),
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(
            cluster
                .command("initdb")
                .args(["-D"])
                .arg(cluster.data())
                .args(["-U", "postgres", "--auth=trust", "--no-sync"])
                .output()
                .unwrap(),
            "initdb",
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.port,
            cluster.dir.path().display()
        );
        ok(
            cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(cluster.data())
                .args(["-o", &options, "-l"])
                .arg(cluster.dir.path().join("log"))
                .args(["-w", "start"])
                .output()
                .unwrap(),
            "pg_ctl start",
        );
        cluster
    }

    fn psql(&self, args: &[&str]) -> String {
        let out = Command::new(Path::new(PG_BIN).join("psql"))
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[test]
fn node_registers_and_heartbeats_in_topology_table() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    let migration = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/V0001__mixnode_topology.sql"
    );
    cluster.psql(&["-f", migration]);
    // The migration is idempotent.
    cluster.psql(&["-f", migration]);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let mut node = Node::start(
        "middle",
        dir.path(),
        &[("DATABASE_URL", &url), ("NODE_ID", "mixnode-2")],
    );
    let key = node.status()["public_key"].as_str().unwrap().to_string();

    let row = || {
        cluster.psql(&["-c", "SELECT role, mix_address, http_port, public_key FROM mixnode_topology WHERE node_id = 'mixnode-2'"])
    };
    common::eventually(30, "registration row", || !row().is_empty());
    assert_eq!(
        row(),
        format!("middle|{}|{}|{key}", node.mix_address(), node.http_port)
    );

    // A restart UPSERTs the same row (no duplicate) and moves last_seen on.
    let seen = || {
        cluster.psql(&[
            "-c",
            "SELECT last_seen FROM mixnode_topology WHERE node_id = 'mixnode-2'",
        ])
    };
    let first = seen();
    std::thread::sleep(Duration::from_millis(50));
    node.restart();
    common::eventually(30, "last_seen refreshed", || seen() != first);
    assert_eq!(
        cluster.psql(&["-c", "SELECT count(*) FROM mixnode_topology"]),
        "1"
    );

    // Without a restart, the heartbeat (every 10 s) moves last_seen on again.
    let after_restart = seen();
    common::eventually(25, "heartbeat", || seen() != after_restart);
}

#[test]
fn topology_table_decides_relays_and_its_absence_is_logged_once() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The password comes from a file (trust auth ignores it, but it must be
    // accepted and inserted); the URL carries none.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "unused-by-trust\n").unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let log = dir.path().join("node.log");
    let node = Node::start_logged(
        "middle",
        &dir.path().join("data"),
        &[
            ("DATABASE_URL", &url),
            ("DATABASE_PASSWORD_FILE", pw.to_str().unwrap()),
            // No static peers: only the registry names mixes.
            ("MIX_PEERS", ""),
        ],
        Some(log.clone()),
    );
    let sink = common::Sink::start();
    let send = |n: usize| {
        let packets = common::packets_via(node.public_key(), &node.mix_address(), &sink.address, n);
        let mut stream = std::net::TcpStream::connect(node.mix_address()).unwrap();
        for p in &packets {
            std::io::Write::write_all(&mut stream, p).unwrap();
        }
    };
    // The table is missing: two heartbeats fail, one line is logged.
    common::eventually(40, "two failed heartbeats", || {
        node.metrics()
            .get("mixnode_warnings_total{kind=\"topology_missing\"}")
            >= 2.0
    });
    let lines = std::fs::read_to_string(&log).unwrap();
    let missing = lines
        .lines()
        .filter(|l| l.contains("does not exist"))
        .count();
    assert_eq!(missing, 1, "{lines}");
    // Meanwhile the sink is no known mix.
    send(4);
    common::eventually(20, "unknown_next_hop", || {
        node.metrics().dropped("unknown_next_hop") == 4.0
    });

    // Migrations applied and the sink registered: the node relays to it.
    let migration = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/V0001__mixnode_topology.sql"
    );
    cluster.psql(&["-f", migration]);
    cluster.psql(&[
        "-c",
        &format!(
            "INSERT INTO mixnode_topology (node_id, role, mix_address, http_port, public_key, version, started_at, last_seen) \
             VALUES ('sink', 'exit', '{}', 1, repeat('ab', 32), 't', now(), now())",
            sink.address
        ),
    ]);
    common::eventually(40, "registry read back", || {
        node.metrics().get("mixnode_known_mixes") >= 2.0
    });
    send(5);
    common::eventually(20, "relayed to the registered mix", || sink.count() == 5);
}
