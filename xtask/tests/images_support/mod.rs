//! Shared helpers for the images e2e tests: run the real `xtask` binary, find
//! the Docker engine (a missing engine skips outside CI and fails under
//! `CI=true`), and a guard that removes the containers, networks, volumes and
//! images a test created, even when the test fails.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

/// `true` when the tests can use Docker; `false` (skip) only outside CI.
pub fn docker_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{test}: CI is set but the Docker engine is not reachable (`docker info` failed)");
    }
    eprintln!("{test}: skipped: no Docker engine (set CI=true to make this a failure)");
    false
}

/// A name unique to this test process, for containers, networks and tags.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Run `cargo xtask <args>` (the built binary) with `FOG_ENV_FILE` set.
pub fn xtask(args: &[&str], env_file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("FOG_ENV_FILE", env_file)
        .output()
        .expect("running the xtask binary")
}

/// Stdout and stderr of an xtask run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Run docker and return trimmed stdout, panicking with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("running docker");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether `docker <args>` succeeds.
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
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

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
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
            let logs = Command::new("docker")
                .args(["logs", "--tail", "30", container])
                .output()
                .unwrap();
            panic!(
                "{container} did not become healthy ({state}):\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
