//! `--live`: each side in turn is staged ([`super::stage`]) under its own
//! project `fogrep-<side>-<pid>` with its own networks on free /24 subnets of
//! 10.236.0.0/16 and no published ports, started with `compose up -d`,
//! polled until every service is ready (time to healthy per service; one that
//! fails or never gets ready is listed as not measured with the reason),
//! sampled once a second for `--duration` seconds ([`super::sampler`]) and
//! torn down with `down -v`. A [`Stack`] guard tears down on every exit path,
//! and a Ctrl-C handler turns the interrupt into an error so the guard runs.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use super::model::{NotMeasured, Side};
use super::sampler::{self, Stream};
use super::spec::{temp_dir, Loaded};
use super::stage;
use crate::engine::{containers, health, Engine};
use crate::process::Runner;
use tempfile::TempDir;

pub use crate::interrupt::interrupted;

/// Catch Ctrl-C: the report tears its containers down before it exits.
pub fn catch_ctrl_c() {
    crate::interrupt::catch("tearing down the report's containers");
}

/// Options of a live run.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: u64,
    /// Seconds to let the side run once healthy, before sampling.
    pub settle: u64,
    pub timeout: u64,
    /// Project-name prefix; also the prefix of network names.
    pub prefix: String,
}

/// How memory is counted, for the report: from the engine's cgroup version.
pub fn memory_counting(sh: &Shell, runner: &Runner) -> String {
    let format = "{{.CgroupVersion}}";
    let version = runner
        .probe(cmd!(sh, "docker info --format {format}"))
        .unwrap_or_default();
    match version.trim() {
        "2" => "docker stats MEM USAGE: cgroup memory usage minus inactive_file (cgroup v2)".into(),
        "1" => "docker stats MEM USAGE: cgroup memory usage minus total_inactive_file (cgroup v1)"
            .into(),
        _ => "docker stats MEM USAGE: memory usage minus inactive page cache".into(),
    }
}

/// A started side: `down -v` and leftover removal on drop.
struct Stack<'a> {
    sh: &'a Shell,
    runner: &'a Runner,
    engine: &'a Engine,
    project: String,
    file: PathBuf,
    networks: Vec<String>,
    dir: TempDir,
}

impl Stack<'_> {
    fn compose(&self, args: &[&str]) -> xshell::Cmd<'_> {
        let (program, lead) = self.engine.compose_program();
        let dir = self.dir.path().display().to_string();
        let file = self.file.display().to_string();
        let project = &self.project;
        self.sh
            .cmd(program)
            .args(lead)
            .args(["--project-directory", &dir, "-p", project, "-f", &file])
            .args(args)
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        if !self.runner.dry_run {
            eprintln!("removing {} (containers, networks, volumes)", self.project);
        }
        let _ = self
            .runner
            .run(self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]));
        if self.runner.dry_run {
            return;
        }
        // Whatever `down` missed (it failed, or was interrupted).
        let ids = containers::project_ids(self.sh, self.runner, &self.project).unwrap_or_default();
        if !ids.is_empty() {
            let _ = self.runner.run(cmd!(self.sh, "docker rm -f -v {ids...}"));
        }
        for net in &self.networks {
            let format = "{{.Id}}";
            let exists = self
                .runner
                .probe(cmd!(
                    self.sh,
                    "docker network inspect --format {format} {net}"
                ))
                .is_some();
            if exists {
                let _ = self.runner.run(cmd!(self.sh, "docker network rm {net}"));
            }
        }
    }
}

/// `count` free /24 subnets in 10.236.0.0/16: the first bank of 16 (from a
/// pid-based start) that no Docker network uses.
fn free_subnets(sh: &Shell, runner: &Runner, count: usize) -> Result<Vec<String>> {
    if count > 16 {
        bail!("{count} networks: a report side supports at most 16");
    }
    let ids = runner.read(cmd!(sh, "docker network ls -q"))?;
    let ids: Vec<&str> = ids.lines().collect();
    let format = "{{range .IPAM.Config}}{{.Subnet}} {{end}}";
    // A network may vanish between `ls` and `inspect` (other stacks come and
    // go): `inspect` still prints the others, so its exit status is ignored.
    let used = if ids.is_empty() {
        String::new()
    } else {
        let inspect = cmd!(sh, "docker network inspect --format {format} {ids...}");
        let out = runner.output(inspect)?;
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let used: Vec<&str> = used.split_whitespace().collect();
    let start = std::process::id() as usize % 16;
    for bank in (0..16).map(|i| (start + i) % 16) {
        let subnets: Vec<String> = (0..16)
            .map(|i| format!("10.236.{}.0/24", bank * 16 + i))
            .collect();
        let clash = used.iter().any(|u| {
            u.strip_prefix("10.236.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|third| third.parse::<usize>().ok())
                .is_some_and(|third| third / 16 == bank)
        });
        if !clash {
            return Ok(subnets.into_iter().take(count).collect());
        }
    }
    bail!("no free /24 subnets left in 10.236.0.0/16: remove old fogrep-* networks (`docker network ls --filter name=fogrep`)")
}

/// Measure one side and fill its live figures into `side`.
pub fn measure(
    sh: &Shell,
    runner: &Runner,
    engine: &Engine,
    loaded: &Loaded,
    tag: &str,
    options: &Options,
    side: &mut Side,
) -> Result<()> {
    if interrupted() {
        bail!("interrupted before {} started", side.label);
    }
    let project = format!("{}-{tag}-{}", options.prefix, std::process::id());
    let dir = temp_dir(tag)?;
    let networks_needed = loaded.project.network_names().len() + 1;
    let subnets = if runner.dry_run {
        (0..networks_needed)
            .map(|i| format!("10.236.{i}.0/24"))
            .collect()
    } else {
        free_subnets(sh, runner, networks_needed)?
    };
    let staged = stage::stage(sh, runner, &loaded.project, &project, &subnets, dir.path())?;
    let file = dir.path().join("compose.yml");
    crate::atomic::write(&file, staged.yaml.as_bytes(), 0o600)?;
    side.not_measured = staged.not_measured.clone();
    side.project = Some(project.clone());
    if staged.services.is_empty() {
        eprintln!(
            "{}: no service has an image here; nothing to measure",
            side.label
        );
        finish(side, &HashMap::new(), &[], &HashMap::new(), &HashMap::new());
        return Ok(());
    }
    let stack = Stack {
        sh,
        runner,
        engine,
        project: project.clone(),
        file,
        networks: staged.networks.clone(),
        dir,
    };
    eprintln!(
        "{}: starting {} service(s) as project {project}",
        side.label,
        staged.services.len()
    );
    let began = Instant::now();
    let up = runner.run(stack.compose(&["up", "-d", "--remove-orphans"]));
    if runner.dry_run {
        println!(
            "# would wait up to {}s until ready, then sample docker stats every second for {}s",
            options.timeout, options.duration
        );
        return Ok(());
    }
    if up.is_err() {
        eprintln!(
            "warning: compose up failed for {} (its error is above); measuring whatever started",
            side.label
        );
    }
    let names: Vec<String> = staged.services.iter().map(|(s, _)| s.clone()).collect();
    let (ready, failed) = wait(sh, runner, &project, &names, began, up.is_err(), options)?;
    side.not_measured.extend(failed);
    let all = containers::list(sh, runner, &project)?;
    // A service seen ready that has stopped since (it crashed right after start).
    let mut ready = ready;
    ready.retain(|service, _| {
        let mine: Vec<&containers::Container> =
            all.iter().filter(|c| &c.service == service).collect();
        if mine.iter().any(|c| c.is_running()) {
            return true;
        }
        let why = match health::standing(&mine) {
            health::Standing::Failed(why) | health::Standing::Pending(why) => why,
            health::Standing::Ready => "exited with code 0".into(),
        };
        side.not_measured.push(NotMeasured {
            service: service.clone(),
            reason: format!("stopped right after it started: {why}"),
        });
        false
    });
    let running: Vec<containers::Container> = all
        .into_iter()
        .filter(|c| c.is_running() && ready.contains_key(&c.service))
        .collect();
    let owner: HashMap<String, String> = running
        .iter()
        .map(|c| (c.name.clone(), c.service.clone()))
        .collect();
    let names: Vec<String> = running.iter().map(|c| c.name.clone()).collect();
    let mut snapshots = Vec::new();
    if !names.is_empty() {
        pause_until(
            Instant::now() + Duration::from_secs(options.settle),
            &side.label,
        )?;
        let stream = Stream::start(&names, runner)?;
        stream.warm_up(&names, 2, Duration::from_secs(15), &interrupted);
        let start = Instant::now();
        for tick in 1..=options.duration {
            pause_until(start + Duration::from_secs(tick), &side.label)?;
            snapshots.push(stream.snapshot());
        }
    }
    let images: HashMap<String, String> = staged.services.into_iter().collect();
    drop(stack);
    finish(side, &ready, &snapshots, &owner, &images);
    Ok(())
}

/// Sleep until `until`, giving up when Ctrl-C is pressed.
fn pause_until(until: Instant, label: &str) -> Result<()> {
    while Instant::now() < until {
        if interrupted() {
            bail!("interrupted while measuring {label}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Poll until every service is ready, failed, or the timeout passed.
/// Returns the ready services with their time to ready, and the rest as not measured.
fn wait(
    sh: &Shell,
    runner: &Runner,
    project: &str,
    services: &[String],
    began: Instant,
    up_failed: bool,
    options: &Options,
) -> Result<(HashMap<String, f64>, Vec<NotMeasured>)> {
    let mut ready: HashMap<String, f64> = HashMap::new();
    let mut failed: Vec<NotMeasured> = Vec::new();
    let deadline = began + Duration::from_secs(options.timeout);
    loop {
        if interrupted() {
            bail!("interrupted while waiting for {project}");
        }
        let all = containers::list(sh, runner, project)?;
        let mut waiting = Vec::new();
        for service in services {
            if ready.contains_key(service) || failed.iter().any(|f| &f.service == service) {
                continue;
            }
            let mine: Vec<&containers::Container> =
                all.iter().filter(|c| &c.service == service).collect();
            match health::standing(&mine) {
                health::Standing::Ready if mine.iter().any(|c| c.is_running()) => {
                    ready.insert(service.clone(), began.elapsed().as_secs_f64());
                }
                health::Standing::Ready => failed.push(NotMeasured {
                    service: service.clone(),
                    reason: "exited at once (exit code 0): nothing to sample".into(),
                }),
                health::Standing::Failed(why) => failed.push(NotMeasured {
                    service: service.clone(),
                    reason: format!("failed to start: {why}"),
                }),
                health::Standing::Pending(why) if up_failed && mine.is_empty() => {
                    failed.push(NotMeasured {
                        service: service.clone(),
                        reason: format!(
                            "compose up failed before it was created ({why}); `cargo xtask check` on these files names the defects"
                        ),
                    })
                }
                health::Standing::Pending(why) => waiting.push((service.clone(), why)),
            }
        }
        if waiting.is_empty() {
            return Ok((ready, failed));
        }
        if Instant::now() >= deadline {
            for (service, why) in waiting {
                failed.push(NotMeasured {
                    service,
                    reason: format!("still {why} after {}s (raise --timeout)", options.timeout),
                });
            }
            return Ok((ready, failed));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Write the live figures into the side's totals and service rows: `owner`
/// maps each container to its service, `images` each service to the image it ran.
fn finish(
    side: &mut Side,
    ready: &HashMap<String, f64>,
    snapshots: &[HashMap<String, sampler::Reading>],
    owner: &HashMap<String, String>,
    images: &HashMap<String, String>,
) {
    let summary = sampler::summarise(snapshots, owner);
    for row in &mut side.services {
        row.measured_image = images.get(&row.name).cloned();
        match summary.services.get(&row.name) {
            Some(fig) => {
                row.status = "measured";
                row.memory_bytes = Some(fig.memory_mean);
                row.memory_max_bytes = Some(fig.memory_max);
                row.cpu_percent = Some(fig.cpu_mean);
                row.cpu_max_percent = Some(fig.cpu_max);
                row.samples = Some(fig.samples);
                row.time_to_healthy_s = ready.get(&row.name).copied();
            }
            None => {
                row.status = "not-measured";
                if !side.not_measured.iter().any(|n| n.service == row.name) {
                    side.not_measured.push(NotMeasured {
                        service: row.name.clone(),
                        reason: "ready, but docker stats gave no figures".into(),
                    });
                }
            }
        }
    }
    let measured = !summary.services.is_empty();
    side.memory_bytes = measured.then_some(summary.memory_mean);
    side.memory_max_bytes = measured.then_some(summary.memory_max);
    side.memory_stddev_bytes = measured.then_some(summary.memory_stddev);
    side.cpu_percent = measured.then_some(summary.cpu_mean);
    side.cpu_max_percent = measured.then_some(summary.cpu_max);
    side.samples = Some(summary.samples);
    side.time_to_healthy_s = ready.values().copied().reduce(f64::max);
}
