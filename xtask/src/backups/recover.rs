//! What lets an interrupted restore be finished or undone: the restore
//! journal, one JSON file per project and kind in the backups folder
//! (`.restore-journal-<project>-postgres.json`,
//! `.restore-journal-<project>-volume-<name>.json`), rewritten atomically
//! before every step with the phase, the live, restored and aside names and
//! the services stopped for the swap. A restore that ends however it ends
//! (error, Ctrl-C, SIGTERM, or kill -9 and the next run) goes through
//! [`recover_postgres`] / [`recover_volume`], which look at the real state
//! (which databases or volumes exist) rather than trusting the phase, so the
//! live database always ends up existing and accepting connections and a
//! volume ends up with either its old or its restored data. Also the
//! Ctrl-C/SIGTERM flag, the `FOG_TEST_PAUSE_AT` test hook's phases, and the labels of
//! helper containers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::archive;
use crate::process::{Cmd, Io};
use crate::{database::Database, process::Runner};

/// The label naming the project a helper container (drill, restore, swap) works for.
pub const HELPER_LABEL: &str = "dev.fog-compute.helper";
/// The label holding the pid of the xtask that created a helper container.
pub const HELPER_PID_LABEL: &str = "dev.fog-compute.helper.pid";

/// Catch Ctrl-C and SIGTERM: the restore finishes its current step, then
/// recovers and says what it did.
pub fn catch_interrupts() {
    crate::interrupt::catch("finishing the current step, then putting things back");
}

pub use crate::interrupt::interrupted;

/// The test hook at `phase` ([`crate::interrupt::pause_point`]), then fail
/// if Ctrl-C or SIGTERM arrived.
pub fn pause(phase: &str) -> Result<()> {
    crate::interrupt::pause_point(phase);
    if interrupted() {
        bail!("interrupted (Ctrl-C or SIGTERM) at phase {phase}");
    }
    Ok(())
}

/// Whether process `pid` still runs (a journal of a live restore is not stale).
pub fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// One restore in progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    /// `postgres` or `volume`.
    pub kind: String,
    pub phase: String,
    /// The compose project (or stack) restored into.
    pub project: String,
    pub environment: String,
    /// The live database or volume.
    pub live: String,
    /// The restored copy (`<live>_restore_<stamp>`).
    pub fresh: String,
    /// Where the previous data goes (`<live>_before_restore_<stamp>`).
    pub old: String,
    pub stamp: String,
    pub pid: u32,
    /// Services stopped for the swap, to start again.
    pub services: Vec<String>,
    /// The archive copied into the Postgres container for `pg_restore -j`.
    #[serde(default)]
    pub container_file: Option<String>,
    /// The helper image (volumes).
    #[serde(default)]
    pub image: Option<String>,
    /// The overlay name of a volume.
    #[serde(default)]
    pub overlay: Option<String>,
    pub at: String,
    /// Where this journal lives (not stored).
    #[serde(skip)]
    pub path: PathBuf,
    /// Keep the journal when the restore ends (the next run must finish it).
    #[serde(skip)]
    pub keep: bool,
}

impl Journal {
    /// The journal file for `project`'s restore of `what` (`postgres` or `volume-<name>`).
    pub fn path_for(dir: &Path, project: &str, what: &str) -> PathBuf {
        dir.join(format!(".restore-journal-{project}-{what}.json"))
    }

    /// Record `phase` (atomically, fsynced) and run the test hook.
    pub fn step(&mut self, runner: &Runner, phase: &str) -> Result<()> {
        self.phase = phase.to_string();
        self.at = crate::clock::rfc3339_now();
        if !runner.dry_run {
            if let Some(parent) = self.path.parent() {
                archive::create_dir(parent)?;
            }
            archive::write_atomic(&self.path, serde_json::to_string_pretty(self)?.as_bytes())
                .with_context(|| format!("writing the restore journal {}", self.path.display()))?;
        }
        pause(phase)
    }

    /// The restore is over: remove the journal.
    pub fn finish(&self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(parent) = self.path.parent() {
            let _ = archive::fsync_dir(parent);
        }
    }
}

/// The journals in `dir` (of `project` when given).
pub fn journals(dir: &Path, project: Option<&str>) -> Vec<Journal> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".restore-journal-") && name.ends_with(".json")) {
            continue;
        }
        let Ok(text) = archive::read_small(&entry.path()) else {
            continue;
        };
        let Ok(mut j) = serde_json::from_str::<Journal>(&text) else {
            continue;
        };
        if project.is_some_and(|p| p != j.project) {
            continue;
        }
        j.path = entry.path();
        out.push(j);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// `name -> datallowconn` for the databases among `names`.
fn databases(db: &Database, runner: &Runner, names: &[&str]) -> Result<Vec<(String, bool)>> {
    let list: Vec<String> = names.iter().map(|n| format!("'{}'", quote(n))).collect();
    let out = db.sql(
        runner,
        "postgres",
        &format!(
            "SELECT datname || '|' || datallowconn FROM pg_database WHERE datname IN ({})",
            list.join(", ")
        ),
        false,
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.rsplit_once('|'))
        .map(|(n, a)| (n.to_string(), a == "t"))
        .collect())
}

/// Put an interrupted Postgres restore into a safe end state: the live
/// database exists and accepts connections; a restore that had not swapped
/// is undone (its partial database dropped), one that had is finished. The
/// stopped services are not started here (the caller's guard or
/// [`start_services`] does). Returns one line saying what was recovered.
pub fn recover_postgres(db: &Database, runner: &Runner, j: &Journal) -> Result<String> {
    let (live, fresh, old) = (j.live.as_str(), j.fresh.as_str(), j.old.as_str());
    if let Some(file) = &j.container_file {
        let rm = db.exec("", &["rm".into(), "-f".into(), file.clone()]);
        let _ = crate::database::capture(runner, true, rm, "removing the copied archive");
    }
    let found = databases(db, runner, &[live, fresh, old])?;
    let has = |n: &str| found.iter().any(|(d, _)| d == n);
    let sql = |s: String| db.sql(runner, "postgres", &s, true);
    let line = if has(live) && has(old) && !has(fresh) {
        sql(format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS true"))?;
        sql(format!("ALTER DATABASE \"{old}\" ALLOW_CONNECTIONS true"))?;
        format!("the swap had completed: database {live} holds the restored data and accepts connections; the previous data is database {old}")
    } else if has(live) {
        sql(format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS true"))?;
        let dropped = if has(fresh) {
            sql(format!("DROP DATABASE IF EXISTS \"{fresh}\" WITH (FORCE)"))?;
            format!("; the unfinished restore database {fresh} was dropped")
        } else {
            String::new()
        };
        format!("database {live} was not replaced and accepts connections{dropped}")
    } else if has(old) {
        sql(format!("ALTER DATABASE \"{old}\" RENAME TO \"{live}\""))?;
        sql(format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS true"))?;
        if has(fresh) {
            sql(format!("DROP DATABASE IF EXISTS \"{fresh}\" WITH (FORCE)"))?;
        }
        format!("database {old} was renamed back to {live} and accepts connections; the restore was undone")
    } else {
        bail!("database {live} and its aside copy {old} are both missing (restore database {fresh}: {}); nothing was changed: inspect with `cargo xtask psql -- -d postgres -c '\\l'`", if has(fresh) { "present" } else { "missing" });
    };
    Ok(format!(
        "recovered the restore of database {live} interrupted at phase {}: {line}",
        j.phase
    ))
}

/// Start `services` of the journal's compose project again (best effort, said on stderr).
pub fn start_services(runner: &Runner, compose: &crate::engine::compose::Compose, j: &Journal) {
    if j.services.is_empty() {
        return;
    }
    let Ok(sh) = xshell::Shell::new() else { return };
    sh.change_dir(crate::project_root());
    let mut args = vec!["start"];
    args.extend(j.services.iter().map(String::as_str));
    match runner.run(compose.cmd(&sh, &args)) {
        Ok(()) => eprintln!("started {} again", j.services.join(", ")),
        Err(e) => eprintln!(
            "warning: could not start {} again: {e:#}; run `cargo xtask restart SERVICE`",
            j.services.join(", ")
        ),
    }
}

/// The copy-aside-and-swap, in one helper, with the live, restored and aside
/// folders as `$1 $2 $3`; safe to run again after a kill (a marker in the
/// aside folder says its copy is complete). Exit 0: restored; 10: nothing
/// was changed; 11: the copy in failed and the previous data is back in
/// place; anything else: the previous data is in the aside folder.
pub const SWAP: &str = r#"set -u
m="$3/.fog-restore-aside-complete"
if [ ! -e "$m" ]; then
  find "$3" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null
  { cp -a "$1/." "$3/" && sync && touch "$m" && sync; } || { echo 'could not copy the current data aside' >&2; exit 10; }
fi
if find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a "$2/." "$1/" && sync; then rm -f "$m"; sync; exit 0; fi
echo 'copying the restored data in failed: putting the previous data back' >&2
find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
cp -a "$3/." "$1/" && rm -f "$1/.fog-restore-aside-complete" "$m" && sync && exit 11
exit 12"#;

/// `docker volume inspect` succeeds.
fn volume_exists(name: &str) -> bool {
    let Ok(sh) = xshell::Shell::new() else {
        return false;
    };
    Runner::default()
        .probe(xshell::cmd!(sh, "docker volume inspect {name}"))
        .is_some()
}

fn docker(runner: &Runner, args: &[&str]) -> Result<String> {
    let mut cmd = Cmd::new("docker");
    cmd.args(args);
    let what = format!("`docker {}`", args.join(" "));
    crate::database::capture(runner, true, cmd, &what)
}

/// The `docker run` of the swap helper (named, labelled, no network).
pub fn swap_command(j: &Journal, image: &str) -> Cmd {
    let mut cmd = Cmd::new("docker");
    let name = format!("fogswap-{}-{}", j.pid, j.stamp);
    cmd.args([
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "none",
        "--user",
        "0:0",
    ]);
    cmd.args(["--label", &format!("{HELPER_LABEL}={}", j.project)]);
    cmd.args(["--label", &format!("{HELPER_PID_LABEL}={}", j.pid)]);
    for (volume, at) in [
        (&j.live, "/live"),
        (&j.fresh, "/fresh:ro"),
        (&j.old, "/old"),
    ] {
        cmd.args(["-v", &format!("{volume}:{at}")]);
    }
    cmd.args(["--entrypoint", "/bin/sh", image, "-c", SWAP, "swap"]);
    cmd.args(["/live", "/fresh", "/old"]);
    cmd
}

/// Finish or undo an interrupted volume restore (after a kill: the next
/// run). Before the swap started the live volume is untouched and the
/// restore is undone; once it started, the swap is run again to its end
/// (the restored copy was verified before). Returns what was recovered.
pub fn recover_volume(runner: &Runner, j: &Journal) -> Result<String> {
    if runner.dry_run {
        println!("# recover the restore of volume {} interrupted at phase {}: remove dead helpers, run the swap again or remove {}", j.live, j.phase, j.fresh);
        return Ok(String::new());
    }
    remove_dead_helpers(runner, &j.project)?;
    let line = match j.phase.as_str() {
        "swapping" if volume_exists(&j.fresh) => {
            let image = j.image.clone().context("the journal names no helper image")?;
            if !volume_exists(&j.old) {
                docker(runner, &["volume", "create", &j.old])?;
            }
            let out = runner
                .output(swap_command(j, &image).stdin(Io::Null))
                .context("running the swap helper again")?;
            match out.status.code() {
                Some(0) => {
                    let _ = docker(runner, &["volume", "rm", "-f", &j.fresh]);
                    format!("finished the swap: volume {} holds the restored data; the previous data is volume {}", j.live, j.old)
                }
                Some(10) | Some(11) => {
                    let _ = docker(runner, &["volume", "rm", "-f", &j.fresh]);
                    let _ = docker(runner, &["volume", "rm", "-f", &j.old]);
                    format!("the swap could not be finished; volume {} keeps its previous data", j.live)
                }
                _ => bail!(
                    "finishing the swap into volume {} failed ({}): {}; the previous data is in volume {}",
                    j.live,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    j.old
                ),
            }
        }
        "swapping" => format!(
            "the swap had completed: volume {} holds the restored data; the previous data is volume {}",
            j.live, j.old
        ),
        _ => {
            let _ = docker(runner, &["volume", "rm", "-f", &j.fresh]);
            format!(
                "volume {} was not touched; the unfinished restore volume {} was removed",
                j.live, j.fresh
            )
        }
    };
    Ok(format!(
        "recovered the restore of volume {} interrupted at phase {}: {line}",
        j.live, j.phase
    ))
}

/// Helper containers of `project` whose creating xtask no longer runs: `(name, pid)`.
pub fn dead_helpers(runner: &Runner, project: &str) -> Result<Vec<String>> {
    let mut cmd = Cmd::new("docker");
    let format = format!("{{{{.Names}}}}\t{{{{.Label \"{HELPER_PID_LABEL}\"}}}}");
    cmd.args([
        "ps",
        "-a",
        "--filter",
        &format!("label={HELPER_LABEL}={project}"),
    ]);
    cmd.args(["--format", &format]);
    let out = crate::database::capture(runner, false, cmd, "listing helper containers")?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, pid)| pid.parse::<u32>().map_or(true, |p| !pid_alive(p)))
        .map(|(name, _)| name.to_string())
        .collect())
}

/// Remove [`dead_helpers`] (with their anonymous volumes).
pub fn remove_dead_helpers(runner: &Runner, project: &str) -> Result<Vec<String>> {
    let dead = dead_helpers(runner, project)?;
    for name in &dead {
        docker(runner, &["rm", "-f", "-v", name])?;
    }
    Ok(dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_and_is_found_by_project() {
        let dir = std::env::temp_dir().join(format!("fog-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut j = Journal {
            kind: "postgres".into(),
            phase: String::new(),
            project: "fog".into(),
            environment: "dev".into(),
            live: "fog".into(),
            fresh: "fog_restore_x".into(),
            old: "fog_before_restore_x".into(),
            stamp: "x".into(),
            pid: std::process::id(),
            services: vec!["mixnode-1".into()],
            container_file: None,
            image: None,
            overlay: None,
            at: String::new(),
            path: Journal::path_for(&dir, "fog", "postgres"),
            keep: false,
        };
        j.step(&Runner::default(), "renaming").unwrap();
        let found = journals(&dir, Some("fog"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].phase, "renaming");
        assert_eq!(found[0].services, ["mixnode-1"]);
        assert!(journals(&dir, Some("other")).is_empty());
        j.finish();
        assert!(journals(&dir, None).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_is_alive_and_an_impossible_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        // Above Linux's largest pid_max (2^22).
        assert!(!pid_alive(4_194_305));
    }
}
