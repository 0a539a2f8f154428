//! `cargo xtask restart SERVICE`: restart one service of the active
//! environment and wait until it is healthy again. An unknown service is a
//! usage error (exit 2) that lists the valid ones.
use std::time::Duration;

use anyhow::Result;
use xshell::Shell;

use crate::{
    engine::{containers, health, project::Project},
    process::Runner,
    usage_bail, Global,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask restart postgres\n  cargo xtask restart mixnode-2 --timeout 60"
)]
pub struct Cmd {
    /// The service to restart.
    service: String,
    /// Seconds to wait for the service to become healthy again.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let project = Project::open(global.dry_run, global.verbose)?;
        let environment = project.active_or_bail()?;
        let compose = project.compose(&environment);
        let model = compose.model(&project.env)?;
        if model.service(&self.service).is_none() {
            usage_bail!(
                "no service `{}` in environment {environment}; valid services: {}",
                self.service,
                model.service_names().join(", ")
            );
        }
        let running = containers::list(sh, &runner, &project.name)?
            .iter()
            .any(|c| c.service == self.service);
        if !running {
            usage_bail!(
                "service `{}` has no container in project {} (left out, or the stack is down): start it with `cargo xtask env use {environment}`",
                self.service,
                project.name
            );
        }
        runner.run(compose.cmd(sh, &["restart", &self.service]))?;
        let waited = health::wait_ready(
            sh,
            &runner,
            &project.name,
            std::slice::from_ref(&self.service),
            Duration::from_secs(self.timeout),
        )?;
        if !global.dry_run {
            eprintln!(
                "{} restarted and ready in {:.1}s",
                self.service,
                waited.as_secs_f64()
            );
        }
        Ok(())
    }
}
