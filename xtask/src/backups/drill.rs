//! `backup verify FILE --restore`: a restore drill. A throwaway Postgres
//! container (the backup's own image when present, else the environment's;
//! no network, no published port) gets the archive through `pg_restore
//! --exit-on-error`; its per-table row counts must equal the manifest's and
//! `amcheck` must pass on every B-tree index. The result and the restore time
//! go to `<file>.drill.json` (which `prune` reads); the container is removed
//! however the drill ends, and one a killed drill left (labelled with the
//! project and the xtask's pid, [`super::recover::HELPER_LABEL`]) is removed
//! by the next drill, and listed and removed by `backup list` / `cleanup`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{archive, postgres, stream};
use crate::process::{Cmd, Io};
use crate::{database::capture, process::Runner};

/// What a drill records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Drill {
    pub passed: bool,
    pub image: String,
    pub restore_seconds: f64,
    pub tables: usize,
    pub indexes_checked: i64,
    pub at: String,
}

const AMCHECK_SQL: &str = "CREATE EXTENSION IF NOT EXISTS amcheck; \
    SELECT count(bt_index_check(c.oid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
    JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE a.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')";

fn docker(runner: &Runner, mutating: bool, args: &[&str]) -> Result<String> {
    let mut cmd = Cmd::new("docker");
    cmd.args(args);
    let what = format!("`{}`", cmd.line());
    capture(runner, mutating, cmd, &what).map(|s| s.trim().to_string())
}

/// Restore `path` (already verified) into a throwaway server and check it.
pub fn drill(
    runner: &Runner,
    path: &Path,
    manifest: &archive::Manifest,
    fallback_image: Option<&str>,
    progress: bool,
) -> Result<Drill> {
    let image = if crate::docker::image_exists(runner, &manifest.image) {
        manifest.image.clone()
    } else {
        fallback_image
            .map(str::to_string)
            .with_context(|| format!("the backup's image {} is not in the engine and no environment is running to lend its Postgres image", manifest.image))?
    };
    let name = format!(
        "fogdrill-{}-{}",
        std::process::id(),
        archive::stamp(&crate::clock::rfc3339_now()).to_lowercase()
    );
    super::recover::remove_dead_helpers(runner, &manifest.project)?;
    let project_label = format!("{}={}", super::recover::HELPER_LABEL, manifest.project);
    let pid_label = format!(
        "{}={}",
        super::recover::HELPER_PID_LABEL,
        std::process::id()
    );
    let password = migrate::files::checksum(&format!("{name}{:?}", Instant::now()));
    docker(
        runner,
        true,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--label",
            "dev.fog-compute.drill=1",
            "--label",
            &project_label,
            "--label",
            &pid_label,
            "-e",
            "POSTGRES_USER=drill",
            "-e",
            &format!("POSTGRES_PASSWORD={}", &password[..24]),
            "-e",
            "POSTGRES_DB=drill",
            &image,
        ],
    )?;
    let container = super::volume::Helper(name);
    super::recover::pause("drill")?;
    wait_ready(&container.0, Duration::from_secs(120))?;
    let exec = |args: &[&str]| {
        let mut cmd = Cmd::new("docker");
        cmd.args(["exec", "-i", &container.0]).args(args);
        cmd
    };
    let started = Instant::now();
    let bar = stream::bar(
        progress,
        Some(manifest.size),
        &format!("drill: pg_restore {}", manifest.file),
    );
    let file = super::encrypt::open(path)?;
    let restored = stream::into_child(
        runner,
        true,
        exec(&[
            "pg_restore",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "-U",
            "drill",
            "-d",
            "drill",
        ]),
        file,
        &bar,
        true,
    );
    bar.finish_and_clear();
    restored.context("the drill's restore failed")?;
    let restore_seconds = started.elapsed().as_secs_f64();
    let psql = |sql: &str| -> Result<String> {
        let cmd = exec(&[
            "psql",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "drill",
            "-d",
            "drill",
            "-c",
            sql,
        ]);
        capture(runner, false, cmd, "the drill's psql").map(|s| s.trim().to_string())
    };
    let counts = postgres::parse_counts(&psql(postgres::COUNT_SQL)?)?;
    let mut differ = Vec::new();
    for (table, want) in &manifest.tables {
        match counts.get(table) {
            Some(got) if got == want => {}
            Some(got) => differ.push(format!(
                "{table}: {got} rows restored, manifest says {want}"
            )),
            None => differ.push(format!("{table}: missing after restore")),
        }
    }
    if !differ.is_empty() {
        bail!(
            "{}: the restored data does not match the manifest: {}",
            path.display(),
            differ.join("; ")
        );
    }
    let indexes_checked: i64 = psql(AMCHECK_SQL)?
        .lines()
        .last()
        .unwrap_or("0")
        .parse()
        .context("amcheck printed no count")?;
    Ok(Drill {
        passed: true,
        image,
        restore_seconds,
        tables: counts.len(),
        indexes_checked,
        at: crate::clock::rfc3339_now(),
    })
}

fn wait_ready(container: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // TCP on loopback: the init-time server listens on the socket only.
        let ready = Runner::default()
            .status(
                Cmd::new("docker")
                    .args([
                        "exec",
                        container,
                        "pg_isready",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "drill",
                        "-d",
                        "drill",
                    ])
                    .stdout(Io::Null)
                    .stderr(Io::Null),
            )
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        let state = docker(
            &Runner::default(),
            false,
            &["inspect", "--format", "{{.State.Status}}", container],
        )
        .unwrap_or_default();
        if state != "running" || Instant::now() > deadline {
            let logs = Runner::default()
                .output(Cmd::new("docker").args(["logs", "--tail", "20", container]));
            let logs = logs
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            bail!(
                "the drill's Postgres {container} did not become ready ({state}): {}",
                logs.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
