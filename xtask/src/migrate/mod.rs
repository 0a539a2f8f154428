//! `cargo xtask migrate up|status|verify|new`: the migrations of `migrations/`
//! run where the database is. The `fog-compute/migrate` image (SQL embedded,
//! rebuilt when a file changes) runs as a one-off of the environment's
//! `migrate` service (`compose run --rm --no-deps migrate ...`), on the
//! environment's network with its credentials (the password secret in prod),
//! so no Postgres port is needed. For a Swarm stack (`--stack NAME`, or found
//! as [`Database::open`] finds it) the one-off is `docker run --rm` of the
//! same service on the stack's attachable overlay network, its variables
//! passed by name (no value on the command line) and its secrets bind-mounted
//! read-only from the files the stack's Swarm secrets were made from. `verify --schema` replays every migration on
//! a scratch database inside the same server and diffs `pg_dump
//! --schema-only` of both: exit 1 on drift. `new NAME` writes the next
//! `V<version>__<name>.sql`. `--dry-run` prints the pending SQL with the lock
//! and transaction plan.

mod schema;

use std::{fs, path::Path};

use crate::process::{self, Io};
use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::{
    compose::types::scalar_string,
    database::{Database, Location, Target},
    output::Format,
    process::Runner,
    usage_bail, Global,
};

/// The compose service that runs the image.
pub const SERVICE: &str = "migrate";

#[derive(clap::Args)]
#[command(after_help = "\
Files are named V<version>__<name>.sql (e.g. V0002__stats.sql); a first line
`-- no-transaction` runs a file outside a transaction (CREATE INDEX CONCURRENTLY).

Examples:
  cargo xtask migrate up
  cargo xtask --dry-run migrate up
  cargo xtask migrate status --format json
  cargo xtask migrate verify --schema
  cargo xtask migrate status --stack fog-prod   # a Swarm stack's database
  cargo xtask migrate new add_stats")]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
    /// Act on the database of this Swarm stack (its Postgres task on this
    /// node). Default: the compose project when it runs, else the stack named
    /// like it.
    #[arg(long, value_name = "NAME", global = true)]
    stack: Option<String>,
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
        let target = Target { stack: self.stack };
        let db = Database::open(sh, &runner, global, &target)?;
        ensure_image(sh, &runner)?;
        match self.action {
            Action::Up if global.dry_run => {
                let image = crate::image::docker::image_exists(sh, &runner, &image_of(&db)?);
                if !image {
                    bail!("the migrate image is not built yet, so the plan cannot be read: run `cargo xtask images build migrate`, then this again");
                }
                println!("{}", run_cmd(&db, &["up"])?.line());
                print_output(run_cmd(&db, &["up", "--dry-run"])?, &runner)
            }
            Action::Up => print_output(run_cmd(&db, &["up"])?, &runner),
            Action::Status { format } => {
                let args: &[&str] = if format == Format::Json {
                    &["status", "--json"]
                } else {
                    &["status"]
                };
                print_output(run_cmd(&db, args)?, &runner)
            }
            Action::Verify { schema } => {
                print_output(run_cmd(&db, &["verify"])?, &runner)?;
                if schema {
                    schema::verify(sh, &runner, &db)?;
                }
                Ok(())
            }
            Action::New { .. } => unreachable!("handled above"),
        }
    }
}

/// The environment's `migrate` service.
fn service(db: &Database) -> Result<&crate::compose::Service> {
    db.model
        .service(SERVICE)
        .filter(|s| s.image.is_some())
        .with_context(|| {
            format!(
                "environment {} has no `{SERVICE}` service with an image",
                db.environment
            )
        })
}

/// The image the environment's `migrate` service runs.
fn image_of(db: &Database) -> Result<String> {
    Ok(service(db)?.image.clone().unwrap_or_default())
}

/// Build the image unless its inputs (binary with the SQL) are unchanged.
pub fn ensure_image(sh: &Shell, runner: &Runner) -> Result<()> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    crate::image::build::ensure(sh, runner, SERVICE, false, progress).map(drop)
}

/// The one-off `migrate ARGS`: `compose run --rm --no-deps -T migrate ARGS`
/// for a compose project, `docker run --rm ... IMAGE ARGS` on the overlay
/// network for a stack.
pub fn run_cmd(db: &Database, args: &[&str]) -> Result<process::Cmd> {
    match &db.location {
        Location::Compose(compose) => {
            let sh = Shell::new()?;
            sh.change_dir(&db.project.root);
            let mut all = vec!["run", "--rm", "--no-deps", "-T", SERVICE];
            all.extend_from_slice(args);
            Ok(compose.cmd(&sh, &all).into())
        }
        Location::Stack(stack) => stack_one_off(&db.model, stack, args),
    }
}

/// `docker run --rm` of the model's `migrate` service beside `stack`: its
/// first network (the overlay of that name), user, hardening, variables
/// (by name: the values go through the client's environment) and secrets
/// (the secret files, read-only, where Swarm mounts them).
pub fn stack_one_off(
    model: &crate::compose::Project,
    stack: &str,
    args: &[&str],
) -> Result<process::Cmd> {
    let svc = model
        .service(SERVICE)
        .filter(|s| s.image.is_some())
        .with_context(|| format!("the model has no `{SERVICE}` service with an image"))?;
    let raw = &svc.raw;
    let network_key = svc.networks.first().cloned().unwrap_or("default".into());
    let network = model
        .section("networks")
        .and_then(|n| n.get(network_key.as_str()))
        .and_then(|n| n.get("name"))
        .map(scalar_string)
        .unwrap_or_else(|| format!("{stack}_{network_key}"));
    let mut cmd = process::Cmd::new("docker");
    cmd.args(["run", "--rm", "--network", &network]);
    cmd.args([
        "--label",
        &format!("{}={stack}", crate::swarm::assets::NAMESPACE_LABEL),
    ]);
    if let Some(user) = raw.get("user") {
        cmd.args(["--user", &scalar_string(user)]);
    }
    if raw.get("read_only").and_then(serde_yaml::Value::as_bool) == Some(true) {
        cmd.arg("--read-only");
    }
    for (key, flag) in [
        ("cap_drop", "--cap-drop"),
        ("security_opt", "--security-opt"),
    ] {
        for item in raw
            .get(key)
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
        {
            cmd.args([flag, &scalar_string(item)]);
        }
    }
    for (key, value) in &svc.environment {
        if let Some(value) = value {
            cmd.env(key, value);
        }
        cmd.args(["-e", key]);
    }
    for item in raw
        .get("secrets")
        .and_then(|v| v.as_sequence())
        .into_iter()
        .flatten()
    {
        let (source, target) = match item.as_mapping() {
            Some(m) => {
                let source = m.get("source").map(scalar_string).unwrap_or_default();
                let target = m.get("target").map(scalar_string);
                (source, target)
            }
            None => (scalar_string(item), None),
        };
        let file = model
            .section("secrets")
            .and_then(|s| s.get(source.as_str()))
            .and_then(|s| s.get("file"))
            .map(scalar_string)
            .with_context(|| {
                format!("service `{SERVICE}`: secret `{source}` has no `file:` in the model")
            })?;
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("/run/secrets/{t}"),
            None => format!("/run/secrets/{source}"),
        };
        cmd.args(["-v", &format!("{file}:{target}:ro")]);
    }
    cmd.arg(svc.image.as_deref().unwrap_or_default()).args(args);
    Ok(cmd)
}

/// Run a read-only one-off, passing its output through; a non-zero exit is an error.
fn print_output(mut cmd: process::Cmd, runner: &Runner) -> Result<()> {
    let status = runner
        .status(cmd.stdin(Io::Inherit))
        .context("running compose")?;
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
