//! Shared harness of the data-workflow e2e tests (`migrate`, `backup`,
//! `restore`, `psql` against the real engine): each test gets its own env file,
//! compose project `fogdata-<test>-<pid>`, two /24 subnets in 10.235.0.0/16
//! and host ports in 49000-50599 by bank and slot ([`bank`], [`slot_port`]), the offline Postgres image
//! (`images offline --only postgres`), and a [`DataStack`] guard whose `Drop`
//! removes the project's containers, networks and volumes even on failure.
//! Also what the data tests share beside the stack: a throwaway container
//! on a volume ([`in_volume`]) with the listings they compare
//! ([`stat_listing`], [`sha256_listing`]), and [`spawn_paused_at`] for the
//! `FOG_TEST_PAUSE_AT` hook.
#![allow(dead_code)]

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::common::{engine_or_skip, text, xtask_env};

pub fn repo_root() -> PathBuf {
    crate::common::crate_dir().parent().unwrap().to_path_buf()
}

static OFFLINE: Mutex<Option<String>> = Mutex::new(None);

/// The offline Postgres image, built once per test process.
pub fn postgres_image() -> String {
    let mut guard = OFFLINE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = guard.as_ref() {
        return image.clone();
    }
    let dir = std::env::temp_dir().join(format!("fogdata-offline-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join(".env");
    let out = xtask_env(
        &["images", "offline", "--quiet", "--only", "postgres"],
        &env_file,
    );
    assert!(out.status.success(), "{}", text(&out));
    let env = fs::read_to_string(&env_file).unwrap();
    let image = env
        .lines()
        .find_map(|l| l.strip_prefix("POSTGRES_IMAGE="))
        .expect("images offline sets POSTGRES_IMAGE")
        .to_string();
    let _ = fs::remove_dir_all(&dir);
    *guard = Some(image.clone());
    image
}

/// This process's bank (0..4): the first, from a pid-derived start, whose
/// subnets no Docker network uses and whose first port is free, so that two
/// runs at once (a developer and CI, or two CI lanes) do not collide. Chosen
/// once per test process; every slot of the process lives in it.
pub fn bank() -> u16 {
    static BANK: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *BANK.get_or_init(|| {
        let ids = text_of(&["network", "ls", "-q"]);
        let mut args = vec![
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        ];
        args.extend(ids.lines());
        let used = text_of(&args);
        let start = (std::process::id() % 4) as u16;
        (0..4)
            .map(|i| (start + i) % 4)
            .find(|b| {
                let taken = used.split_whitespace().any(|u| {
                    u.strip_prefix("10.235.")
                        .and_then(|r| r.split('.').next())
                        .and_then(|o| o.parse::<u16>().ok())
                        .is_some_and(|o| o / 32 == *b)
                });
                !taken && std::net::TcpListener::bind(("127.0.0.1", 49000 + 400 * b)).is_ok()
            })
            .unwrap_or(start)
    })
}

/// The first of the 20 host ports of `slot` (0..16) in this process's bank.
pub fn slot_port(slot: u16) -> u16 {
    assert!(slot < 16, "data stacks have slots 0..16");
    49000 + 400 * bank() + 20 * slot
}

fn text_of(args: &[&str]) -> String {
    String::from_utf8_lossy(&crate::common::docker_output(args).stdout).into_owned()
}

/// The test stacks' Postgres password (in the env file and the secret file).
const DB_PASSWORD: &str = "Vb3nQx7pLr2Wm9sK4tYc8dHe";

pub struct DataStack {
    pub project: String,
    pub dir: PathBuf,
    pub env_file: PathBuf,
    pub fog_network: String,
    pub betanet_network: String,
    pub files: Vec<&'static str>,
}

impl DataStack {
    /// `None` (skip) without an engine outside CI. `slot` 0..16 picks the
    /// subnets 10.235.(32*bank+2*slot).0/24 and (+1), and the 20 ports from
    /// [`slot_port`].
    pub fn new(test: &str, slot: u16, files: &[&'static str]) -> Option<DataStack> {
        if !engine_or_skip(test) {
            return None;
        }
        let image = postgres_image();
        let bank = 32 * bank();
        let project = format!("fogdata-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let env_file = dir.join(".env");
        let fog_network = format!("{project}-fog");
        let betanet_network = format!("{project}-betanet");
        let port = slot_port(slot);
        // The betanet mixnodes read the Postgres password from a secret file:
        // the stack's own, in its temp dir, never the repository's `secrets/`.
        let secrets = dir.join("secrets");
        fs::create_dir_all(&secrets).unwrap();
        fs::write(secrets.join("postgres_password"), DB_PASSWORD).unwrap();
        let text = format!(
            "COMPOSE_PROJECT_NAME={project}\nCOMPOSE_FILE={}\n\
             FOG_NETWORK_NAME={fog_network}\nFOG_NETWORK_SUBNET=10.235.{}.0/24\n\
             BETANET_NETWORK_NAME={betanet_network}\nBETANET_NETWORK_SUBNET=10.235.{}.0/24\n\
             POSTGRES_USER=fog\nPOSTGRES_DB=fog\nPOSTGRES_PASSWORD={DB_PASSWORD}\n\
             FOG_SECRETS_DIR={}\n\
             GRAFANA_ADMIN_USER=admin\nGRAFANA_ADMIN_PASSWORD=Ua2mPw6xJq1Ls5tRb8nCv3Df\n\
             POSTGRES_IMAGE={image}\nPOSTGRES_PORT={port}\n\
             MIXNODE1_PORT={}\nMIXNODE2_PORT={}\nMIXNODE3_PORT={}\n",
            files.join(":"),
            bank + 2 * slot,
            bank + 2 * slot + 1,
            secrets.display(),
            port + 1,
            port + 2,
            port + 3,
        );
        fs::write(&env_file, text).unwrap();
        Some(DataStack {
            project,
            dir,
            env_file,
            fog_network,
            betanet_network,
            files: files.to_vec(),
        })
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        let program = crate::common::compose_program().expect("compose is installed");
        let mut cmd = Command::new(program[0]);
        cmd.args(&program[1..])
            .args(["--project-directory", "compose", "--env-file"])
            .arg(&self.env_file)
            .args(["-p", &self.project]);
        for f in &self.files {
            cmd.args(["-f", f]);
        }
        let out = cmd
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .expect("compose runs");
        assert!(out.status.success(), "compose {args:?}: {}", text(&out));
        out
    }

    /// Start `services` and wait for Postgres to accept connections.
    pub fn up(&self, services: &[&str]) {
        let mut args = vec!["up", "-d"];
        args.extend_from_slice(services);
        self.compose(&args);
        self.wait_ready();
    }

    /// Wait (up to 180 s) until Postgres accepts connections, starting nothing.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while self.xtask(&["psql", "--", "-c", "SELECT 1"]).status.code() != Some(0) {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres did not come up"
            );
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args)
            .env("FOG_ENV_FILE", &self.env_file)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .stdin(Stdio::null());
        cmd
    }

    pub fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_with(args, &[])
    }

    /// [`Self::xtask`] with `env` added to the command's environment.
    pub fn xtask_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let started = std::time::Instant::now();
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("xtask runs");
        eprintln!(
            "$ xtask {} -> {} in {:.1}s\n{}{}",
            args.join(" "),
            out.status,
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `xtask` that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.xtask(args);
        assert!(out.status.success(), "xtask {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One SQL query through `xtask psql`, unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        self.ok(&[
            "psql",
            "--",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .trim()
        .to_string()
    }
}

impl Drop for DataStack {
    fn drop(&mut self) {
        crate::common::remove_project(
            &self.project,
            &[&self.fog_network, &self.betanet_network],
            &self.dir,
        );
    }
}

/// Run `script` as root in a throwaway container of the offline Postgres image
/// (a GNU userland: the reference tools) with `volume` at /v and no network;
/// its stdout.
pub fn in_volume(volume: &str, script: &str) -> String {
    run_on(&format!("{volume}:/v"), script)
}

/// [`in_volume`] with `volume` mounted read-only, for volumes a test must
/// not change (an old stack's under `adopt`).
pub fn read_volume(volume: &str, script: &str) -> String {
    run_on(&format!("{volume}:/v:ro"), script)
}

fn run_on(mount: &str, script: &str) -> String {
    let image = postgres_image();
    crate::common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0:0",
        "-v",
        mount,
        "--entrypoint",
        "sh",
        &image,
        "-c",
        script,
    ])
}

/// `stat` fields of an entry: name, type, size, link count, mode, owner and
/// link target.
pub const STAT: &str = "%n %F %s %h %a %u %g %N";
/// [`STAT`] with the allocated 512-byte blocks after the size (a hole that
/// came back filled shows there).
pub const STAT_BLOCKS: &str = "%n %F %s %b %h %a %u %g %N";

/// The shell line behind [`stat_listing`]: `stat -c FIELDS` of every entry
/// below /v (not /v itself), sorted by name (NUL-separated, so any name).
pub fn stat_script(fields: &str) -> String {
    format!("cd /v && find . -mindepth 1 -print0 | sort -z | xargs -0 -r stat -c '{fields}'")
}

/// The shell line behind [`sha256_listing`].
pub const SHA256_SCRIPT: &str = "cd /v && find . -type f -print0 | sort -z | xargs -0 -r sha256sum";

/// `stat -c FIELDS` ([`STAT`] or [`STAT_BLOCKS`]) of every entry of `volume`.
pub fn stat_listing(volume: &str, fields: &str) -> String {
    in_volume(volume, &stat_script(fields))
}

/// The sha256 of every regular file of `volume`, sorted by name.
pub fn sha256_listing(volume: &str) -> String {
    in_volume(volume, SHA256_SCRIPT)
}

/// Spawn `cmd` with the test hook `FOG_TEST_PAUSE_AT=phase` and
/// `FOG_TEST_PAUSE_MARKER` set to a fresh path, and wait until the marker
/// exists: the command is then held at `phase` until it is killed, gets
/// Ctrl-C/SIGTERM, or the marker is removed (which lets it go on). Panics,
/// with what it printed, if the command ends before it gets there. The caller
/// picks `cmd`'s stdio; the marker is the caller's to remove.
pub fn spawn_paused_at(mut cmd: Command, phase: &str) -> (Child, PathBuf) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let marker =
        std::env::temp_dir().join(format!("fog-paused-{}-{n}-{phase}", std::process::id()));
    let _ = fs::remove_file(&marker);
    let mut child = cmd
        .env("FOG_TEST_PAUSE_AT", phase)
        .env("FOG_TEST_PAUSE_MARKER", &marker)
        .spawn()
        .expect("the paused command starts");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} ended ({status}) before phase {phase}: {}",
                crate::common::text(&out)
            );
        }
        assert!(
            Instant::now() < deadline,
            "phase {phase} never reached: {cmd:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, marker)
}

/// An empty volume is data like any other: volume `overlay` of the stack's
/// environment (created empty here; no service of it may run) is backed up,
/// verified, then a file written into it, and the restore empties it again,
/// keeping the file in its `_before_restore_` volume. The backup's manifest
/// and stderr, for the caller's checks of its helper path.
pub fn empty_volume_round_trip(
    stack: &DataStack,
    overlay: &str,
    dir: &str,
) -> (serde_json::Value, String) {
    let volume = format!("{}_{overlay}", stack.project);
    crate::common::docker(&["volume", "create", &volume]);
    assert_eq!(stat_listing(&volume, STAT), "", "{volume} is not empty");
    let out = stack.xtask(&[
        "backup", "volume", overlay, "--dir", dir, "--format", "json",
    ]);
    assert!(out.status.success(), "{}", crate::common::text(&out));
    let written: serde_json::Value =
        serde_json::from_str(crate::common::stdout(&out).trim()).unwrap();
    let archive = written["path"].as_str().unwrap().to_string();
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(format!("{archive}.manifest.json")).unwrap())
            .unwrap();
    let empty = "1 entry: the volume is empty";
    let verified = stack.ok(&["backup", "verify", &archive]);
    assert!(verified.contains(empty), "{verified}");
    in_volume(&volume, "echo later > /v/added");
    let restored = stack.ok(&["restore", &archive, "--yes", "--dir", dir]);
    assert!(restored.contains(empty), "{restored}");
    assert_eq!(stat_listing(&volume, STAT), "", "{restored}");
    let aside = crate::common::docker_lines(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={volume}_before_restore_"),
    ]);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(in_volume(&aside[0], "cat /v/added"), "later");
    (manifest, crate::common::stderr(&out))
}
