//! The refusals adopt makes before it changes anything, and the port
//! conflicts it lists: a target volume that already holds data (unless
//! `--replace`), an old Postgres that is not running and cannot be started,
//! an old major version newer than the new server's, a source volume used by
//! a container of another project, a port of the environment held by
//! something other than the old stack, and an unfinished earlier adopt.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{bail, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use super::{inspect, journal::Journal, plan::How, Context};
use crate::engine::compose::published;
use crate::process::Runner;

/// What the checks found.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    /// Reasons to refuse; empty means go.
    pub refusals: Vec<String>,
    /// `port 5432: old postgres publishes it, new postgres wants it (freed by the stop)`.
    pub ports: Vec<String>,
    /// New volumes that hold data and will be backed up and emptied (`--replace`).
    pub replace: Vec<String>,
    /// The old Postgres container.
    pub old_postgres: Option<String>,
    /// `(old major, new major)`.
    pub versions: Option<(u32, u32)>,
}

impl Findings {
    /// A refusal as one error, the plan having been printed.
    pub fn refuse(&self) -> Result<()> {
        if self.refusals.is_empty() {
            return Ok(());
        }
        bail!(
            "adopt refused, nothing was changed: {}",
            self.refusals.join("; ")
        )
    }
}

pub fn run(sh: &Shell, runner: &Runner, ctx: &Context, replace: bool) -> Result<Findings> {
    let mut f = Findings::default();
    let journal = Journal::path(&ctx.dir, &ctx.old_project);
    if journal.is_file() {
        let j = Journal::read(&ctx.dir, &ctx.old_project)?;
        if !matches!(j.phase.as_str(), "rolled-back" | "failed") {
            f.refusals.push(format!(
                "project {} was already adopted into {} (phase `{}` in {}): run `cargo xtask adopt --rollback --project {}` first",
                ctx.old_project,
                j.environment,
                j.phase,
                journal.display(),
                ctx.old_project
            ));
        }
    }
    // Target volumes that hold data.
    for v in &ctx.plan.volumes {
        if !inspect::volume_exists(sh, runner, &v.new_name) {
            continue;
        }
        let figures = inspect::figures(sh, runner, &ctx.helper, &v.new_name)?;
        if figures.entries > 1 {
            if replace {
                f.replace.push(v.new_name.clone());
            } else {
                f.refusals.push(format!(
                    "target volume {} already holds data ({} entries, {} bytes): pass --replace to back it up into the set and replace it",
                    v.new_name, figures.entries, figures.bytes
                ));
            }
        }
    }
    // Source volumes used outside the old project.
    for v in &ctx.plan.volumes {
        for (name, project) in inspect::volume_users(sh, runner, &v.old_name)? {
            if project != ctx.old_project {
                f.refusals.push(format!(
                    "source volume {} is in use by container {name} outside project {}: stop and remove that container first",
                    v.old_name, ctx.old_project
                ));
            }
        }
        if !ctx.figures.contains_key(&v.old_name) {
            f.refusals
                .push(format!("source volume {} does not exist", v.old_name));
        }
    }
    // The old Postgres: running (or startable) and not newer than the new server.
    if let Some(pg) = &ctx.plan.postgres {
        let container = ctx
            .old_containers
            .iter()
            .find(|c| c.service == pg.service && !c.one_shot);
        match container {
            None => f.refusals.push(format!(
                "the old Postgres (service {}) has no container in project {}",
                pg.service, ctx.old_project
            )),
            Some(c) => {
                let mut running = c.is_running();
                // Start it only when nothing else refuses: a refusal changes nothing.
                if !running && !runner.dry_run && f.refusals.is_empty() {
                    let id = &c.id;
                    running = runner.run(cmd!(sh, "docker start {id}")).is_ok()
                        && wait_pg(sh, runner, id, &pg.user);
                }
                if !running && !runner.dry_run && f.refusals.is_empty() {
                    f.refusals.push(format!(
                        "the old Postgres (container {}) is not running and cannot be started: see `docker logs {}`",
                        c.name, c.name
                    ));
                } else if running {
                    f.old_postgres = Some(c.id.clone());
                    let old = inspect::container_major(sh, runner, &c.id)?;
                    let new = inspect::image_major(sh, runner, &ctx.helper)?;
                    f.versions = Some((old, new));
                    if old > new {
                        f.refusals.push(format!(
                            "the old database is PostgreSQL {old}, newer than the new server's {new} ({}): pg_restore cannot go back a major version; set POSTGRES_IMAGE to a {old} image",
                            ctx.helper
                        ));
                    }
                }
            }
        }
    }
    if ctx.plan.volumes.iter().any(|v| v.how == How::DumpRestore) && ctx.plan.postgres.is_none() {
        f.refusals
            .push("no old Postgres service found for the database volume".into());
    }
    // Ports.
    let old_ports: Vec<(u16, &str)> = ctx
        .old_containers
        .iter()
        .flat_map(|c| {
            c.ports
                .iter()
                .filter_map(|p| p.split("->").next()?.rsplit(':').next()?.parse().ok())
                .map(move |p: u16| (p, c.service.as_str()))
        })
        .collect();
    for svc in ctx.new_model.services() {
        for (ip, port, _) in published(svc) {
            if let Some((_, old)) = old_ports.iter().find(|(p, _)| *p == port) {
                f.ports.push(format!(
                    "port {port}: old {old} publishes it, new {} wants it (freed when the old stack stops)",
                    svc.name
                ));
                continue;
            }
            let addr: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            if TcpListener::bind((addr, port)).is_err() {
                let holder = crate::engine::ports::holder(sh, runner, port);
                if holder.contains(&ctx.project.name) {
                    continue;
                }
                f.ports.push(format!(
                    "port {port}: new {} wants it, {holder} holds it",
                    svc.name
                ));
                f.refusals.push(format!(
                    "port {ip}:{port} for new service {} is taken by {holder}: free it or set another port in {}",
                    svc.name,
                    ctx.project.env.path.display()
                ));
            }
        }
    }
    Ok(f)
}

/// Wait up to 60 s for `pg_isready` in container `id`.
pub fn wait_pg(sh: &Shell, runner: &Runner, id: &str, user: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if runner
            .probe(cmd!(sh, "docker exec {id} pg_isready -U {user}"))
            .is_some()
        {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    false
}
