//! What the `adopt` e2e tests share: the old layout ([`OldStack`], started
//! by Compose itself from `fixtures/legacy-adopt` in a temp folder named like
//! its project, removed on drop), the data written into it ([`WRITE`]) and
//! its fingerprint, a volume's [`checksum`], the new environment as a
//! `data_support` stack on stub images ([`new_stack`]), and [`adopt`] run
//! against it.
#![allow(dead_code)]

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::common::{self, docker, docker_lines, docker_ok, docker_output, text};
use crate::data_support::{
    postgres_image, read_volume, stat_script, DataStack, SHA256_SCRIPT, STAT,
};
use crate::engine_support::STUB_IMAGE;

pub const FIXTURE: &str = "tests/fixtures/legacy-adopt";

/// The old layout, started by Compose itself as the old host did, from a
/// temp folder named like its project (so adopt's default `--project` is it).
pub struct OldStack {
    pub project: String,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The redis stand-in: the stub under a repository of its own, as a real
    /// `redis` image has one no new service shares.
    pub redis_image: String,
}

impl OldStack {
    pub fn new(test: &str, subnet: u16, prometheus_port: u16, with_monitoring: bool) -> OldStack {
        let project = format!("fogad-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut names = vec!["docker-compose.yml"];
        if with_monitoring {
            names.push("docker-compose.monitoring.yml");
        }
        let files: Vec<PathBuf> = names
            .iter()
            .map(|n| {
                let to = dir.join(n);
                fs::copy(common::crate_dir().join(FIXTURE).join(n), &to).unwrap();
                to
            })
            .collect();
        let redis_image = format!("{project}-redis:1");
        docker(&["tag", STUB_IMAGE, &redis_image]);
        let env = format!(
            "LEGACY_POSTGRES_IMAGE={}\nLEGACY_PROMETHEUS_IMAGE={STUB_IMAGE}\nLEGACY_REDIS_IMAGE={redis_image}\n\
             LEGACY_POSTGRES_PORT={}\nLEGACY_PROMETHEUS_PORT={prometheus_port}\nLEGACY_SUBNET=10.236.{}.0/24\n",
            postgres_image(),
            47000 + subnet * 10 + (std::process::id() % 10) as u16,
            subnet + 4 * (std::process::id() % 32) as u16,
        );
        fs::write(dir.join(".env"), env).unwrap();
        let stack = OldStack {
            project,
            dir,
            files,
            redis_image,
        };
        stack.compose(&["up", "-d"]);
        stack.wait_pg();
        stack
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        let program = common::compose_program().expect("compose is installed");
        let mut cmd = Command::new(program[0]);
        cmd.args(&program[1..]).args(["-p", &self.project]);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "old compose {args:?}: {}", text(&out));
        out
    }

    pub fn from(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn container(&self, service: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        docker(&["ps", "-aq", "--filter", &project, "--filter", &service])
    }

    pub fn volume(&self, key: &str) -> String {
        format!("{}_{key}", self.project)
    }

    /// `(service, running)` of every old container.
    pub fn states(&self) -> Vec<(String, bool)> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let mut states: Vec<(String, bool)> = docker_lines(&[
            "ps",
            "-a",
            "--filter",
            &project,
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.State}}",
        ])
        .iter()
        .map(|l| {
            let (s, state) = l.split_once(' ').unwrap();
            (s.to_string(), state == "running")
        })
        .collect();
        states.sort();
        states
    }

    pub fn all_running(&self) -> bool {
        self.states().iter().all(|(_, r)| *r)
    }

    pub fn wait_pg(&self) {
        let id = self.container("postgres");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !docker_ok(&[
            "exec",
            &id,
            "pg_isready",
            "-U",
            "fog_user",
            "-d",
            "fog_compute",
        ]) || self.try_sql("SELECT 1").is_none()
        {
            assert!(Instant::now() < deadline, "old postgres did not come up");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn try_sql(&self, sql: &str) -> Option<String> {
        let id = self.container("postgres");
        let out = docker_output(&[
            "exec",
            &id,
            "psql",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "fog_user",
            "-d",
            "fog_compute",
            "-c",
            sql,
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|| panic!("old psql failed: {sql}"))
    }
}

impl Drop for OldStack {
    fn drop(&mut self) {
        let network = format!("{}_legacy", self.project);
        common::remove_project(&self.project, &[&network], &self.dir);
        docker_output(&["rmi", &self.redis_image]);
    }
}

/// The volume's root and every entry below it with type, size, mode, owner
/// and link target, and every file's sha256; mounted read-only.
pub fn checksum(volume: &str) -> String {
    read_volume(
        volume,
        &format!(
            "stat -c '{STAT}' /v && {} && {SHA256_SCRIPT}",
            stat_script(STAT)
        ),
    )
}

pub const WRITE: &str = "CREATE TABLE nodes (id int PRIMARY KEY, name text NOT NULL, payload bytea);
INSERT INTO nodes SELECT g, 'node-' || g, sha256(g::text::bytea) FROM generate_series(1, 5000) g;
CREATE SCHEMA jobs;
CREATE TABLE jobs.runs (id bigserial PRIMARY KEY, node int REFERENCES nodes, note text, at timestamptz DEFAULT '2026-01-01');
INSERT INTO jobs.runs (node, note) SELECT (g % 5000) + 1, repeat('x', g % 50) FROM generate_series(1, 20000) g;
CREATE TABLE empty_one (x int);";

/// One fingerprint of every row of the written tables.
pub const FINGERPRINT: &str = "SELECT (SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM nodes t) || '/' || (SELECT count(*) || ':' || md5(string_agg(r::text, ',' ORDER BY id)) FROM jobs.runs r) || '/' || (SELECT count(*) FROM empty_one)";

pub fn new_stack(
    test: &str,
    slot: u16,
    env: &str,
    migrate: &str,
    prometheus_port: u16,
) -> Option<DataStack> {
    let overlay: &'static str = match env {
        "dev" => "compose/dev.yml",
        _ => "compose/betanet.yml",
    };
    let stack = DataStack::new(test, slot, &["compose/base.yml", overlay])?;
    let extra = format!(
        "PROMETHEUS_IMAGE={STUB_IMAGE}\nGRAFANA_IMAGE={STUB_IMAGE}\nLOKI_IMAGE={STUB_IMAGE}\nMIXNODE_IMAGE={STUB_IMAGE}\nMIGRATE_IMAGE={migrate}\n\
         PROMETHEUS_PORT={prometheus_port}\nGRAFANA_PORT={}\nLOKI_PORT={}\n",
        prometheus_port + 1,
        prometheus_port + 2
    );
    let mut env = fs::read_to_string(&stack.env_file).unwrap();
    env.push_str(&extra);
    fs::write(&stack.env_file, env).unwrap();
    Some(stack)
}

/// `xtask adopt ARGS` against the new environment, with `env` added.
pub fn adopt(stack: &DataStack, args: &[&str], env: &[(&str, &str)]) -> Output {
    stack.xtask_with(&[&["adopt"], args].concat(), env)
}
