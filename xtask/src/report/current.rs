//! `report --current`: the running stack's live usage against the limits its
//! containers really run with (`docker inspect`: `HostConfig.Memory`,
//! `NanoCpus`), one `docker stats --no-stream` sample, as a table or JSON.
//! A service above 80% of its memory limit is flagged. The stack is the
//! project of the env file (`COMPOSE_PROJECT_NAME`, `$FOG_ENV_FILE`) or `--project`.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use super::model::Unit;
use super::sampler::parse_line;
use super::units::{bytes, opt};
use crate::engine::containers;
use crate::process::Runner;

/// Share of the memory limit above which a container is flagged.
pub const FLAG_AT: f64 = 0.80;

/// One running container.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub service: String,
    pub container: String,
    pub memory_bytes: f64,
    /// `null` when the container has no memory limit.
    pub memory_limit_bytes: Option<u64>,
    pub memory_of_limit_percent: Option<f64>,
    pub cpu_percent: f64,
    /// CPUs the container may use; `null` without a limit.
    pub cpu_limit: Option<f64>,
    /// Above [`FLAG_AT`] of its memory limit.
    pub flagged: bool,
}

/// The whole `--current` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    pub project: String,
    pub memory_counting: String,
    pub containers: Vec<Row>,
    pub flagged: Vec<String>,
}

/// The project `--current` looks at.
pub fn project_name(explicit: Option<String>) -> Result<String> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let env = crate::dotenv::env_source(&crate::project_root())?;
    Ok(env.get("COMPOSE_PROJECT_NAME").unwrap_or("fog").to_string())
}

/// Measure the running project.
pub fn measure(sh: &Shell, runner: &Runner, project: &str) -> Result<Current> {
    let running: Vec<containers::Container> = containers::list(sh, runner, project)?
        .into_iter()
        .filter(|c| c.is_running())
        .collect();
    if running.is_empty() {
        bail!(
            "no running containers in compose project `{project}`: start it (`cargo xtask dev`) or name another with --project"
        );
    }
    let ids: Vec<&str> = running.iter().map(|c| c.id.as_str()).collect();
    let stats_ids = ids.clone();
    let format = "{{json .}}";
    let stats = runner.read(cmd!(
        sh,
        "docker stats --no-stream --format {format} {stats_ids...}"
    ))?;
    let readings: HashMap<String, super::sampler::Reading> =
        stats.lines().filter_map(parse_line).collect();
    let format = "{{.Name}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}";
    let inspected = runner.read(cmd!(sh, "docker inspect --format {format} {ids...}"))?;
    let limits = parse_limits(&inspected);
    let mut rows = Vec::new();
    for c in &running {
        let reading = readings
            .get(&c.name)
            .with_context(|| format!("docker stats gave no figures for {}", c.name))?;
        let (mem_limit, cpu_limit) = limits.get(&c.name).copied().unwrap_or((None, None));
        let share = mem_limit.map(|l| reading.memory / l as f64);
        rows.push(Row {
            service: c.service.clone(),
            container: c.name.clone(),
            memory_bytes: reading.memory,
            memory_limit_bytes: mem_limit,
            memory_of_limit_percent: share.map(|s| s * 100.0),
            cpu_percent: reading.cpu,
            cpu_limit,
            flagged: share.is_some_and(|s| s > FLAG_AT),
        });
    }
    let flagged = rows
        .iter()
        .filter(|r| r.flagged)
        .map(|r| r.service.clone())
        .collect();
    Ok(Current {
        project: project.to_string(),
        memory_counting: super::live::memory_counting(sh, runner),
        containers: rows,
        flagged,
    })
}

/// `/name memory nanocpus` lines -> name -> (memory limit, CPUs); 0 means none.
pub fn parse_limits(text: &str) -> HashMap<String, (Option<u64>, Option<f64>)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next()?.trim_start_matches('/').to_string();
            let memory: u64 = parts.next()?.parse().ok()?;
            let nano: u64 = parts.next()?.parse().ok()?;
            Some((
                name,
                (
                    (memory > 0).then_some(memory),
                    (nano > 0).then(|| nano as f64 / 1e9),
                ),
            ))
        })
        .collect()
}

/// The table form.
pub fn render(current: &Current) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Running stack `{}`\n", current.project);
    let _ = writeln!(out, "Memory is {}.\n", current.memory_counting);
    let _ = writeln!(
        out,
        "| service | container | memory | limit | of limit | CPU | CPU limit | |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in &current.containers {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {:.1}% | {} | {} |",
            r.service,
            r.container,
            bytes(r.memory_bytes),
            r.memory_limit_bytes
                .map_or("none".into(), |l| bytes(l as f64)),
            opt(Unit::Percent, r.memory_of_limit_percent),
            r.cpu_percent,
            r.cpu_limit.map_or("none".into(), |c| format!("{c:.2}")),
            if r.flagged {
                "⚠ above 80% of its memory limit"
            } else {
                ""
            }
        );
    }
    if !current.flagged.is_empty() {
        let _ = writeln!(
            out,
            "\nAbove 80% of the memory limit: {}.",
            current.flagged.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_inspect() {
        let l = parse_limits("/fog-postgres-1 1073741824 1000000000\n/fog-loki-1 0 0\ngarbage\n");
        assert_eq!(l["fog-postgres-1"], (Some(1 << 30), Some(1.0)));
        assert_eq!(l["fog-loki-1"], (None, None));
        assert_eq!(l.len(), 2);
    }
}
