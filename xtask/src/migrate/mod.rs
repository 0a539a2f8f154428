//! `cargo xtask migrate up|status|verify|new`: the migrations of `migrations/`
//! run where the database is. The `fog-compute/migrate` image (SQL embedded,
//! rebuilt when a file changes) runs as a one-off of the environment's
//! `migrate` service (`compose run --rm --no-deps migrate ...`), on the
//! environment's network with its credentials (the password secret in prod),
//! so no Postgres port is needed. `verify --schema` replays every migration on
//! a scratch database inside the same server and diffs `pg_dump
//! --schema-only` of both: exit 1 on drift. `new NAME` writes the next
//! `V<version>__<name>.sql`. `--dry-run` prints the pending SQL with the lock
//! and transaction plan.

mod schema;

use std::{fs, path::Path};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::{process::Runner, psql::Database, usage_bail, Global};

/// The compose service that runs the image.
pub const SERVICE: &str = "migrate";

/// Output format of the data commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
#[command(after_help = "\
Files are named V<version>__<name>.sql (e.g. V0002__stats.sql); a first line
`-- no-transaction` runs a file outside a transaction (CREATE INDEX CONCURRENTLY).

Examples:
  cargo xtask migrate up
  cargo xtask --dry-run migrate up
  cargo xtask migrate status --format json
  cargo xtask migrate verify --schema
  cargo xtask migrate new add_stats")]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Apply pending migrations (under --dry-run: print the SQL and the plan).
    Up,
    /// A table of version, name, applied_at and checksum state.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Exit 1 unless every file is applied with its checksum.
    Verify {
        /// Also replay the migrations on a scratch database and diff the schemas.
        #[arg(long)]
        schema: bool,
    },
    /// Create migrations/V<next>__NAME.sql.
    New {
        /// Lowercase letters, digits and `_`, e.g. `add_stats`.
        name: String,
    },
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let dir = crate::project_root().join("migrations");
        // Bad file names, duplicate versions: caught before anything runs.
        let files =
            migrate::files::load_dir(&dir).map_err(|e| anyhow::anyhow!("migrations/{e}"))?;
        if let Action::New { name } = &self.action {
            return new_file(&dir, &files, name, global.dry_run);
        }
        let db = Database::open(sh, &runner, global)?;
        ensure_image(sh, &runner)?;
        match self.action {
            Action::Up if global.dry_run => {
                let image = crate::images::docker::image_exists(sh, &runner, &image_of(&db)?);
                if !image {
                    bail!("the migrate image is not built yet, so the plan cannot be read: run `cargo xtask images build migrate`, then this again");
                }
                println!("{}", crate::psql::render(&run_cmd(&db, &["up"])));
                print_output(run_cmd(&db, &["up", "--dry-run"]), &runner)
            }
            Action::Up => runner.run(xshell_cmd(sh, &db, &["up"])),
            Action::Status { format } => {
                let args: &[&str] = if format == Format::Json {
                    &["status", "--json"]
                } else {
                    &["status"]
                };
                print_output(run_cmd(&db, args), &runner)
            }
            Action::Verify { schema } => {
                print_output(run_cmd(&db, &["verify"]), &runner)?;
                if schema {
                    schema::verify(sh, &runner, &db)?;
                }
                Ok(())
            }
            Action::New { .. } => unreachable!("handled above"),
        }
    }
}

/// The image the environment's `migrate` service runs.
fn image_of(db: &Database) -> Result<String> {
    let env = crate::compose::EnvSource::with_process_env(Some(&db.project.env.path))?;
    let model = crate::config::Selection::named(db.environment.clone(), &env).load()?;
    model
        .service(SERVICE)
        .and_then(|s| s.image.clone())
        .with_context(|| {
            format!(
                "environment {} has no `{SERVICE}` service with an image",
                db.environment
            )
        })
}

/// Build the image unless its inputs (binary with the SQL) are unchanged.
pub fn ensure_image(sh: &Shell, runner: &Runner) -> Result<()> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    crate::images::build::ensure(sh, runner, SERVICE, false, progress).map(drop)
}

/// `compose run --rm --no-deps -T migrate ARGS`, as a std command.
pub fn run_cmd(db: &Database, args: &[&str]) -> std::process::Command {
    let sh = Shell::new().expect("a shell");
    xshell_cmd(&sh, db, args).into()
}

fn xshell_cmd<'a>(sh: &'a Shell, db: &Database, args: &[&str]) -> xshell::Cmd<'a> {
    sh.change_dir(&db.project.root);
    let mut all = vec!["run", "--rm", "--no-deps", "-T", SERVICE];
    all.extend_from_slice(args);
    db.compose.cmd(sh, &all)
}

/// Run a read-only one-off, passing its output through; a non-zero exit is an error.
fn print_output(mut cmd: std::process::Command, runner: &Runner) -> Result<()> {
    if runner.verbose {
        eprintln!("+ {}", crate::psql::render(&cmd));
    }
    let status = cmd.status().context("running compose")?;
    if !status.success() {
        bail!("the migrate service exited with {status} (its message is above)");
    }
    Ok(())
}

fn new_file(dir: &Path, files: &[migrate::Migration], name: &str, dry_run: bool) -> Result<()> {
    let file = match migrate::files::next_file(files, name) {
        Ok(file) => file,
        Err(e) => usage_bail!("migration name `{name}`: {e}"),
    };
    let path = dir.join(&file);
    if dry_run {
        println!("# write {}", path.display());
        return Ok(());
    }
    let text = format!("-- {file}: describe the change here.\n-- Applied once, in its own transaction with its history row;\n-- make the first line `-- no-transaction` for CREATE INDEX CONCURRENTLY.\n\n");
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("created migrations/{file}");
    Ok(())
}
