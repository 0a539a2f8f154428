//! Restore of a volume backup into the active environment's volume of the
//! same overlay name. Docker cannot rename a volume, so the swap is done by
//! copying with every service that mounts the volume stopped: (1) a
//! pre-restore backup of the live volume; (2) the archive is extracted into a
//! fresh volume `<live>_restore_<stamp>` (`docker cp`, owners kept) and its
//! entry count checked against the manifest, the live volume still untouched;
//! (3) one helper copies the live data aside into `<live>_before_restore_<stamp>`,
//! empties the live volume and copies the restored data in; if that fails it
//! puts the previous data back. The services are started again in every case.
//! Each step is journalled first ([`recover`]): after a kill the next run
//! removes an unfinished restore volume, or runs the (restartable) swap to its
//! end, and starts the services again.
//! The helper runs as root with no network, from an image the environment
//! already has that provides `sh`, `cp` and `find` (nothing is pulled).

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::process::{Cmd, Io};
use crate::{
    backups::{
        archive,
        recover::{self, Journal},
        volume::{self as backup_volume, Helper, Restart},
    },
    engine::project::Project,
    environments::Environment,
    process::Runner,
    usage_bail, Global,
};

/// The live volume a backup goes back into.
pub struct Target {
    pub project: Project,
    pub environment: Environment,
    model: crate::compose::Project,
    /// The overlay's name (`grafana_data`).
    pub overlay: String,
    /// The engine's name (`fog_grafana_data`).
    pub live: String,
}

impl Target {
    /// The active environment's volume for the backup `manifest` describes.
    pub fn open(
        sh: &Shell,
        global: &Global,
        path: &Path,
        manifest: &archive::Manifest,
    ) -> Result<Target> {
        let (project, environment, model, pairs) = backup_volume::volumes(global)?;
        let overlay = manifest.service.clone();
        let Some((_, live)) = pairs.iter().find(|(o, _)| *o == overlay).cloned() else {
            let names: Vec<&str> = pairs.iter().map(|(o, _)| o.as_str()).collect();
            usage_bail!(
                "{}: a backup of volume `{overlay}`, which environment {environment} does not have (volumes: {}); switch with `cargo xtask env use ENV`, nothing was touched",
                path.display(),
                names.join(", ")
            );
        };
        if !global.dry_run && !backup_volume::exists(sh, &live) {
            usage_bail!("volume {live} does not exist yet: bring the environment up once (`cargo xtask env use {environment}`), then restore; nothing was touched");
        }
        Ok(Target {
            project,
            environment,
            model,
            overlay,
            live,
        })
    }

    /// Restore the verified archive `path` into the live volume.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &self,
        sh: &Shell,
        runner: &Runner,
        global: &Global,
        path: &Path,
        manifest: &archive::Manifest,
        dir: &Path,
        progress: bool,
    ) -> Result<()> {
        let image = self.shell_image(sh, runner)?;
        // With the pid: two restores within one second get their own names.
        let stamp = format!(
            "{}_{}",
            archive::stamp(&crate::clock::rfc3339_now()).to_lowercase(),
            std::process::id()
        );
        let fresh = format!("{}_restore_{stamp}", self.live);
        let old = format!("{}_before_restore_{stamp}", self.live);
        let users =
            backup_volume::running_users(sh, runner, &self.project, &self.model, &self.overlay)?;
        recover::catch_interrupts();
        let mut j = Journal {
            kind: "volume".into(),
            phase: String::new(),
            project: self.project.name.clone(),
            environment: self.environment.to_string(),
            live: self.live.clone(),
            fresh: fresh.clone(),
            old: old.clone(),
            stamp: stamp.clone(),
            pid: std::process::id(),
            services: users.clone(),
            container_file: None,
            image: Some(image.clone()),
            overlay: Some(self.overlay.clone()),
            at: String::new(),
            path: Journal::path_for(dir, &self.project.name, &format!("volume-{}", self.overlay)),
            keep: false,
        };
        // Nothing is changed yet: an interruption here leaves no journal.
        j.step(runner, "stopping").inspect_err(|_| j.finish())?;
        // Started again when this guard drops: on success, error or Ctrl-C.
        let _restart = Restart::stop(self.project.compose(&self.environment), runner, users)
            .inspect_err(|_| j.finish())?;
        let result = self.phases(
            sh,
            runner,
            global,
            &image,
            (path, manifest, dir),
            progress,
            &mut j,
        );
        if !j.keep {
            j.finish();
        }
        result
    }

    /// Pre-restore backup, fill, swap: the work between stopping and starting the services.
    #[allow(clippy::too_many_arguments)]
    fn phases(
        &self,
        sh: &Shell,
        runner: &Runner,
        global: &Global,
        image: &str,
        (path, manifest, dir): (&Path, &archive::Manifest, &Path),
        progress: bool,
        j: &mut Journal,
    ) -> Result<()> {
        let (fresh, old) = (j.fresh.clone(), j.old.clone());
        let pre = backup_volume::backup(sh, runner, global, &self.overlay, dir, false, progress)
            .context("the pre-restore backup failed: nothing was touched")?;
        let pre_path = pre
            .as_ref()
            .map_or_else(|| dir.join("<pre-restore backup>"), |w| w.path.clone());
        let untouched = |e: anyhow::Error| {
            e.context(format!(
                "restore failed; volume {} is untouched and the pre-restore backup is {}",
                self.live,
                pre_path.display()
            ))
        };
        let label = format!("fog.restore.of={}", self.live);
        j.step(runner, "filling").map_err(untouched)?;
        let mut create = Cmd::new("docker");
        create.args(["volume", "create", "--label", &label, &fresh]);
        crate::database::capture(runner, true, create, "creating the restore volume")
            .map_err(untouched)?;
        let filled = fill(runner, image, &fresh, path, manifest, progress, &j.project)
            .and_then(|()| j.step(runner, "swapping"));
        if let Err(e) = filled {
            remove_volume(runner, &fresh);
            return Err(untouched(e));
        }
        let swapped = swap(runner, image, j, &label);
        if let Err(Swap::Lost(_)) = swapped {
            // The next run runs the swap again from the journal.
            j.keep = true;
        } else {
            remove_volume(runner, &fresh);
        }
        match swapped {
            Ok(()) => {}
            Err(Swap::Untouched(e)) => {
                remove_volume(runner, &old);
                return Err(untouched(e));
            }
            Err(Swap::RolledBack(e)) => {
                return Err(e.context(format!(
                    "restore failed; the previous data of volume {} was put back (a copy is also in volume {old}) and the pre-restore backup is {}",
                    self.live,
                    pre_path.display()
                )))
            }
            Err(Swap::Lost(e)) => {
                return Err(e.context(format!(
                    "restore failed and volume {} could not be put back: the previous data is in volume {old} and in the pre-restore backup {}; the journal {} stays, and the next `cargo xtask restore` or `cargo xtask backup cleanup` runs the swap again",
                    self.live,
                    pre_path.display(),
                    j.path.display()
                )))
            }
        }
        if !runner.dry_run {
            println!(
                "restored {} into volume {} ({}, as the manifest says)\npre-restore backup: {}\nprevious data kept as volume {old}; drop it with: docker volume rm {old}",
                path.display(),
                self.live,
                backup_volume::entries_text(manifest.entries.unwrap_or(0)),
                pre_path.display()
            );
        }
        Ok(())
    }

    /// An image of the environment, present in the engine, with `sh`, `cp`
    /// and `find` (Postgres' first: every environment has it).
    fn shell_image(&self, sh: &Shell, runner: &Runner) -> Result<String> {
        let mut images: Vec<String> = Vec::new();
        let services = self.model.services();
        let postgres = services
            .iter()
            .filter(|s| s.name == crate::database::SERVICE);
        let others = services
            .iter()
            .filter(|s| s.name != crate::database::SERVICE);
        for image in postgres.chain(others).filter_map(|s| s.image.clone()) {
            if !images.contains(&image) {
                images.push(image);
            }
        }
        let present = images
            .into_iter()
            .filter(|i| crate::image::docker::image_exists(sh, runner, i));
        for image in present {
            if runner.dry_run {
                return Ok(image);
            }
            let ok = runner
                .status(
                    Cmd::new("docker")
                        .args(["run", "--rm", "--network", "none", "--user", "0:0"])
                        .args(["--entrypoint", "/bin/sh", &image, "-c"])
                        .arg("command -v cp && command -v find && command -v sync")
                        .stdin(Io::Null)
                        .stdout(Io::Null)
                        .stderr(Io::Null),
                )
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(image);
            }
        }
        bail!("no image of environment {} with a shell is in the engine to run the restore helper: bring the environment up once (or `cargo xtask images offline --only postgres`); nothing was touched", self.environment)
    }
}

/// Extract the archive into volume `fresh` and check its entry count.
fn fill(
    runner: &Runner,
    image: &str,
    fresh: &str,
    path: &Path,
    manifest: &archive::Manifest,
    progress: bool,
    project: &str,
) -> Result<()> {
    let helper = format!("fogrestore-{}-{fresh}", std::process::id());
    let helper = &helper[..helper.len().min(120)];
    let mount = format!("{fresh}:/volume");
    let mut create = Cmd::new("docker");
    create.args(["create", "--name", helper, "--network", "none"]);
    create.args(["--label", &format!("{}={project}", recover::HELPER_LABEL)]);
    create.args([
        "--label",
        &format!("{}={}", recover::HELPER_PID_LABEL, std::process::id()),
    ]);
    create.args(["-v", &mount, "--entrypoint", "/bin/sh", image]);
    crate::database::capture(runner, true, create, "creating the restore helper")?;
    let _helper = Helper(helper.to_string());
    // GNU tar keeps holes, links and owners; else `docker cp`, which without
    // `-a` keeps the owners the tar headers name (with `-a` it would chown
    // everything to the image's USER).
    let gnu = backup_volume::has_gnu_tar(&Shell::new()?, runner, image);
    let tar_in = format!("{helper}-in");
    let _tar_helper = gnu.then(|| Helper(tar_in.clone()));
    let fifo = if gnu && !runner.dry_run {
        Some(crate::backups::stream::Fifo::create(runner)?)
    } else {
        None
    };
    let fifo_path = fifo
        .as_ref()
        .map_or_else(|| "<fifo>".to_string(), |f| f.path.display().to_string());
    let cp = if gnu {
        backup_volume::tar_in(&tar_in, image, fresh, &fifo_path)
    } else {
        let mut cp = Cmd::new("docker");
        cp.args(["cp", "-", &format!("{helper}:/volume")]);
        cp
    };
    if runner.dry_run {
        println!("gunzip < {} | {}", path.display(), cp.line());
        println!("docker cp {helper}:/volume/. - | <count entries>");
        return Ok(());
    }
    let file = crate::backups::encrypt::open(path)?;
    let tar = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(archive::CHUNK, file));
    let bar =
        crate::backups::stream::bar(progress, None, &format!("extracting into volume {fresh}"));
    let extracted = match &fifo {
        Some(fifo) => crate::backups::stream::into_fifo(runner, cp, fifo, tar, &bar),
        None => crate::backups::stream::into_child(runner, true, cp, tar, &bar, true).map(|_| ()),
    };
    bar.finish_and_clear();
    extracted.context("extracting the archive into a fresh volume")?;
    // Read the restored volume back the way a backup reads it.
    let entries = if gnu {
        // Counted in place: every path below the volume and itself, as GNU tar stores them.
        let counted = crate::database::capture(
            runner,
            false,
            backup_volume::count_entries(image, fresh),
            "counting the restored volume's entries",
        )?;
        counted
            .trim()
            .parse::<u64>()
            .with_context(|| format!("counting the restored volume's entries: `{counted}`"))?
    } else {
        let mut out = Cmd::new("docker");
        out.args(["cp", &format!("{helper}:/volume/."), "-"]);
        let mut child = runner
            .spawn(out.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Null))
            .context("starting `docker cp` out of the restored volume")?;
        let label = format!("restored volume {fresh}");
        let counted = backup_volume::check_entries(child.stdout.take().expect("piped"), &label);
        let status = child.wait()?;
        let entries = counted?;
        if !status.success() {
            bail!("reading the restored volume {fresh} back failed ({status})");
        }
        entries
    };
    if let Some(expected) = manifest.entries {
        if entries != expected {
            bail!("the restored volume has {entries} entries, the manifest says {expected}");
        }
    }
    Ok(())
}

enum Swap {
    /// Nothing changed in the live volume.
    Untouched(anyhow::Error),
    /// The copy in failed; the previous data is back in the live volume.
    RolledBack(anyhow::Error),
    /// The live volume could not be put back.
    Lost(anyhow::Error),
}

fn swap(runner: &Runner, image: &str, j: &Journal, label: &str) -> Result<(), Swap> {
    let old = &j.old;
    let mut create = Cmd::new("docker");
    create.args(["volume", "create", "--label", label, old]);
    let mut cmd = recover::swap_command(j, image);
    if runner.dry_run {
        println!("{}", create.line());
        println!("{}", cmd.line());
        return Ok(());
    }
    let made = runner
        .output(create.stdin(Io::Null))
        .map_err(Swap::Untouched)?;
    if !made.status.success() {
        return Err(Swap::Untouched(anyhow::anyhow!(
            "creating volume {old} failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        )));
    }
    let out = runner
        .output(cmd.stdin(Io::Null))
        .map_err(Swap::Untouched)?;
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(10) => Err(Swap::Untouched(anyhow::anyhow!("{said}"))),
        Some(11) => Err(Swap::RolledBack(anyhow::anyhow!("{said}"))),
        _ => Err(Swap::Lost(anyhow::anyhow!(
            "the swap helper failed ({}): {said}",
            out.status
        ))),
    }
}

fn remove_volume(runner: &Runner, name: &str) {
    if !runner.dry_run {
        let _ = runner.output(Cmd::new("docker").args(["volume", "rm", "-f", name]));
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    /// Run [`super::SWAP`] on host folders; its exit code.
    fn swap(live: &Path, fresh: &Path, old: &Path) -> i32 {
        crate::process::Runner::default()
            .status(
                crate::process::Cmd::new("sh")
                    .args(["-c", crate::backups::recover::SWAP, "swap"])
                    .args([live, fresh, old]),
            )
            .unwrap()
            .code()
            .unwrap()
    }

    fn dirs(name: &str) -> (std::path::PathBuf, [std::path::PathBuf; 3]) {
        let root = std::env::temp_dir().join(format!("fog-swap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let [live, fresh, old] = ["live", "fresh", "old"].map(|d| root.join(d));
        for d in [&live, &fresh, &old] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(live.join("previous"), "old data").unwrap();
        fs::create_dir_all(live.join("sub")).unwrap();
        fs::write(fresh.join("restored"), "new data").unwrap();
        (root, [live, fresh, old])
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn swap_replaces_and_keeps_the_previous_data_aside() {
        let (root, [live, fresh, old]) = dirs("ok");
        assert_eq!(swap(&live, &fresh, &old), 0);
        assert_eq!(names(&live), ["restored"]);
        assert_eq!(names(&old), ["previous", "sub"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn swap_puts_the_previous_data_back_when_the_copy_in_fails() {
        let (root, [live, fresh, old]) = dirs("rollback");
        fs::remove_dir_all(&fresh).unwrap();
        assert_eq!(swap(&live, &fresh, &old), 11);
        assert_eq!(names(&live), ["previous", "sub"]);
        assert_eq!(
            fs::read_to_string(live.join("previous")).unwrap(),
            "old data"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn swap_touches_nothing_when_the_copy_aside_fails() {
        let (root, [live, fresh, old]) = dirs("aside");
        fs::remove_dir_all(&old).unwrap();
        fs::write(&old, "not a folder").unwrap();
        assert_eq!(swap(&live, &fresh, &old), 10);
        assert_eq!(names(&live), ["previous", "sub"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn swap_killed_after_the_copy_aside_finishes_when_run_again() {
        let (root, [live, fresh, old]) = dirs("resume");
        // What a kill leaves: the aside copy complete (marked), live half emptied.
        fs::write(old.join("previous"), "old data").unwrap();
        fs::create_dir_all(old.join("sub")).unwrap();
        fs::write(old.join(".fog-restore-aside-complete"), "").unwrap();
        fs::remove_file(live.join("previous")).unwrap();
        assert_eq!(swap(&live, &fresh, &old), 0);
        assert_eq!(names(&live), ["restored"]);
        assert_eq!(names(&old), ["previous", "sub"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn swap_killed_during_the_copy_aside_starts_it_again() {
        let (root, [live, fresh, old]) = dirs("restart");
        fs::write(old.join("half-copied"), "partial").unwrap();
        assert_eq!(swap(&live, &fresh, &old), 0);
        assert_eq!(names(&live), ["restored"]);
        assert_eq!(names(&old), ["previous", "sub"]);
        fs::remove_dir_all(root).unwrap();
    }
}
