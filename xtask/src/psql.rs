//! `cargo xtask psql [--stack NAME] [-- ARGS]`: psql inside the active
//! environment's Postgres container, as the environment's user on its
//! database, so no client and no published port is needed on the host (prod
//! publishes none). [`crate::database`] finds the container: the compose
//! project's, or with `--stack NAME` a Swarm stack's Postgres task on this
//! node.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::database::{Database, Target};
use crate::process::{Io, Runner};
use crate::Global;

#[derive(clap::Args)]
#[command(after_help = "\
Arguments after `--` go to psql; stdin is passed through, so scripts work too.
With --stack, psql runs in the stack's Postgres task on this node (run it on the
node that holds the task; `docker service ps STACK_postgres` shows where it runs).

Examples:
  cargo xtask psql
  cargo xtask psql -- -c 'SELECT node_id, last_seen FROM mixnode_topology'
  cargo xtask psql -- -v ON_ERROR_STOP=1 < script.sql
  cargo xtask psql --stack fog-prod -- -c 'SELECT count(*) FROM fog_schema_history'")]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
    /// Arguments for psql (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let db = Database::open(sh, &runner, global, &self.target)?;
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let mut args: Vec<String> = vec!["psql".into(), "-U".into(), db.user.clone()];
        args.extend(["-d".into(), db.name.clone()]);
        args.extend(self.args);
        let mut cmd = db.exec(if tty { "-it" } else { "-i" }, &args);
        if runner.dry_run {
            println!("{}", cmd.line());
            return Ok(());
        }
        let status = runner
            .status(cmd.stdin(Io::Inherit))
            .context("running docker exec")?;
        if !status.success() {
            bail!("psql exited with {status}");
        }
        Ok(())
    }
}
