//! `cargo xtask logs [SERVICE] [-f] [--tail N]`: service logs of the active
//! environment through Compose. An unknown service is a usage error that lists
//! the valid ones.
use anyhow::Result;
use xshell::Shell;

use crate::{engine::project::Project, process::Runner, usage_bail, Global};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask logs\n  cargo xtask logs postgres --tail 50\n  cargo xtask logs mixnode-2 -f"
)]
pub struct Cmd {
    /// One service; all services when omitted.
    service: Option<String>,
    /// Keep following new output.
    #[arg(short, long)]
    follow: bool,
    /// Lines to show from the end of each log.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let project = Project::open(global.dry_run, global.verbose)?;
        let environment = project.active_or_bail()?;
        let compose = project.compose(&environment);
        let tail = self.tail.map(|n| n.to_string());
        let mut args = vec!["logs", "--no-color"];
        if self.follow {
            args.push("--follow");
        }
        if let Some(tail) = &tail {
            args.extend(["--tail", tail]);
        }
        if let Some(service) = &self.service {
            let model = compose.model(&project.env)?;
            if model.service(service).is_none() {
                usage_bail!(
                    "no service `{service}` in environment {environment}; valid services: {}",
                    model.service_names().join(", ")
                );
            }
            args.push(service);
        }
        let cmd = compose.cmd(sh, &args);
        runner.stream(cmd)
    }
}
