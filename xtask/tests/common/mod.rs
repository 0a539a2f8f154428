//! Helpers shared by every xtask integration test (`mod common;` in each
//! file): run the built `xtask` binary (from the crate directory, or against a
//! test's own env file), read `check`'s JSON findings as (rule, file name,
//! line) facts, find the Docker engine and Compose (missing ones skip a test
//! outside CI and fail it under `CI=true`), query Docker, and a [`Cleanup`]
//! guard that removes the containers, networks, volumes, images and temp paths
//! a test created, even when the test fails.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `xtask/` (the crate directory); fixtures live below `tests/fixtures`.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(rel)
}

/// Run `cargo xtask <args>` (the built binary) from the crate directory.
pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(crate_dir())
        .output()
        .expect("run the xtask binary")
}

/// Run the built xtask with `FOG_ENV_FILE` pointing at a test's own env file.
pub fn xtask_env(args: &[&str], env_file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("FOG_ENV_FILE", env_file)
        .stdin(Stdio::null())
        .output()
        .expect("run the xtask binary")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout and stderr of a run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        stdout(output),
        stderr(output)
    )
}

/// Whether `CI` asks for every e2e test to run (`CI=true`, or any value but `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// `true` when the Docker engine answers; `false` (skip) only outside CI.
pub fn engine_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "{test}: CI is set but the Docker engine is not reachable (`docker info` failed)"
        );
        eprintln!("{test}: skipped: no Docker engine (set CI=true to make this a failure)");
    }
    ok
}

/// A [`Cleanup`] guard when the engine answers; `None` (skip) only outside CI.
pub fn engine_guard(test: &str) -> Option<Cleanup> {
    engine_or_skip(test).then(Cleanup::default)
}

/// The Compose program the xtask itself picks (`xtask::engine::find_compose`:
/// the flavour `FOG_COMPOSE` names, else v2, else v1), or `None`.
pub fn compose_program() -> Option<Vec<&'static str>> {
    let (flavor, _) = xtask::engine::find_compose(false).ok()?;
    let (program, lead) = flavor.program();
    Some(
        std::iter::once(program)
            .chain(lead.iter().copied())
            .collect(),
    )
}

/// [`compose_program`], or `None` (skip) outside CI when there is none.
pub fn compose_or_skip(test: &str) -> Option<Vec<&'static str>> {
    let found = compose_program();
    if found.is_none() {
        assert!(
            !in_ci(),
            "{test}: CI is set but the Compose flavour asked for is missing: {}",
            xtask::engine::find_compose(false)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        eprintln!(
            "{test}: skipped: no docker compose / docker-compose (set CI=true to require it)"
        );
    }
    found
}

/// A `Command` for the Compose program (a test that got past [`engine_or_skip`]).
pub fn compose_command() -> Command {
    let program = compose_program().expect("docker compose or docker-compose is installed");
    let mut cmd = Command::new(program[0]);
    cmd.args(&program[1..]);
    cmd
}

/// One finding reduced to what tests assert: rule id, file name, line.
pub type Fact = (String, String, Option<u64>);

/// Run `check --format json` with `args` and return the exit code and facts.
pub fn check_facts(args: &[&str]) -> (i32, BTreeSet<Fact>) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let out = xtask(&all);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut facts = BTreeSet::new();
    for env in doc["environments"].as_array().expect("environments array") {
        for f in env["findings"].as_array().expect("findings array") {
            let file = f["file"].as_str().map(|p| {
                Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            });
            facts.insert((
                f["rule"].as_str().unwrap().to_string(),
                file.unwrap_or_default(),
                f["line"].as_u64(),
            ));
        }
    }
    (out.status.code().unwrap_or(-1), facts)
}

pub fn fact(rule: &str, file: &str, line: u64) -> Fact {
    (rule.to_string(), file.to_string(), Some(line))
}

/// A name unique to this test process, for containers, networks and tags.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Run docker; never panics (a missing `docker` is exit status 127), for
/// cleanup code and tests that look at the failure.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|_| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: b"docker not found".to_vec(),
        })
}

/// Run docker and return trimmed stdout, panicking with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every line `docker <args>` prints; none when it fails.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&docker_output(args).stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// A test stack's teardown, for the `Drop` of every stack guard: the compose
/// project's containers with their anonymous volumes, `networks`, the
/// project's labelled volumes and those whose name starts with
/// `<project>_` (made by `docker run -v` or a restore), then `dir`.
pub fn remove_project(project: &str, networks: &[&str], dir: &Path) {
    let label = format!("label=com.docker.compose.project={project}");
    let ids = docker_lines(&["ps", "-aq", "--filter", &label]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        docker_output(&args);
    }
    for net in networks {
        if docker_ok(&["network", "inspect", net]) {
            docker_output(&["network", "rm", net]);
        }
    }
    let prefix = format!("name={project}_");
    let mut volumes = docker_lines(&["volume", "ls", "-q", "--filter", &label]);
    volumes.extend(docker_lines(&["volume", "ls", "-q", "--filter", &prefix]));
    volumes.sort();
    volumes.dedup();
    for vol in volumes {
        docker_output(&["volume", "rm", "-f", &vol]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether `docker <args>` succeeds.
pub fn docker_ok(args: &[&str]) -> bool {
    docker_output(args).status.success()
}

/// Removes what a test created, in reverse dependency order, on drop.
#[derive(Default)]
pub struct Cleanup {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
    pub paths: Vec<PathBuf>,
}

impl Cleanup {
    /// A network with a unique name on `subnet`, removed on drop.
    pub fn network(&mut self, prefix: &str, subnet: &str) -> String {
        let network = unique(prefix);
        docker(&["network", "create", "--subnet", subnet, &network]);
        self.networks.push(network.clone());
        network
    }

    /// A unique container name, its container removed on drop.
    pub fn container(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        self.containers.push(name.clone());
        name
    }

    /// A fresh temp directory, removed on drop.
    pub fn temp_dir(&mut self, prefix: &str) -> PathBuf {
        let dir = temp_dir(prefix);
        self.paths.push(dir.clone());
        dir
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            docker_output(&["rm", "-f", "-v", c]);
        }
        for n in &self.networks {
            docker_output(&["network", "rm", n]);
        }
        for v in &self.volumes {
            docker_output(&["volume", "rm", "-f", v]);
        }
        for i in &self.images {
            docker_output(&["rmi", "-f", i]);
        }
        for p in &self.paths {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

/// A fresh directory under the system temp dir (registered for cleanup by the caller).
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Wait until the container's healthcheck reports `healthy`; panic with its
/// logs when it turns unhealthy, exits, or `timeout` passes.
pub fn wait_healthy(container: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let state = docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            container,
        ]);
        if state.ends_with(" healthy") {
            return;
        }
        if state.starts_with("exited")
            || state.starts_with("dead")
            || state.ends_with("unhealthy")
            || Instant::now() > deadline
        {
            let logs = docker_output(&["logs", "--tail", "30", container]);
            panic!(
                "{container} did not become healthy ({state}):\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
