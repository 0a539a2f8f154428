//! `cargo xtask deploy`: the same environments on Docker Swarm. `deploy --env
//! ENV [--stack NAME]` loads the merged model (the one `cargo xtask config`
//! prints), renders it into a stack file (`swarm::render`: every key Swarm ignores
//! or rejects is translated or reported), builds or checks the images and
//! pins them by digest where a registry digest is known, creates the Swarm
//! secrets and configs (`swarm::assets`), runs `docker stack deploy` and waits
//! until every task runs and is healthy (`swarm::converge`), naming the failing
//! task and its error otherwise. `deploy status|rm|rollback` ([`ops`]) act on
//! a deployed stack; [`crate::swarm`] holds the rendering and
//! the convergence wait, shared with `check --target swarm` and `migrate`.

mod ops;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::compose::Project;
use crate::output::write_stdout;
use crate::process::Runner;
use crate::selection::SourceArgs;
use crate::swarm::{assets, converge, render, validate_stack};
use crate::{usage_bail, Global};
use render::{Action, Options, Plan};

/// Deploy an environment to Docker Swarm, or act on a deployed stack.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
The engine must be a swarm manager (`docker swarm init`). Nothing is pulled unless the images
name a registry: locally built images are used as they are, images with a registry digest are
pinned to it. Ports bound to one host IP (127.0.0.1:...) are left out, since Swarm publishes on
every interface; --publish publishes them on every interface. Services reach each other by
their compose names on the overlay networks, which are attachable (`docker run --network`).

Examples:
  cargo xtask deploy --env betanet
  cargo xtask deploy --env prod+betanet --stack fog-prod --replicas mixnode=2
  cargo xtask deploy --env betanet --print          # the stack file and what was translated
  cargo xtask deploy status --stack fog-prod --format json
  cargo xtask deploy rollback --stack fog-prod
  cargo xtask deploy rm --stack fog-prod --volumes --yes
  cargo xtask check --env betanet --target swarm      # what a Swarm deploy would drop"
)]
pub struct Cmd {
    #[command(subcommand)]
    action: Option<ops::Action>,
    #[command(flatten)]
    args: DeployArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DeployArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    stack: StackArg,
    /// Replicas of a service or role, e.g. `mixnode=3` (every mixnode-N),
    /// `entry=2` (by NODE_TYPE) or `mixnode-2=2`. Repeatable.
    #[arg(long, value_name = "ROLE=N", value_parser = parse_replicas)]
    replicas: Vec<(String, u64)>,
    /// A placement constraint for a service or role, e.g.
    /// `mixnode=node.labels.fog.mix==true`. Repeatable.
    #[arg(long, value_name = "ROLE=CONSTRAINT", value_parser = parse_placement)]
    placement: Vec<(String, String)>,
    /// Publish host-IP ports on every interface (Swarm cannot bind one IP).
    #[arg(long)]
    publish: bool,
    /// How service names resolve: `dnsrr` (task addresses, as with Compose;
    /// needs no IPVS) or `vip` (Swarm's virtual IPs and ingress mesh).
    #[arg(long, value_enum, default_value = "dnsrr")]
    endpoint_mode: render::EndpointMode,
    /// Print the stack file and the translation notes; deploy nothing.
    #[arg(long)]
    print: bool,
    /// Use only the images already in the engine: build and rewrite nothing.
    #[arg(long)]
    skip_images: bool,
    /// Seconds to wait for the stack to converge.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `--stack NAME`, shared by every deploy action.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StackArg {
    /// Stack name (default: COMPOSE_PROJECT_NAME from the env file, else `fog`).
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
}

impl StackArg {
    /// The stack name, validated.
    pub fn resolve(&self, project: Option<&Project>) -> Result<String> {
        let name = match (&self.stack, project) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => p
                .env()
                .get("COMPOSE_PROJECT_NAME")
                .unwrap_or("fog")
                .to_string(),
            (None, None) => crate::dotenv::env_source(&crate::project_root())?
                .get("COMPOSE_PROJECT_NAME")
                .unwrap_or("fog")
                .to_string(),
        };
        validate_stack(&name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn parse_replicas(s: &str) -> Result<(String, u64), String> {
    let (role, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: use ROLE=N, e.g. mixnode=3"))?;
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n <= 100)
        .ok_or_else(|| format!("`{s}`: N must be a whole number from 0 to 100"))?;
    if role.is_empty() {
        return Err(format!("`{s}`: name a service or role before `=`"));
    }
    Ok((role.to_string(), n))
}

fn parse_placement(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((role, c)) if !role.is_empty() && (c.contains("==") || c.contains("!=")) => {
            Ok((role.to_string(), c.to_string()))
        }
        _ => Err(format!(
            "`{s}`: use ROLE=CONSTRAINT, e.g. mixnode=node.labels.fog.mix==true"
        )),
    }
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        match self.action {
            Some(action) => action.run(sh, global),
            None => deploy(sh, global, &self.args).map(|_| ()),
        }
    }
}

/// What a deploy did, for the summary, tests and benchmarks.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub stack: String,
    pub services: Vec<String>,
    /// Seconds from `docker stack deploy` to converged.
    pub converged_seconds: f64,
    /// Seconds of the whole command (images, render, assets, deploy, wait).
    pub total_seconds: f64,
    pub notes: Vec<render::Note>,
}

/// The engine must be an active swarm manager.
pub fn require_manager(sh: &Shell, runner: &Runner) -> Result<()> {
    let format = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}";
    let state = runner.read(cmd!(sh, "docker info --format {format}"))?;
    if state.trim() != "active true" && runner.dry_run {
        println!(
            "# this engine is not a swarm manager (swarm state: {}); a real run stops here",
            state.trim()
        );
    } else if state.trim() != "active true" {
        bail!(
            "this Docker engine is not a swarm manager (swarm state: {}); run `docker swarm init --advertise-addr IP` or point DOCKER_HOST at a manager",
            state.trim()
        );
    }
    Ok(())
}

pub fn deploy(sh: &Shell, global: &Global, args: &DeployArgs) -> Result<Outcome> {
    let began = Instant::now();
    let runner = Runner::new(global);
    if args.source.env.is_none() && args.source.file.is_empty() {
        usage_bail!("deploy needs --env ENV (e.g. --env betanet) or -f FILE...");
    }
    let mut selection = args.source.selections(&[])?.remove(0);
    let mut project = render::with_swarm_overlay(&selection.load()?)?;
    let stack = args.stack.resolve(Some(&project))?;
    let mut opts = Options {
        stack: stack.clone(),
        replicas: args.replicas.clone(),
        publish: args.publish,
        endpoint_mode: args.endpoint_mode,
        placement: args.placement.clone(),
        environment: selection.environment.as_ref().map(|e| e.to_string()),
        ..Options::default()
    };
    if args.print {
        // Printing deploys nothing: a secret file not written yet (betanet's
        // `postgres_password` before the first bring-up) is a note.
        opts.lenient = true;
        let plan = render::render(&project, &opts)?;
        print_notes(&plan);
        return write_stdout(&plan.to_yaml()).map(|()| Outcome {
            stack,
            services: plan.services,
            converged_seconds: 0.0,
            total_seconds: began.elapsed().as_secs_f64(),
            notes: plan.notes,
        });
    }
    require_manager(sh, &runner)?;
    // The secret files the model declares (betanet's `postgres_password` for
    // the mixnodes), written as bring-up writes them when missing.
    crate::bringup::write_secret_files(
        |k| selection.env.get(k).map(String::from),
        &project,
        global.dry_run,
    )?;
    // A dry run only said it would write them.
    opts.lenient |= global.dry_run;
    if let (Some(environment), false) = (&selection.environment, args.skip_images) {
        let report = crate::image::ensure_for(environment, &runner, args.format == Format::Text)?;
        if !report.env_updates.is_empty() {
            // The images step pointed image variables at offline builds.
            selection = args.source.selections(&[])?.remove(0);
            project = render::with_swarm_overlay(&selection.load()?)?;
        }
    }
    resolve_images(
        sh,
        &runner,
        &project,
        selection.environment.as_ref(),
        &mut opts,
    )?;
    let plan = render::render(&project, &opts)?;
    if args.format == Format::Text {
        print_notes(&plan);
    }
    let file = stack_file(&stack);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The file holds interpolated values (DATABASE_URL): owner-only.
    crate::atomic::write(&file, plan.to_yaml().as_bytes(), 0o600)?;
    let baseline = converge::task_ids(sh, &runner, &stack);
    assets::create(sh, &runner, &stack, &plan.secrets)?;
    assets::create(sh, &runner, &stack, &plan.configs)?;
    let deploy_began = Instant::now();
    // Its progress lines go to stderr: stdout stays for `--format json`.
    let said = runner.run_capture(cmd!(
        sh,
        "docker stack deploy --prune --resolve-image never -c {file} {stack}"
    ))?;
    if !said.is_empty() && args.format == Format::Text {
        eprintln!("{said}");
    }
    converge::wait(
        sh,
        &runner,
        &stack,
        &converge::Goal {
            services: &plan.services,
            one_shots: &plan.one_shots,
            baseline: &baseline,
            timeout: Duration::from_secs(args.timeout),
            rolling_back: false,
        },
    )?;
    let converged = deploy_began.elapsed().as_secs_f64();
    let mut keep = plan.secrets.clone();
    keep.extend(plan.configs.iter().cloned());
    assets::prune(sh, &runner, &stack, &keep)?;
    let outcome = Outcome {
        stack: stack.clone(),
        services: plan.services,
        converged_seconds: converged,
        total_seconds: began.elapsed().as_secs_f64(),
        notes: plan.notes,
    };
    match args.format {
        Format::Json => write_stdout(&format!("{}\n", serde_json::to_string_pretty(&outcome)?))?,
        Format::Text if !global.dry_run => eprintln!(
            "stack {stack} converged: {} service(s) running and healthy {converged:.1}s after `docker stack deploy` ({:.1}s in all); stack file {}",
            outcome.services.len(),
            outcome.total_seconds,
            file.display()
        ),
        Format::Text => {}
    }
    Ok(outcome)
}

/// Where the rendered stack file of `stack` is written (gitignored `target/`).
pub fn stack_file(stack: &str) -> PathBuf {
    crate::project_root()
        .join("target/deploy")
        .join(format!("{stack}.yml"))
}

/// Pin images that carry a registry digest; leave out the services whose
/// image is missing and cannot be built offline; fail on any other missing
/// image (a swarm pulls nothing that is not in a registry).
fn resolve_images(
    sh: &Shell,
    runner: &Runner,
    project: &Project,
    environment: Option<&crate::environments::Environment>,
    opts: &mut Options,
) -> Result<()> {
    let no_offline = environment
        .map(crate::image::unavailable_services)
        .transpose()?
        .unwrap_or_default();
    let format = "{{join .RepoDigests \" \"}}";
    let mut missing = BTreeMap::new();
    for svc in project.services() {
        let Some(image) = &svc.image else { continue };
        if !svc.profiles.is_empty() {
            continue;
        }
        // A service scaled to 0 (`--replicas NAME=0`) runs no task and pulls nothing.
        let scaled_to_zero = opts
            .replicas
            .iter()
            .rev()
            .find(|(role, _)| render::matches_role(project, &svc.name, role))
            .is_some_and(|(_, n)| *n == 0);
        if scaled_to_zero {
            continue;
        }
        let mut found = crate::docker::inspect_image(runner, image, format);
        if found.is_none() && names_registry(image) {
            // A registry image: the manager pulls it, which also gives its digest.
            runner.run_capture(cmd!(sh, "docker pull -q {image}"))?;
            found = crate::docker::inspect_image(runner, image, format);
        }
        match found {
            Some(digests) => {
                if let Some(pinned) = pin(image, &digests) {
                    opts.pinned.insert(image.clone(), pinned);
                }
            }
            None if no_offline.contains(&svc.name) => {
                opts.left_out.insert(
                    svc.name.clone(),
                    format!("image {image} is not in the engine and has no offline build (no Debian package)"),
                );
            }
            None => {
                missing.insert(svc.name.clone(), image.clone());
            }
        }
    }
    if let Some((service, image)) = missing.into_iter().next() {
        if runner.dry_run {
            println!("# image {image} for `{service}` is not in the engine");
        } else {
            bail!(
                "image {image} for service `{service}` is not in the engine: run `cargo xtask images build` (project images) or `cargo xtask images offline` (third-party), or push it to a registry every node can reach"
            );
        }
    }
    Ok(())
}

/// Whether `image` names a registry host (`host:port/...`, `registry.example/...`).
pub fn names_registry(image: &str) -> bool {
    image
        .split_once('/')
        .is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

/// `repo@sha256:...` for `image` from `docker image inspect`'s RepoDigests.
pub fn pin(image: &str, repo_digests: &str) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let repo = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    repo_digests
        .split_whitespace()
        .find(|d| d.split_once('@').is_some_and(|(r, _)| r == repo))
        .map(str::to_string)
}

/// One stderr line per translated, dropped or left-out key.
fn print_notes(plan: &Plan) {
    for n in &plan.notes {
        let what = match n.action {
            Action::Translated => "translated",
            Action::Dropped => "dropped",
            Action::LeftOut => "left out",
        };
        let at =
            n.at.as_ref()
                .map(|l| {
                    let file = l
                        .file
                        .strip_prefix(crate::project_root())
                        .unwrap_or(&l.file);
                    match l.line {
                        Some(line) => format!("{}:{line}: ", file.display()),
                        None => format!("{}: ", file.display()),
                    }
                })
                .unwrap_or_default();
        let svc = n
            .service
            .as_ref()
            .map(|s| format!("service `{s}` "))
            .unwrap_or_default();
        eprintln!("{at}swarm {what}: {svc}{}: {}", n.key, n.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_flag_and_digest_pinning() {
        assert_eq!(parse_replicas("mixnode=3").unwrap(), ("mixnode".into(), 3));
        assert!(parse_replicas("mixnode").unwrap_err().contains("ROLE=N"));
        assert!(parse_replicas("mixnode=-1").is_err());
        assert!(parse_replicas("=2").is_err());
        assert!(parse_replicas("x=1000").is_err());
        assert_eq!(
            parse_placement("mixnode=node.labels.fog.mix==true").unwrap(),
            ("mixnode".into(), "node.labels.fog.mix==true".into())
        );
        assert!(parse_placement("mixnode=node1").is_err());
        let digests = "127.0.0.1:52500/fog/mixnode@sha256:aa other/repo@sha256:bb";
        assert_eq!(
            pin("127.0.0.1:52500/fog/mixnode:0.1.0", digests).as_deref(),
            Some("127.0.0.1:52500/fog/mixnode@sha256:aa")
        );
        assert_eq!(pin("fog-compute/mixnode:0.1.0", ""), None);
        assert!(names_registry("127.0.0.1:52500/fog/mixnode:1"));
        assert!(names_registry("registry.example/x"));
        assert!(!names_registry("fog-compute/mixnode:0.1.0"));
        assert!(!names_registry("postgres:15"));
        assert_eq!(pin("x@sha256:cc", digests), None);
        assert_eq!(
            pin("other/repo", digests).as_deref(),
            Some("other/repo@sha256:bb")
        );
    }
}
