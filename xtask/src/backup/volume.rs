//! `backup volume NAME`: a named volume of the environment (Grafana,
//! Prometheus, mixnode keys and data, ...), by its overlay name
//! (`grafana_data`) or the engine's (`fog_grafana_data`). The tar stream
//! comes out of the engine with `docker cp` from a created, never started
//! container that mounts the volume read-only, using an image the
//! environment already has (nothing is pulled); gzip (flate2) and sha256 run
//! on the host in one pass, into `<project>-volume-<name>-<stamp>.tar.gz` with
//! the same `.sha256` and manifest as a database backup. Modes, owners and
//! symlinks are kept (they are in the tar stream). [`check_archive`] reads a
//! whole archive and refuses absolute paths, `..` and links that escape.

use std::{
    path::{Component, Path},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::{archive, postgres::Written, stream};
use crate::{
    compose::EnvSource, config::Selection, engine::project::Project, process::Runner, usage_bail,
    Global,
};

/// Services stopped for a consistent copy; started again on drop, also after
/// an error or Ctrl-C (the handler only sets a flag, so the copy fails and
/// unwinds through here).
pub struct Restart {
    compose: crate::engine::compose::Compose,
    runner: Runner,
    services: Vec<String>,
}

impl Restart {
    pub fn stop(
        compose: crate::engine::compose::Compose,
        runner: &Runner,
        services: Vec<String>,
    ) -> Result<Restart> {
        // Ctrl-C then stops only the copy (its child gets the signal), and
        // the drop below runs.
        let _ = ctrlc::set_handler(|| {
            eprintln!("interrupted: stopping the copy, then starting the services again")
        });
        let restart = Restart {
            compose,
            runner: *runner,
            services,
        };
        if !restart.services.is_empty() {
            let sh = Shell::new()?;
            sh.change_dir(crate::project_root());
            let mut args = vec!["stop"];
            args.extend(restart.services.iter().map(String::as_str));
            runner.run(restart.compose.cmd(&sh, &args))?;
        }
        Ok(restart)
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        if self.services.is_empty() {
            return;
        }
        let Ok(sh) = Shell::new() else { return };
        sh.change_dir(crate::project_root());
        let mut args = vec!["start"];
        args.extend(self.services.iter().map(String::as_str));
        if let Err(e) = self.runner.run(self.compose.cmd(&sh, &args)) {
            eprintln!(
                "warning: could not start {} again: {e:#}; run `cargo xtask restart SERVICE`",
                self.services.join(", ")
            );
        } else if !self.runner.dry_run {
            eprintln!("started {} again", self.services.join(", "));
        }
    }
}

/// A helper container, removed on drop with its anonymous volumes (an image
/// that declares a `VOLUME`, like Postgres', gives every container one).
pub struct Helper(pub String);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .output();
    }
}

/// The project, its active environment, its compose model, and each volume's
/// `(overlay name, engine name)`.
pub type Volumes = (
    Project,
    crate::environments::Environment,
    crate::compose::Project,
    Vec<(String, String)>,
);

/// The overlay names of the environment's volumes and their engine names.
pub fn volumes(global: &Global) -> Result<Volumes> {
    let project = Project::open(global.dry_run, global.verbose)?;
    let environment = project.active_or_bail()?;
    let env = EnvSource::with_process_env(Some(&project.env.path))?;
    let model = Selection::named(environment.clone(), &env).load()?;
    let pairs = model
        .volume_names()
        .into_iter()
        .map(|overlay| {
            let engine = model
                .section("volumes")
                .and_then(|v| v.get(overlay.as_str()))
                .and_then(|v| v.get("name"))
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("{}_{overlay}", project.name), str::to_string);
            (overlay, engine)
        })
        .collect();
    Ok((project, environment, model, pairs))
}

/// Whether the engine has volume `name`.
pub fn exists(sh: &Shell, name: &str) -> bool {
    Runner::default()
        .probe(xshell::cmd!(sh, "docker volume inspect {name}"))
        .is_some()
}

/// The running services of `project` that mount volume `overlay`.
pub fn running_users(
    sh: &Shell,
    runner: &Runner,
    project: &Project,
    model: &crate::compose::Project,
    overlay: &str,
) -> Result<Vec<String>> {
    let users: Vec<String> = model
        .services()
        .iter()
        .filter(|s| {
            s.volumes
                .iter()
                .any(|m| m.source.as_deref() == Some(overlay))
        })
        .map(|s| s.name.clone())
        .collect();
    Ok(crate::engine::containers::list(sh, runner, &project.name)?
        .into_iter()
        .filter(|c| c.is_running() && users.contains(&c.service))
        .map(|c| c.service)
        .collect())
}

/// Back up volume `name` of the active environment into `dir`.
pub fn backup(
    sh: &Shell,
    runner: &Runner,
    global: &Global,
    name: &str,
    dir: &Path,
    stop: bool,
    progress: bool,
) -> Result<Option<Written>> {
    let (project, environment, model, pairs) = volumes(global)?;
    let Some((overlay, volume)) = pairs.iter().find(|(o, e)| o == name || e == name).cloned()
    else {
        let names: Vec<&str> = pairs.iter().map(|(o, _)| o.as_str()).collect();
        usage_bail!(
            "no volume `{name}` in environment {environment}; volumes: {}",
            names.join(", ")
        );
    };
    let overlay = &overlay;
    if !exists(sh, &volume) {
        usage_bail!("volume {volume} does not exist yet (the environment never started the services that use it)");
    }
    // With --stop: the running services that mount it, started again by the guard.
    let _restart = if stop {
        let running = running_users(sh, runner, &project, &model, overlay)?;
        Some(Restart::stop(
            project.compose(&environment),
            runner,
            running,
        )?)
    } else {
        None
    };
    let image = model
        .services()
        .iter()
        .filter_map(|s| s.image.clone())
        .find(|i| crate::images::docker::image_exists(sh, runner, i))
        .context("no image of the environment is in the engine to lend a helper container: run `cargo xtask images build` or bring the environment up once")?;
    let created_at = crate::images::build::rfc3339_now();
    let file = super::encrypt::archive_name(format!(
        "{}-volume-{overlay}-{}.tar.gz",
        project.name,
        archive::stamp(&created_at)
    ));
    let path = dir.join(&file);
    let helper = format!(
        "fogvol-{}-{}",
        std::process::id(),
        archive::stamp(&created_at).to_lowercase()
    );
    let mount = format!("{volume}:/volume:ro");
    if runner.dry_run {
        println!("docker create --name {helper} --network none -v {mount} {image}");
        println!("docker cp {helper}:/volume/. - | gzip > {}", path.display());
        println!("docker rm -f -v {helper}");
        return Ok(None);
    }
    archive::create_dir(dir)?;
    let started = Instant::now();
    crate::psql::capture(
        runner,
        true,
        {
            let mut c = Command::new("docker");
            c.args([
                "create",
                "--name",
                &helper,
                "--network",
                "none",
                "-v",
                &mount,
                &image,
            ]);
            c
        },
        "creating the helper container",
    )?;
    let _helper = Helper(helper.clone());
    let mut out = archive::Atomic::create(&path)?;
    // Through age when --encrypt-to is given: size and sha256 are of the file's bytes.
    let mut gz = flate2::write::GzEncoder::new(
        super::encrypt::Sink::new(out.file())?,
        flate2::Compression::fast(),
    );
    let mut cp = Command::new("docker");
    cp.args(["cp", &format!("{helper}:/volume/."), "-"]);
    let bar = stream::bar(progress, None, &format!("docker cp {volume}"));
    let copied = stream::from_child(cp, &mut gz, &bar);
    bar.finish_and_clear();
    copied?;
    let (size, sha256) = gz.finish().context("finishing the gzip stream")?.finish()?;
    // A full read before the archive gets its name: what `verify` will check
    // (not possible for an encrypted one: only the recipient's key opens it).
    let entries = if super::encrypt::encrypting() {
        None
    } else {
        Some(check_archive(out.tmp_path())?)
    };
    let manifest = archive::Manifest {
        kind: "volume".into(),
        format: super::encrypt::archive_name("tar.gz".into()).replace(".age", " | age"),
        file: file.clone(),
        project: project.name.clone(),
        environment: environment.to_string(),
        service: overlay.to_string(),
        image,
        server_version: String::new(),
        database: volume,
        size,
        sha256: sha256.clone(),
        tables: Default::default(),
        created_at,
        entries,
        tool: archive::tool(),
    };
    archive::commit_backup(out, &manifest, &path)?;
    Ok(Some(Written {
        path,
        size,
        sha256,
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    }))
}

/// Read the whole archive; refuse unsafe entries. Returns the entry count.
pub fn check_archive(path: &Path) -> Result<u64> {
    let file = super::encrypt::open(path)?;
    check_entries(
        flate2::read::GzDecoder::new(std::io::BufReader::new(file)),
        &path.display().to_string(),
    )
}

/// Read a whole (uncompressed) tar stream, refusing absolute paths, `..` and
/// links that escape the root; `label` names the stream in errors. Returns
/// the entry count.
pub fn check_entries(stream: impl std::io::Read, label: &str) -> Result<u64> {
    let mut tar = tar::Archive::new(stream);
    let mut count = 0u64;
    for entry in tar
        .entries()
        .with_context(|| format!("{label}: not a tar.gz archive"))?
    {
        let mut entry = entry.with_context(|| format!("{label}: damaged tar archive"))?;
        let name = entry.path()?.into_owned();
        if !is_inside(&name, Path::new("")) {
            bail!(
                "{label}: entry `{}` points outside the volume (absolute or `..`): refusing the archive",
                name.display()
            );
        }
        if let Some(target) = entry.link_name()? {
            let parent = name.parent().unwrap_or(Path::new(""));
            let hard = entry.header().entry_type().is_hard_link();
            let base = if hard { Path::new("") } else { parent };
            if target.is_absolute() || !is_inside(&target, base) {
                bail!(
                    "{label}: link `{}` -> `{}` escapes the volume: refusing the archive",
                    name.display(),
                    target.display()
                );
            }
        }
        std::io::copy(&mut entry, &mut std::io::sink())
            .with_context(|| format!("{label}: truncated entry `{}`", name.display()))?;
        count += 1;
    }
    Ok(count)
}

/// Whether `rel`, taken from inside `base` (itself relative to the root), stays below the root.
fn is_inside(rel: &Path, base: &Path) -> bool {
    let mut depth: i64 = base
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as i64;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_links_stay_inside() {
        assert!(is_inside(Path::new("./d/f"), Path::new("")));
        assert!(is_inside(Path::new("../f"), Path::new("d")));
        assert!(!is_inside(Path::new("../f"), Path::new("")));
        assert!(!is_inside(Path::new("d/../../f"), Path::new("")));
        assert!(!is_inside(Path::new("/etc/passwd"), Path::new("")));
    }
}
