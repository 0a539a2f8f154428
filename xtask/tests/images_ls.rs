//! E2E: `images ls` resolves the real overlays' `image:` values against the
//! env file and reports presence as the engine sees it, as JSON and as a table.

mod common;

use common::*;

#[test]
fn ls_resolves_overlay_images_against_the_env_file() {
    let Some(mut guard) = engine_guard("ls_resolves_overlay_images_against_the_env_file") else {
        return;
    };
    let dir = guard.temp_dir("imgs-ls");
    let env_file = dir.join(".env");
    let custom = format!("{}:1", unique("imgs-ls-absent"));
    let offline_postgres = "fog-offline/postgres:15.14-bookworm";
    std::fs::write(
        &env_file,
        format!("POSTGRES_IMAGE={offline_postgres}\nPROMETHEUS_IMAGE={custom}\n"),
    )
    .unwrap();

    let out = xtask_env(
        &["images", "ls", "--env", "dev+betanet", "--format", "json"],
        &env_file,
    );
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |var: &str| {
        rows.iter()
            .find(|r| r["variable"] == var)
            .unwrap_or_else(|| panic!("no {var} row: {rows:?}"))
    };

    let postgres = row("POSTGRES_IMAGE");
    assert_eq!(postgres["image"], offline_postgres);
    assert_eq!(postgres["source"], "offline");
    assert_eq!(
        postgres["present"],
        docker_ok(&["image", "inspect", offline_postgres])
    );
    let prometheus = row("PROMETHEUS_IMAGE");
    assert_eq!(prometheus["image"], custom.as_str());
    assert_eq!(prometheus["present"], false);
    // The full version of Debian's package in the base when it has been
    // imported (e.g. `2.42.0-bookworm`), else the pinned prefix as a pattern.
    let offline = prometheus["offline_image"].as_str().unwrap();
    let version = offline
        .strip_prefix("fog-offline/prometheus:2.42.")
        .and_then(|v| v.strip_suffix("-bookworm"))
        .unwrap_or_else(|| panic!("offline_image {offline}"));
    assert!(
        version == "*" || (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())),
        "offline_image {offline}"
    );
    let mixnode = row("MIXNODE_IMAGE");
    assert_eq!(mixnode["source"], "build");
    assert_eq!(
        mixnode["services"],
        serde_json::json!(["mixnode-1", "mixnode-2", "mixnode-3", "loadgen"])
    );
    assert!(
        rows.iter().all(|r| r["variable"] != "ALERTMANAGER_IMAGE"),
        "monitoring is not in dev+betanet"
    );

    let table = xtask_env(&["images", "ls", "--env", "dev+betanet"], &env_file);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("VARIABLE") && header.contains("PRESENT"),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.starts_with("PROMETHEUS_IMAGE"))
        .unwrap();
    assert!(line.contains(&custom) && line.contains(" no "), "{line}");
}
