//! E2E on the real engine (project `fogdata-betanet-<pid>`): the compose
//! betanet migrates by itself. `up` of the three mixnodes starts Postgres, then
//! the one-shot `migrate` service (which must exit 0), then the nodes, and all
//! three register in `mixnode_topology` with a fresh `last_seen` heartbeat;
//! no node logs the missing-table warning.

mod common;
mod data_support;

use std::time::{Duration, Instant};

use data_support::DataStack;

#[test]
fn betanet_mixnodes_register_after_migrate() {
    let Some(stack) = DataStack::new("betanet", 2, &["compose/base.yml", "compose/betanet.yml"])
    else {
        return;
    };
    // Always through the build (a content-hash skip when up to date), never
    // a stale image left by an older checkout.
    stack.ok(&["images", "build", "mixnode", "--quiet"]);
    stack.ok(&["images", "build", "migrate", "--quiet"]);
    stack.up(&["mixnode-1", "mixnode-2", "mixnode-3"]);

    let filter = format!("label=com.docker.compose.project={}", stack.project);
    let migrate = common::docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--filter",
        "label=com.docker.compose.service=migrate",
        "--format",
        "{{.Status}}",
    ]);
    assert!(
        migrate.starts_with("Exited (0)"),
        "migrate service: {migrate}"
    );

    let fresh = "SELECT string_agg(node_id || ':' || role, ',' ORDER BY node_id) FROM mixnode_topology WHERE last_seen > now() - interval '30 seconds'";
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let nodes = stack.sql(fresh);
        if nodes == "mixnode-1:entry,mixnode-2:middle,mixnode-3:exit" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mixnodes not registered with a fresh heartbeat: `{nodes}`"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // The heartbeat moves.
    let first = stack.sql("SELECT max(last_seen) FROM mixnode_topology");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.sql("SELECT max(last_seen) FROM mixnode_topology") == first {
        assert!(Instant::now() < deadline, "last_seen did not advance");
        std::thread::sleep(Duration::from_secs(2));
    }
    for node in ["mixnode-1", "mixnode-2", "mixnode-3"] {
        let logs = stack.compose(&["logs", "--no-color", node]);
        let text = String::from_utf8_lossy(&logs.stdout);
        assert!(
            !text.contains("topology heartbeat failed") && !text.contains("does not exist"),
            "{node}: {text}"
        );
    }
    assert!(stack.ok(&["migrate", "status"]).contains("applied"));
}
