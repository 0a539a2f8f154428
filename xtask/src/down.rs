//! `cargo xtask down [--volumes [--yes]]`: stop and remove the active stack's
//! containers and its two networks. Volumes are kept unless `--volumes`, which
//! asks for confirmation on a terminal, needs `--yes` otherwise (exit 2 without).
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use xshell::{cmd, Shell};

use crate::{
    engine::{containers::PROJECT_LABEL, networks, project::Project},
    environments::Environment,
    process::Runner,
    usage_bail, Global,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask down\n  cargo xtask down --volumes --yes\n  cargo xtask --dry-run down"
)]
pub struct Cmd {
    /// Also delete the project's named volumes (all data). Asks first.
    #[arg(long)]
    volumes: bool,
    /// Do not ask before deleting volumes.
    #[arg(long, short)]
    yes: bool,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let project = Project::open(global.dry_run, global.verbose)?;
        if self.volumes && !self.yes && !global.dry_run {
            confirm(&project.name)?;
        }
        // With no recorded environment, base plus --remove-orphans still removes everything.
        let environment = match project.active()? {
            Some(env) => env,
            None => "base".parse::<Environment>()?,
        };
        let compose = project.compose(&environment);
        let mut args = vec!["down", "--remove-orphans"];
        if self.volumes {
            args.push("--volumes");
        }
        runner.run(compose.cmd(sh, &args))?;
        if self.volumes {
            // Compose deletes only the volumes the active files declare; the
            // project label finds those of overlays used earlier (e.g. mixnodes).
            let filter = format!("label={PROJECT_LABEL}={}", project.name);
            let left = runner.read(cmd!(sh, "docker volume ls -q --filter {filter}"))?;
            let left: Vec<&str> = left.lines().collect();
            if !left.is_empty() {
                runner.run_capture(cmd!(sh, "docker volume rm {left...}"))?;
            }
        }
        let wants = project.networks()?;
        if global.dry_run {
            // `compose down` did not run, so its containers are still
            // attached: print the removals it would leave to do.
            for n in networks::existing(sh, &runner)? {
                if n.project.as_deref() == Some(&project.name)
                    && wants.iter().any(|w| w.name == n.name)
                {
                    println!("docker network rm {}", n.name);
                }
            }
        } else {
            networks::remove(sh, &runner, &project.name, &wants)?;
        }
        if !global.dry_run {
            let kept = if self.volumes {
                "volumes deleted"
            } else {
                "volumes kept"
            };
            eprintln!("project {} is down ({kept})", project.name);
        }
        Ok(())
    }
}

fn confirm(project: &str) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        usage_bail!("`down --volumes` deletes every volume of project {project}: pass --yes to confirm (no terminal to ask on)");
    }
    eprint!("Delete all volumes (data) of project {project}? Type `yes` to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        usage_bail!("not confirmed; nothing was removed");
    }
    Ok(())
}
