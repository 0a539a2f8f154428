//! Bringing an environment up, shared by `dev`, `betanet`, `prod`, `up` and
//! `env use`: ensure `.env` (for prod strong secrets) and the secret files the
//! model declares, record the environment as active, create the networks, check the images
//! and host ports, run `compose up -d --remove-orphans --renew-anon-volumes`
//! (which also removes the containers of overlays no longer in use and keeps
//! named volumes), wait until every service is healthy, and print the URLs of
//! the published ports. The model comes from `crate::compose` (the one
//! `config` prints); Compose is only asked to act.
//!
//! Why `--renew-anon-volumes` on every `up`: when Compose v1 recreates a
//! container it copies each volume the *image* declares (`VOLUME
//! /var/lib/postgresql/data`) from the previous container, even when the new
//! model mounts a different named volume there ("Host mapping ... has no
//! effect"), so `env use betanet` after `dev` ran betanet's Postgres on
//! `postgres_dev_data`. With the flag neither flavour carries anything over:
//! every recreated container mounts exactly the volumes its merged model
//! names, so a switch never mixes data. Containers Compose does not recreate
//! are untouched, named volumes are kept, and the only cost is that an
//! anonymous volume (an image `VOLUME` the model maps nothing to; none in our
//! overlays) starts empty when its container is recreated, as it would on a
//! fresh machine. Removing the containers whose mounts change before `up`
//! would do the same with a second reading of the engine's state.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use xshell::Shell;

use crate::{
    compose::{Project as Model, Service},
    dotenv::{self, DotEnv},
    engine::{
        compose::{builds, published, ModelExt},
        containers, health, ports,
        project::Project,
    },
    environments::Environment,
    process::Runner,
    Global,
};

/// Flags shared by every command that brings an environment up.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Seconds to wait for every service to become healthy.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub timeout: u64,
    /// Use only the images already in the engine: build, pull and rewrite nothing.
    #[arg(long)]
    pub skip_images: bool,
    /// Leave out the summary and URL table (benchmarks).
    #[arg(skip)]
    pub quiet: bool,
}

/// What a bring-up did, for benchmarks and tests.
pub struct Outcome {
    pub started: Vec<String>,
    pub elapsed: Duration,
    /// Seconds per step: `images`, `prepare` (env, networks, model, ports),
    /// `up` (compose, including its own dependency waits), `health`.
    pub phases: Vec<(&'static str, f64)>,
}

/// Build or make offline the images `environment` needs, as [`bring_up`]
/// does first: for commands that need them before a bring-up (`adopt`
/// restores into the environment's Postgres image before starting the rest).
pub fn ensure_images(environment: &Environment, runner: &Runner) -> Result<()> {
    crate::image::ensure_for(environment, runner, true).map(|_| ())
}

/// Bring `environment` up and make it the active one.
pub fn bring_up(
    sh: &Shell,
    global: &Global,
    environment: &Environment,
    args: &UpArgs,
) -> Result<Outcome> {
    let began = Instant::now();
    let runner = Runner::new(global);
    let mut project = Project::open(global.dry_run, global.verbose)?;
    if environment.has("prod") {
        refuse_weak_secrets(&project.env)?;
    }
    project.record_active(environment, global.dry_run)?;
    project.link_compose_env(global.dry_run)?;
    project.ensure_networks(sh, &runner)?;

    let mut phases = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let images_began = Instant::now();
    if !args.skip_images {
        let report = crate::image::ensure_for(environment, &runner, !args.quiet)?;
        skipped = report.skipped_services;
        if !report.env_updates.is_empty() {
            project.env.reload()?;
        }
    }
    phases.push(("images", images_began.elapsed().as_secs_f64()));
    let compose = project.compose(environment);
    let model = compose.model(&project.env)?;
    write_secret_files(|k| project.env.get(k), &model, global.dry_run)?;
    let left_out = missing_images(sh, &runner, environment, &model, skipped)?;
    let services: Vec<&Service> = model
        .default_services()
        .into_iter()
        .filter(|s| !left_out.contains(&s.name))
        .collect();
    if services.is_empty() {
        bail!("environment {environment} has no service left to start");
    }
    let own: Vec<String> = containers::list(sh, &runner, &project.name)?
        .into_iter()
        .filter(|c| c.is_running())
        .flat_map(|c| c.ports)
        .collect();
    ports::check_free(sh, &runner, &project.env, &services, &own)?;

    let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    // `--renew-anon-volumes`: see the module comment (a switch never carries
    // a volume over from the previous container).
    let mut up = vec!["up", "-d", "--remove-orphans", "--renew-anon-volumes"];
    if !left_out.is_empty() {
        up.extend(names.iter().map(String::as_str));
    }
    let prepared = began.elapsed().as_secs_f64() - phases[0].1;
    phases.push(("prepare", prepared));
    let up_began = Instant::now();
    if let Err(err) = runner.run(compose.cmd(sh, &up)) {
        let timeout = Duration::from_secs(args.timeout);
        return Err(health::explain_up_failure(
            sh,
            &runner,
            &project.name,
            &names,
            timeout,
            err,
        ));
    }
    phases.push(("up", up_began.elapsed().as_secs_f64()));
    let waited = health::wait_ready(
        sh,
        &runner,
        &project.name,
        &names,
        Duration::from_secs(args.timeout),
    )?;
    phases.push(("health", waited.as_secs_f64()));
    if !global.dry_run && !args.quiet {
        let checked = services.iter().filter(|s| s.has_healthcheck()).count();
        eprintln!(
            "{environment} is up: {} service(s) ready, {checked} with a passing healthcheck, in {:.1}s (project {})",
            names.len(),
            began.elapsed().as_secs_f64(),
            project.name
        );
        print_urls(&project.env, &services);
    }
    Ok(Outcome {
        started: names,
        elapsed: began.elapsed(),
        phases,
    })
}

/// Services to leave out of `up`: those the images step skipped (no image and
/// none to be had offline) plus, with `--skip-images`, the services that have
/// no offline image and are missing. Any other missing image is an error
/// naming it, since nothing can be pulled here (a warning under `--dry-run`,
/// where the images step only printed its builds).
fn missing_images(
    _sh: &Shell,
    runner: &Runner,
    environment: &Environment,
    model: &Model,
    mut left_out: Vec<String>,
) -> Result<Vec<String>> {
    let no_offline_image = crate::image::unavailable_services(environment)?;
    let mut warned = !left_out.is_empty();
    for service in model.default_services() {
        let Some(image) = &service.image else {
            continue;
        };
        if left_out.contains(&service.name) {
            continue;
        }
        if crate::docker::image_exists(runner, image) {
            continue;
        }
        if no_offline_image.contains(&service.name) {
            left_out.push(service.name.clone());
            warned = false;
        } else if runner.dry_run {
            println!(
                "# image {image} for `{}` is not in the engine yet",
                service.name
            );
        } else if !builds(service) {
            bail!(
                "image {image} for service `{}` is not in the engine and cannot be pulled here: run `cargo xtask images build` (project images) or `cargo xtask images offline` (third-party)",
                service.name
            );
        }
    }
    if !left_out.is_empty() && !warned {
        eprintln!(
            "warning: leaving out {}: no image in the engine and none can be built offline (no Debian package)",
            left_out.join(", ")
        );
    }
    Ok(left_out)
}

/// Prod refuses placeholder, short, or example secrets, naming each variable.
fn refuse_weak_secrets(env: &DotEnv) -> Result<()> {
    let weak = env.weak_secrets();
    if weak.is_empty() {
        return Ok(());
    }
    bail!(
        "prod refuses weak secrets in {}: {}; set strong values (e.g. 32 random characters) or delete .env to regenerate it",
        env.path.display(),
        weak.join("; ")
    )
}

/// Write the file secrets the model declares (prod.yml's, and betanet's
/// `postgres_password` for the mixnodes in every environment), if missing: the value of the
/// matching variable (`postgres_password` <- `POSTGRES_PASSWORD`) or a fresh
/// random one, no trailing newline. Existing files are never overwritten.
/// Compose (without Swarm) bind-mounts them with their host mode and Grafana
/// reads its file as uid 472, so the files are 0644 inside a 0700 directory
/// (as compose/prod.yml documents): the directory keeps other users out.
/// `get` reads a variable (bring-up's `.env`, deploy's selection).
pub fn write_secret_files(
    get: impl Fn(&str) -> Option<String>,
    model: &Model,
    dry_run: bool,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (name, file) in &model.secret_files() {
        if file.exists() {
            continue;
        }
        let value = match get(&name.to_ascii_uppercase()).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => dotenv::random_secret(32)?,
        };
        if dry_run {
            println!(
                "# would write secret `{name}` to {} (0644 in a 0700 directory)",
                file.display()
            );
            continue;
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        crate::atomic::write(file, value.as_bytes(), 0o644)?;
        eprintln!("wrote secret `{name}` to {}", short(file));
    }
    Ok(())
}

fn short(path: &Path) -> String {
    path.strip_prefix(crate::project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A table of the URLs of published ports.
fn print_urls(env: &DotEnv, services: &[&Service]) {
    let rows: Vec<(String, String)> = services
        .iter()
        .flat_map(|s| {
            published(s).into_iter().map(move |(ip, port, _)| {
                let host = if ip == "0.0.0.0" { "127.0.0.1" } else { &ip };
                let url = if s.name == "postgres" {
                    format!(
                        "postgresql://{}@{host}:{}/{}",
                        env.get_or("POSTGRES_USER", "fog"),
                        port,
                        env.get_or("POSTGRES_DB", "fog")
                    )
                } else {
                    format!("http://{host}:{port}")
                };
                (s.name.clone(), url)
            })
        })
        .collect();
    if rows.is_empty() {
        println!("no published ports");
        return;
    }
    let width = rows.iter().map(|(s, _)| s.len()).max().unwrap_or(0).max(7);
    println!("{:width$}  URL", "SERVICE");
    for (service, url) in rows {
        println!("{service:width$}  {url}");
    }
}
