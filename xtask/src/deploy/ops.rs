//! `deploy status|rm|rollback`: act on a deployed stack by name. `status`
//! shows each service's replicas, image, update state and its latest task
//! error (`--format json` too); `rm` runs `docker stack rm`, waits until the
//! stack's containers and networks are gone, and with `--volumes --yes` also
//! deletes its volumes on this node, so nothing of the stack is left;
//! `rollback` rolls every service (or one) back to its previous spec and
//! waits for convergence.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use super::{require_manager, Format, StackArg};
use crate::output::write_stdout;
use crate::process::Runner;
use crate::swarm::assets::NAMESPACE_LABEL;
use crate::swarm::converge::{self, Snapshot};
use crate::swarm::ONE_SHOT_LABEL;
use crate::{usage_bail, Global};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Action {
    /// Services, replicas, images, update state and the latest task errors.
    Status {
        #[command(flatten)]
        stack: StackArg,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Remove the stack; `--volumes --yes` also deletes its volumes (data).
    Rm {
        #[command(flatten)]
        stack: StackArg,
        /// Also delete the stack's named volumes on this node (all data).
        #[arg(long)]
        volumes: bool,
        /// Confirm `--volumes`.
        #[arg(long, short)]
        yes: bool,
        /// Seconds to wait for the stack's containers and networks to go.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
    /// Roll services back to their previous spec and wait for convergence.
    Rollback {
        #[command(flatten)]
        stack: StackArg,
        /// Only this service (compose name, e.g. mixnode-2).
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
    },
}

impl Action {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        require_manager(sh, &runner)?;
        match self {
            Action::Status { stack, format } => status(sh, &runner, &stack.resolve(None)?, format),
            Action::Rm {
                stack,
                volumes,
                yes,
                timeout,
            } => {
                if volumes && !yes && !global.dry_run {
                    usage_bail!(
                        "`deploy rm --volumes` deletes the stack's data: pass --yes to confirm"
                    );
                }
                rm(
                    sh,
                    &runner,
                    &stack.resolve(None)?,
                    volumes,
                    Duration::from_secs(timeout),
                )
            }
            Action::Rollback {
                stack,
                service,
                timeout,
            } => rollback(
                sh,
                &runner,
                &stack.resolve(None)?,
                service.as_deref(),
                Duration::from_secs(timeout),
            ),
        }
    }
}

/// The stack's services as compose names, and which of them are one-shots.
fn services(sh: &Shell, runner: &Runner, stack: &str) -> Result<(Vec<String>, Vec<String>)> {
    let filter = format!("label={NAMESPACE_LABEL}={stack}");
    let format = format!("{{{{.Spec.Name}}}}\t{{{{index .Spec.Labels \"{ONE_SHOT_LABEL}\"}}}}");
    let ids = runner.read(cmd!(sh, "docker service ls -q --filter {filter}"))?;
    let ids: Vec<&str> = ids.lines().collect();
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let lines = runner.read(cmd!(
        sh,
        "docker service inspect --format {format} {ids...}"
    ))?;
    let prefix = format!("{stack}_");
    let mut all = Vec::new();
    let mut one_shots = Vec::new();
    for line in lines.lines() {
        let (name, one_shot) = line.split_once('\t').unwrap_or((line, ""));
        let name = name.strip_prefix(&prefix).unwrap_or(name).to_string();
        if one_shot == "true" {
            one_shots.push(name.clone());
        }
        all.push(name);
    }
    all.sort();
    Ok((all, one_shots))
}

#[derive(serde::Serialize)]
struct Row {
    service: String,
    replicas: String,
    image: String,
    update: String,
    last_error: String,
}

fn rows(stack: &str, snap: &Snapshot, images: &str) -> Vec<Row> {
    let image_of = |full: &str| {
        images
            .lines()
            .find_map(|l| l.strip_prefix(full)?.strip_prefix('\t'))
            .unwrap_or_default()
            .to_string()
    };
    snap.replicas
        .iter()
        .map(|(full, (running, desired))| Row {
            service: full
                .strip_prefix(&format!("{stack}_"))
                .unwrap_or(full)
                .to_string(),
            replicas: format!("{running}/{desired}"),
            image: image_of(full),
            update: snap
                .updates
                .get(full)
                .map(|(s, m)| {
                    if m.is_empty() {
                        s.clone()
                    } else {
                        format!("{s}: {m}")
                    }
                })
                .unwrap_or_default(),
            last_error: snap
                .tasks
                .iter()
                .find(|t| t.service() == full && !t.error.is_empty())
                .map(|t| format!("{} {}: {}", t.name, t.current, t.error))
                .unwrap_or_default(),
        })
        .collect()
}

fn status(sh: &Shell, runner: &Runner, stack: &str, format: Format) -> Result<()> {
    let snap = converge::snapshot(sh, runner, stack)?;
    if snap.replicas.is_empty() {
        bail!("no stack `{stack}` on this swarm; deploy it with `cargo xtask deploy --env ENV --stack {stack}`");
    }
    let f = "{{.Name}}\t{{.Image}}";
    let images = runner
        .probe(cmd!(sh, "docker stack services --format {f} {stack}"))
        .unwrap_or_default();
    let rows = rows(stack, &snap, &images);
    if format == Format::Json {
        let doc = serde_json::json!({ "stack": stack, "services": rows });
        return write_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    }
    let w = rows
        .iter()
        .map(|r| r.service.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let iw = rows.iter().map(|r| r.image.len()).max().unwrap_or(0).max(5);
    let mut out = format!(
        "{:w$}  REPLICAS  {:iw$}  UPDATE / LAST ERROR\n",
        "SERVICE", "IMAGE"
    );
    for r in &rows {
        let tail = [r.update.as_str(), r.last_error.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        out.push_str(&format!(
            "{:w$}  {:8}  {:iw$}  {tail}\n",
            r.service, r.replicas, r.image
        ));
    }
    write_stdout(&out)
}

/// What of the stack is still on this node: containers, networks, and
/// (when `volumes`) volumes, as `kind name` lines.
pub fn leftovers(sh: &Shell, runner: &Runner, stack: &str, volumes: bool) -> Result<Vec<String>> {
    let filter = format!("label={NAMESPACE_LABEL}={stack}");
    let mut left = Vec::new();
    let mut kinds = vec![
        ("container", cmd!(sh, "docker ps -aq --filter {filter}")),
        (
            "network",
            cmd!(sh, "docker network ls -q --filter {filter}"),
        ),
        (
            "service",
            cmd!(sh, "docker service ls -q --filter {filter}"),
        ),
        ("secret", cmd!(sh, "docker secret ls -q --filter {filter}")),
        ("config", cmd!(sh, "docker config ls -q --filter {filter}")),
    ];
    if volumes {
        kinds.push(("volume", cmd!(sh, "docker volume ls -q --filter {filter}")));
    }
    for (kind, query) in kinds {
        for id in runner.read(query)?.lines() {
            left.push(format!("{kind} {id}"));
        }
    }
    Ok(left)
}

fn rm(sh: &Shell, runner: &Runner, stack: &str, volumes: bool, timeout: Duration) -> Result<()> {
    let filter = format!("label={NAMESPACE_LABEL}={stack}");
    if leftovers(sh, runner, stack, volumes)?.is_empty() {
        eprintln!("stack {stack}: nothing to remove");
        return Ok(());
    }
    runner.run(cmd!(sh, "docker stack rm {stack}"))?;
    if runner.dry_run {
        if volumes {
            println!("docker volume rm $(docker volume ls -q --filter {filter})");
        }
        return Ok(());
    }
    let started = Instant::now();
    // Containers stop, then Swarm removes the networks; volumes can only go
    // once no container uses them.
    loop {
        let left: Vec<String> = leftovers(sh, runner, stack, false)?;
        if left.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            bail!(
                "stack {stack}: still present after {}s: {}; run `cargo xtask deploy rm --stack {stack}` again",
                timeout.as_secs(),
                left.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if volumes {
        let ids = runner.read(cmd!(sh, "docker volume ls -q --filter {filter}"))?;
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            runner.run_capture(cmd!(sh, "docker volume rm {ids...}"))?;
        }
    }
    let kept = if volumes {
        "volumes deleted"
    } else {
        "volumes kept"
    };
    eprintln!(
        "stack {stack} removed in {:.1}s ({kept})",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rollback(
    sh: &Shell,
    runner: &Runner,
    stack: &str,
    only: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let (all, one_shots) = services(sh, runner, stack)?;
    if all.is_empty() {
        bail!("no stack `{stack}` on this swarm");
    }
    if let Some(s) = only {
        if !all.iter().any(|a| a == s) {
            usage_bail!(
                "--service {s}: stack {stack} has no such service; it has {}",
                all.join(", ")
            );
        }
    }
    let baseline: BTreeSet<String> = converge::task_ids(sh, runner, stack);
    let fmt = "{{if .PreviousSpec}}yes{{end}}";
    let mut rolled = Vec::new();
    for name in all.iter().filter(|n| only.is_none_or(|s| s == n.as_str())) {
        let full = format!("{stack}_{name}");
        let has_previous = runner
            .probe(cmd!(sh, "docker service inspect --format {fmt} {full}"))
            .is_some_and(|s| s == "yes");
        if !has_previous {
            continue;
        }
        runner.run_capture(cmd!(sh, "docker service rollback --detach {full}"))?;
        rolled.push(name.clone());
    }
    if rolled.is_empty() {
        eprintln!("stack {stack}: no service has a previous spec to roll back to");
        return Ok(());
    }
    let took = converge::wait(
        sh,
        runner,
        stack,
        &converge::Goal {
            services: &all,
            one_shots: &one_shots,
            baseline: &baseline,
            timeout,
            rolling_back: true,
        },
    )?;
    eprintln!(
        "stack {stack}: rolled back {} and converged in {:.1}s",
        rolled.join(", "),
        took.as_secs_f64()
    );
    Ok(())
}
