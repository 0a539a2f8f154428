//! `backup volume NAME`: a named volume of the environment (Grafana,
//! Prometheus, mixnode keys and data, ...), by its overlay name
//! (`grafana_data`) or the engine's (`fog_grafana_data`), as it is: the tar
//! stream comes from GNU tar (`--sparse --numeric-owner`) in a throwaway
//! container that mounts the volume read-only and writes into a named pipe
//! bind-mounted from a private temp folder (as fast as `docker cp`; a
//! container's stdout through the engine is several times slower), using an image the
//! environment already has that ships GNU tar (nothing is pulled; Postgres'
//! first), so symlinks (absolute or relative) stay links, hard links stay
//! links, sparse files stay sparse, FIFOs and any file name survive. With no
//! such image it falls back to `docker cp` (sparse files are then stored in
//! full, and the output says so). gzip (flate2) and sha256 run on the host in
//! one pass, into `<project>-volume-<name>-<stamp>.tar.gz` with the same
//! `.sha256` and manifest as a database backup. [`check_archive`] reads a
//! whole archive and refuses absolute paths, `..`, hard links that escape,
//! and any entry that would be written through a symlink of the archive.

use std::{
    collections::BTreeSet,
    path::{Component, Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::{archive, postgres::Written, stream};
use crate::process::Cmd;
use crate::{
    compose::EnvSource, engine::project::Project, process::Runner, selection::Selection,
    usage_bail, Global,
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
        crate::interrupt::catch("stopping the copy, then starting the services again");
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
        // Quiet, as before: a helper exists only outside --dry-run.
        let _ = Runner::default().output(Cmd::new("docker").args(["rm", "-f", "-v", &self.0]));
    }
}

/// Whether `image` ships GNU tar (busybox tar cannot keep sparse files).
pub fn has_gnu_tar(sh: &Shell, runner: &Runner, image: &str) -> bool {
    runner
        .probe(xshell::cmd!(
            sh,
            "docker run --rm --network none --entrypoint tar {image} --version"
        ))
        .is_some_and(|v| v.contains("GNU tar"))
}

/// The environment's images present in the engine, Postgres' first, and
/// whether the chosen one has GNU tar (the first that has it, else the first).
pub fn helper_image(
    sh: &Shell,
    runner: &Runner,
    model: &crate::compose::Project,
) -> Option<(String, bool)> {
    let services = model.services();
    let postgres = services
        .iter()
        .filter(|s| s.name == crate::database::SERVICE);
    let others = services
        .iter()
        .filter(|s| s.name != crate::database::SERVICE);
    let mut images: Vec<String> = Vec::new();
    for image in postgres.chain(others).filter_map(|s| s.image.clone()) {
        if !images.contains(&image) && crate::image::docker::image_exists(sh, runner, &image) {
            images.push(image);
        }
    }
    if let Some(gnu) = images.iter().find(|i| has_gnu_tar(sh, runner, i)) {
        return Some((gnu.clone(), true));
    }
    images.into_iter().next().map(|i| (i, false))
}

/// `docker run` of a GNU tar helper named `helper` that writes `volume`'s
/// tree into the pipe mounted from `fifo` as it is (links as links, holes as
/// holes, numeric owners). Exit 1 ("file changed as we read it", a live
/// volume) is not a failure: `--stop` is the way to a consistent copy.
pub fn tar_out(helper: &str, image: &str, volume: &str, fifo: &str) -> Cmd {
    let mut cmd = Cmd::new("docker");
    cmd.args(["run", "--rm", "--name", helper, "--network", "none"]);
    cmd.args(["--user", "0:0", "-v", &format!("{volume}:/volume:ro")]);
    cmd.args(["-v", &format!("{fifo}:/fog-stream.tar")]);
    cmd.args(["--entrypoint", "sh", image, "-c"]);
    cmd.arg("tar --create --file=/fog-stream.tar --directory=/volume --format=gnu --sparse --numeric-owner --warning=no-file-changed . ; rc=$?; [ $rc -eq 1 ] && rc=0; exit $rc");
    cmd
}

/// `docker run` of a GNU tar helper named `helper` that extracts the tar
/// stream of the pipe mounted from `fifo` into `volume` (owners and modes
/// as recorded, holes kept, links created as links).
pub fn tar_in(helper: &str, image: &str, volume: &str, fifo: &str) -> Cmd {
    let mut cmd = Cmd::new("docker");
    cmd.args(["run", "--rm", "--name", helper, "--network", "none"]);
    cmd.args(["--user", "0:0", "-v", &format!("{volume}:/volume")]);
    cmd.args(["-v", &format!("{fifo}:/fog-stream.tar:ro")]);
    cmd.args(["--entrypoint", "tar", image]);
    cmd.args([
        "--extract",
        // A pipe gives short reads: reblock them instead of "Unaligned block".
        "--read-full-records",
        "--file=/fog-stream.tar",
        "--directory=/volume",
        "--numeric-owner",
        "--same-owner",
        "--same-permissions",
    ]);
    cmd
}

/// `docker run` of a helper that prints how many entries GNU tar would store
/// for `volume` (every path below it and itself, as in a backup's count).
pub fn count_entries(image: &str, volume: &str) -> Cmd {
    let mut cmd = Cmd::new("docker");
    cmd.args(["run", "--rm", "--network", "none", "--user", "0:0"]);
    cmd.args([
        "-v",
        &format!("{volume}:/volume:ro"),
        "--entrypoint",
        "sh",
        image,
    ]);
    cmd.args(["-c", "find /volume -printf x | wc -c"]);
    cmd
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
    // The database's live data directory: a file copy of a running cluster
    // may not start again; pg_dump is the consistent way.
    let pg_data = model.service(crate::database::SERVICE).is_some_and(|s| {
        s.volumes
            .iter()
            .any(|m| m.source.as_deref() == Some(overlay))
    });
    if pg_data && !stop {
        eprintln!("warning: {volume} is the live data directory of Postgres; a copy taken while it runs may not start again: back up the database with `cargo xtask backup postgres` (or stop it for this copy with --stop)");
    }
    let (image, gnu) = helper_image(sh, runner, &model)
        .context("no image of the environment is in the engine to lend a helper container: run `cargo xtask images build` or bring the environment up once")?;
    let created_at = crate::clock::rfc3339_now();
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
    let mut create = Cmd::new("docker");
    create.args(["create", "--name", &helper, "--network", "none"]);
    create.args(["-v", &mount, &image]);
    let fifo = if gnu && !runner.dry_run {
        Some(stream::Fifo::create(runner)?)
    } else {
        None
    };
    let fifo_mount = fifo
        .as_ref()
        .map_or_else(|| "<fifo>".to_string(), |f| f.path.display().to_string());
    let out_cmd = if gnu {
        tar_out(&helper, &image, &volume, &fifo_mount)
    } else {
        let mut cp = Cmd::new("docker");
        cp.args(["cp", &format!("{helper}:/volume/."), "-"]);
        cp
    };
    if runner.dry_run {
        if !gnu {
            println!("{}", create.line());
        }
        println!("{} | gzip > {}", out_cmd.line(), path.display());
        println!("docker rm -f -v {helper}");
        return Ok(None);
    }
    if !gnu {
        eprintln!("note: no image of the environment has GNU tar: copying with `docker cp`, which stores sparse files in full");
    }
    archive::create_dir(dir)?;
    let started = Instant::now();
    if !gnu {
        crate::database::capture(runner, true, create, "creating the helper container")?;
    }
    let _helper = Helper(helper.clone());
    let mut out = archive::Atomic::create(&path).map_err(|e| archive::no_space(e, dir))?;
    // Through age when --encrypt-to is given: size and sha256 are of the file's bytes.
    let mut gz = flate2::write::GzEncoder::new(
        super::encrypt::Sink::new(out.file())?,
        flate2::Compression::fast(),
    );
    let bar = stream::bar(progress, None, &format!("tar {volume}"));
    // The tar stream is checked as it passes, on a thread of its own (what
    // `verify` will check: a full read, the entry count), so no second pass
    // over the archive is needed, and an encrypted one gets its count too.
    let (send, receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHECK_QUEUE);
    let label = format!("the tar stream of {volume}");
    let checker = std::thread::spawn(move || {
        let mut queue = stream::Queue::new(receive);
        let counted = check_entries(&mut queue, &label);
        // GNU tar pads its last record: read it, so the sender never blocks.
        // A refused archive drops the queue instead, which stops the copy.
        if counted.is_ok() {
            let _ = std::io::copy(&mut queue, &mut std::io::sink());
        }
        counted
    });
    let tee = Tee {
        inner: &mut gz,
        check: send,
    };
    let copied = match &fifo {
        Some(fifo) => stream::from_fifo(runner, out_cmd, fifo, tee, &bar),
        None => stream::from_child(runner, out_cmd, tee, &bar),
    };
    bar.finish_and_clear();
    let checked = checker.join().expect("the checker does not panic");
    let entries = match (copied, checked) {
        (Ok(_), Ok(n)) => Some(n),
        // A copy that failed on its own (a full disk) cut the checker's stream short: its error says why.
        (Err(e), _) if !format!("{e:#}").contains(REFUSED) => {
            return Err(archive::no_space(e, dir))
        }
        // The checker refused an entry: the copy's error is only its echo.
        (_, Err(e)) => return Err(e.context(format!("backing up volume {volume}"))),
        (Err(e), Ok(_)) => return Err(archive::no_space(e, dir)),
    };
    let (size, sha256) = gz
        .finish()
        .context("finishing the gzip stream")
        .and_then(|sink| sink.finish())
        .map_err(|e| archive::no_space(e, dir))?;
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
    archive::commit_backup(out, &manifest, &path).map_err(|e| archive::no_space(e, dir))?;
    Ok(Some(Written {
        path,
        size,
        sha256,
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    }))
}

/// A volume archive's entry count for people: the root is always stored
/// (GNU tar's `./`, `docker cp`'s too), so one entry is an empty volume,
/// which backs up and restores like any other.
pub fn entries_text(n: u64) -> String {
    match n {
        1 => "1 entry: the volume is empty".to_string(),
        n => format!("{n} entries"),
    }
}

/// Chunks of the tar stream queued for the checker (at most 1 GiB in theory;
/// the checker is much faster than gzip, so a few are ever waiting).
const CHECK_QUEUE: usize = 1024;

/// The copy's error when the checker stopped reading (it refused an entry).
const REFUSED: &str = "the checker refused the tar stream";

/// A writer that passes everything to `inner` and a copy to the checker.
/// Dropping it ends the checker's stream.
struct Tee<W> {
    inner: W,
    check: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl<W: std::io::Write> std::io::Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.check
            .send(buf[..n].to_vec())
            .map_err(|_| std::io::Error::other(REFUSED))?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Read the whole archive; refuse unsafe entries. Returns the entry count.
pub fn check_archive(path: &Path) -> Result<u64> {
    let file = super::encrypt::open(path)?;
    check_entries(
        flate2::read::GzDecoder::new(std::io::BufReader::new(file)),
        &path.display().to_string(),
    )
}

/// Read a whole (uncompressed) tar stream, refusing absolute paths, `..`
/// that leaves the root, hard links to outside the archive, and any entry
/// (or hard link target) reached through a symlink of the archive itself:
/// extracting it would write through the link. A symlink's own target is
/// data and never followed, so `/etc/passwd` or `../x` there is fine.
/// `label` names the stream in errors. Returns the entry count.
pub fn check_entries(stream: impl std::io::Read, label: &str) -> Result<u64> {
    let mut tar = tar::Archive::new(stream);
    let mut count = 0u64;
    let mut links: BTreeSet<PathBuf> = BTreeSet::new();
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
        let kind = entry.header().entry_type();
        if let Some(via) = through_link(&name, &links, false) {
            bail!(
                "{label}: entry `{}` would be written through the symlink `{}` stored before it: refusing the archive",
                name.display(),
                via.display()
            );
        }
        if kind.is_hard_link() {
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            if target.is_absolute() || !is_inside(&target, Path::new("")) {
                bail!(
                    "{label}: hard link `{}` -> `{}` escapes the volume: refusing the archive",
                    name.display(),
                    target.display()
                );
            }
            if let Some(via) = through_link(&target, &links, true) {
                bail!(
                    "{label}: hard link `{}` -> `{}` goes through the symlink `{}`: refusing the archive",
                    name.display(),
                    target.display(),
                    via.display()
                );
            }
        }
        if kind.is_symlink() {
            links.insert(normal(&name));
        }
        std::io::copy(&mut entry, &mut std::io::sink())
            .with_context(|| format!("{label}: truncated entry `{}`", name.display()))?;
        count += 1;
    }
    Ok(count)
}

/// `./a//b/` -> `a/b` (lexically; `..` pops).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The symlink among `links` that `path` passes through: any proper prefix,
/// or (unless `final_ok`) the path itself, which would be replaced or, for a
/// folder, followed.
fn through_link(path: &Path, links: &BTreeSet<PathBuf>, final_ok: bool) -> Option<PathBuf> {
    let parts: Vec<Component> = path.components().collect();
    let mut at = PathBuf::new();
    for (i, c) in parts.iter().enumerate() {
        match c {
            Component::Normal(n) => at.push(n),
            Component::ParentDir => {
                at.pop();
                continue;
            }
            _ => continue,
        }
        let last = parts[i + 1..]
            .iter()
            .all(|c| matches!(c, Component::CurDir));
        if (!last || !final_ok) && links.contains(&at) {
            return Some(at);
        }
    }
    None
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

    fn tarball(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, name, target).unwrap();
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &b"x"[..]).unwrap();
    }

    #[test]
    fn links_are_data_but_nothing_is_written_through_one() {
        use tar::EntryType::{Link, Symlink};
        // Absolute and escaping symlink targets are data; a hard link to a symlink is fine.
        let ok = tarball(|b| {
            link(b, Symlink, "./abs", "/etc/passwd");
            link(b, Symlink, "./up", "../../x");
            file(b, "./d/f");
            link(b, Link, "./hard", "./d/f");
            link(b, Link, "./hard-to-link", "abs");
        });
        assert_eq!(check_entries(&ok[..], "t").unwrap(), 5);
        // A file, folder or hard link target under an earlier symlink is refused.
        for (bad, says) in [
            (
                tarball(|b| {
                    link(b, Symlink, "./etc", "/etc");
                    file(b, "./etc/passwd");
                }),
                "entry `etc/passwd` would be written through the symlink `etc`",
            ),
            (
                tarball(|b| {
                    link(b, Symlink, "d", "/tmp");
                    file(b, "./d");
                }),
                "through the symlink `d`",
            ),
            (
                tarball(|b| {
                    link(b, Symlink, "d", "/etc");
                    link(b, Link, "h", "d/shadow");
                }),
                "hard link `h` -> `d/shadow` goes through the symlink `d`",
            ),
            (
                tarball(|b| link(b, Link, "h", "../outside")),
                "escapes the volume",
            ),
        ] {
            let err = format!("{:#}", check_entries(&bad[..], "t").unwrap_err());
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn one_entry_is_an_empty_volume() {
        assert_eq!(entries_text(1), "1 entry: the volume is empty");
        assert_eq!(entries_text(0), "0 entries");
        assert_eq!(entries_text(12), "12 entries");
    }

    #[test]
    fn paths_and_links_stay_inside() {
        assert!(is_inside(Path::new("./d/f"), Path::new("")));
        assert!(is_inside(Path::new("../f"), Path::new("d")));
        assert!(!is_inside(Path::new("../f"), Path::new("")));
        assert!(!is_inside(Path::new("d/../../f"), Path::new("")));
        assert!(!is_inside(Path::new("/etc/passwd"), Path::new("")));
    }
}
