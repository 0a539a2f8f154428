//! Container state of a compose project, found by the labels both Compose
//! flavours set (`com.docker.compose.project`, `com.docker.compose.service`)
//! rather than by name (v1 `fog_postgres_1`, v2 `fog-postgres-1`), and read
//! with one `docker inspect` for state, health and published ports.

use anyhow::{Context, Result};
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::process::Runner;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
/// Set in the overlays on a service that runs once and exits (`migrate`):
/// it is ready only once it exited 0.
pub const ONE_SHOT_LABEL: &str = "fog.one-shot";

/// One service container as the engine reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Container {
    pub service: String,
    pub name: String,
    pub id: String,
    /// `created`, `running`, `restarting`, `exited`, `dead`, ...
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`, or `None` without a healthcheck.
    pub health: Option<String>,
    /// The newest healthcheck run: its exit code and output, as the engine kept it.
    pub health_log: Option<String>,
    pub exit_code: i64,
    /// Times the engine restarted it under its restart policy.
    pub restart_count: i64,
    /// Published ports as `127.0.0.1:5433->5432/tcp`.
    pub ports: Vec<String>,
    /// Labelled [`ONE_SHOT_LABEL`]: running means not finished yet.
    pub one_shot: bool,
}

impl Container {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

/// IDs of every container (running or not) labelled with the project.
pub fn project_ids(sh: &Shell, runner: &Runner, project: &str) -> Result<Vec<String>> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let out = runner.read(cmd!(sh, "docker ps -a -q --no-trunc --filter {filter}"))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Every service container of the project (one-off `run` containers left out).
pub fn list(sh: &Shell, runner: &Runner, project: &str) -> Result<Vec<Container>> {
    let ids = project_ids(sh, runner, project)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // A container may vanish between `ps` and `inspect`; `probe` tolerates that
    // and a second round settles it.
    let text = match runner.probe(cmd!(sh, "docker inspect {ids...}")) {
        Some(text) => text,
        None => {
            let ids = project_ids(sh, runner, project)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            runner.read(cmd!(sh, "docker inspect {ids...}"))?
        }
    };
    let mut containers = parse_inspect(&text)?;
    containers.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
    Ok(containers)
}

/// Parse a `docker inspect` JSON array of containers.
pub fn parse_inspect(text: &str) -> Result<Vec<Container>> {
    let items: Vec<Value> =
        serde_json::from_str(text).context("cannot parse `docker inspect` output")?;
    let mut out = Vec::new();
    for item in items {
        let labels = &item["Config"]["Labels"];
        if labels[ONEOFF_LABEL].as_str() == Some("True") {
            continue;
        }
        let Some(service) = labels[SERVICE_LABEL].as_str() else {
            continue;
        };
        let mut ports = Vec::new();
        if let Some(map) = item["NetworkSettings"]["Ports"].as_object() {
            for (target, bindings) in map {
                for b in bindings.as_array().into_iter().flatten() {
                    let ip = b["HostIp"].as_str().unwrap_or("");
                    let port = b["HostPort"].as_str().unwrap_or("");
                    if !port.is_empty() {
                        ports.push(format!("{ip}:{port}->{target}"));
                    }
                }
            }
        }
        ports.sort();
        ports.dedup();
        out.push(Container {
            service: service.to_string(),
            name: item["Name"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string(),
            id: item["Id"].as_str().unwrap_or("").to_string(),
            state: item["State"]["Status"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            health: item["State"]["Health"]["Status"].as_str().map(String::from),
            health_log: last_health_check(&item["State"]["Health"]["Log"]),
            exit_code: item["State"]["ExitCode"].as_i64().unwrap_or(0),
            restart_count: item["RestartCount"].as_i64().unwrap_or(0),
            ports,
            one_shot: labels[ONE_SHOT_LABEL].as_str() == Some("true"),
        });
    }
    Ok(out)
}

/// The newest entry of `State.Health.Log`: "exit code N: output".
fn last_health_check(log: &Value) -> Option<String> {
    let last = log.as_array()?.last()?;
    let output = last["Output"].as_str().unwrap_or("").trim();
    let code = last["ExitCode"].as_i64().unwrap_or(0);
    Some(if output.is_empty() {
        format!("exit code {code}, no output")
    } else {
        format!("exit code {code}: {output}")
    })
}

/// The last `lines` log lines of a container, stdout and stderr together.
pub fn tail_logs(sh: &Shell, runner: &Runner, id: &str, lines: usize) -> String {
    let n = lines.to_string();
    runner
        .output(cmd!(sh, "docker logs --tail {n} {id}"))
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_health_and_ports() {
        let text = r#"[{"Id":"abc","Name":"/fog_postgres_1",
          "Config":{"Labels":{"com.docker.compose.service":"postgres"}},
          "State":{"Status":"running","ExitCode":0,"Health":{"Status":"healthy",
            "Log":[{"ExitCode":1,"Output":"old"},{"ExitCode":2,"Output":"no response\n"}]}},
          "NetworkSettings":{"Ports":{"5432/tcp":[{"HostIp":"127.0.0.1","HostPort":"15432"}],"9/tcp":null}}},
          {"Id":"def","Name":"/fog_loadgen_run_1",
          "Config":{"Labels":{"com.docker.compose.service":"loadgen","com.docker.compose.oneoff":"True"}},
          "State":{"Status":"exited","ExitCode":0}}]"#;
        let c = parse_inspect(text).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "fog_postgres_1");
        assert_eq!(c[0].health.as_deref(), Some("healthy"));
        assert_eq!(c[0].ports, ["127.0.0.1:15432->5432/tcp"]);
        assert_eq!(c[0].health_log.as_deref(), Some("exit code 2: no response"));
    }
}
