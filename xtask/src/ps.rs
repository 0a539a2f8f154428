//! `cargo xtask ps [--format table|json]`: the active project's containers
//! with state, health and published ports, found by the compose project label
//! (the same for Compose v1 and v2).
use anyhow::Result;
use xshell::Shell;

use crate::{
    dotenv::DotEnv,
    engine::{containers, Engine},
    process::Runner,
    Global,
};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask ps\n  cargo xtask ps --format json")]
pub struct Cmd {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let env = DotEnv::ensure(&crate::project_root(), global.dry_run)?;
        let project = env.get_or("COMPOSE_PROJECT_NAME", "fog");
        Engine::detect(global.verbose)?;
        let list = containers::list(sh, &runner, &project)?;
        if self.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        if list.is_empty() {
            println!("no containers in project {project} (start one with `cargo xtask dev`)");
            return Ok(());
        }
        let rows: Vec<[String; 4]> = list
            .iter()
            .map(|c| {
                let state = if c.state == "exited" {
                    format!("exited ({})", c.exit_code)
                } else {
                    c.state.clone()
                };
                [
                    c.service.clone(),
                    state,
                    c.health.clone().unwrap_or_else(|| "-".into()),
                    c.ports.join(", "),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::table::render(&["SERVICE", "STATE", "HEALTH", "PORTS"], &[], &rows)
        );
        Ok(())
    }
}
