//! Waiting for a stack to converge: every replicated service has all its
//! replicas running (Swarm reports a task with a healthcheck `running` only
//! once it is healthy), no rolling update or rollback is in progress, and
//! every one-shot service has a task that completed. Polls `docker stack ps`
//! and `docker stack services` (two CLI calls per round) and shows progress.
//! A service whose new tasks fail or are rejected three times, an update that
//! paused or rolled back, or the timeout ends the wait with the task, its
//! node, its error and the last lines of the service's log.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use indicatif::{ProgressBar, ProgressStyle};
use xshell::{cmd, Shell};

use crate::process::Runner;

const POLL: Duration = Duration::from_millis(700);
/// Failed or rejected new tasks of one service before the wait gives up.
const MAX_FAILURES: usize = 3;

/// One line of `docker stack ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    /// `STACK_service.SLOT` (or `.NODEID` for global services).
    pub name: String,
    pub node: String,
    pub desired: String,
    /// `Running 5 seconds ago`, `Failed 2 seconds ago`, ...
    pub current: String,
    pub error: String,
}

impl Task {
    /// The service part of the task name (`STACK_mixnode-1`).
    pub fn service(&self) -> &str {
        self.name
            .rsplit_once('.')
            .map_or(self.name.as_str(), |(s, _)| s)
    }

    pub fn state(&self) -> &str {
        self.current.split_whitespace().next().unwrap_or_default()
    }

    fn failed(&self) -> bool {
        matches!(self.state(), "Failed" | "Rejected")
    }
}

/// The `--format` for [`parse_tasks`].
pub const TASK_FORMAT: &str =
    "{{.ID}}\t{{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}";
/// The `--format` for [`parse_services`].
pub const SERVICE_FORMAT: &str = "{{.Name}}\t{{.Replicas}}\t{{.Image}}";
/// The `--format` for update states (`docker service inspect`).
pub const UPDATE_FORMAT: &str =
    "{{.Spec.Name}}\t{{if .UpdateStatus}}{{.UpdateStatus.State}}\t{{.UpdateStatus.Message}}{{end}}";

pub fn parse_tasks(text: &str) -> Vec<Task> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f.len() >= 5).then(|| Task {
                id: f[0].to_string(),
                // `docker stack ps` prefixes history rows with ` \_ `.
                name: f[1].trim_start_matches([' ', '\\', '_']).to_string(),
                node: f[2].to_string(),
                desired: f[3].to_string(),
                current: f[4].to_string(),
                error: f.get(5).unwrap_or(&"").trim_matches('"').to_string(),
            })
        })
        .collect()
}

/// `name -> (running, desired)` from `docker stack services`.
pub fn parse_services(text: &str) -> BTreeMap<String, (u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let name = f.next()?.to_string();
            let replicas = f.next()?;
            // `2/3`, or `0/1 (max 1 per node)`.
            let (running, desired) = replicas.split_whitespace().next()?.split_once('/')?;
            Some((name, (running.parse().ok()?, desired.parse().ok()?)))
        })
        .collect()
}

/// Where one service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Ready,
    Waiting(String),
    Failed(String),
}

/// The standing of `service` (`STACK_name`) from one poll. `baseline` holds
/// the ids of tasks that existed before the deploy: their failures are old.
pub fn standing(
    service: &str,
    one_shot: bool,
    replicas: Option<(u64, u64)>,
    update: Option<(&str, &str)>,
    tasks: &[Task],
    baseline: &BTreeSet<String>,
) -> Standing {
    let mine: Vec<&Task> = tasks.iter().filter(|t| t.service() == service).collect();
    let fresh_failures: Vec<&&Task> = mine
        .iter()
        .filter(|t| t.failed() && !baseline.contains(&t.id))
        .collect();
    if let Some((state, message)) = update {
        if matches!(state, "paused" | "rollback_paused" | "rollback_completed") {
            let cause = fresh_failures
                .first()
                .map(|t| format!("; {}", describe(t)))
                .unwrap_or_default();
            return Standing::Failed(format!("update {state} ({message}){cause}"));
        }
    }
    if matches!(replicas, Some((0, 0))) {
        // Scaled to zero (`--replicas NAME=0`): nothing to wait for.
        return Standing::Ready;
    }
    if one_shot {
        if mine.iter().any(|t| t.state() == "Complete") {
            return Standing::Ready;
        }
    } else if fresh_failures.len() >= MAX_FAILURES {
        // Replicated services restart; past a few fresh failures they loop.
    } else if let Some((running, desired)) = replicas {
        let starting = mine
            .iter()
            .filter(|t| t.desired == "Running" && t.state() != "Running")
            .count();
        let updating = update.is_some_and(|(s, _)| matches!(s, "updating" | "rollback_started"));
        if running == desired && starting == 0 && !updating {
            return Standing::Ready;
        }
    }
    if fresh_failures.len() >= MAX_FAILURES {
        let t = fresh_failures[0];
        return Standing::Failed(describe(t));
    }
    let latest = mine
        .iter()
        .find(|t| t.desired == "Running" || t.desired == "Ready" || t.desired == "Complete")
        .or(mine.first());
    Standing::Waiting(match latest {
        Some(t) if !t.error.is_empty() => describe(t),
        Some(t) => format!("{} {}", t.name, t.state()),
        None => "no task yet".into(),
    })
}

fn describe(t: &Task) -> String {
    let error = if t.error.is_empty() {
        String::new()
    } else {
        format!(": {}", t.error)
    };
    format!(
        "task {} ({}) on node {}: {}{error}",
        t.name, t.id, t.node, t.current
    )
}

/// One poll of the whole stack.
pub struct Snapshot {
    pub tasks: Vec<Task>,
    pub replicas: BTreeMap<String, (u64, u64)>,
    pub updates: BTreeMap<String, (String, String)>,
}

pub fn snapshot(sh: &Shell, runner: &Runner, stack: &str) -> Result<Snapshot> {
    let (tf, sf, uf) = (TASK_FORMAT, SERVICE_FORMAT, UPDATE_FORMAT);
    let tasks = runner
        .probe(cmd!(sh, "docker stack ps --no-trunc --format {tf} {stack}"))
        .unwrap_or_default();
    let services = runner
        .probe(cmd!(sh, "docker stack services --format {sf} {stack}"))
        .unwrap_or_default();
    let replicas = parse_services(&services);
    let names: Vec<&String> = replicas.keys().collect();
    let updates = if names.is_empty() {
        String::new()
    } else {
        runner
            .probe(cmd!(sh, "docker service inspect --format {uf} {names...}"))
            .unwrap_or_default()
    };
    Ok(Snapshot {
        tasks: parse_tasks(&tasks),
        replicas,
        updates: updates
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '\t');
                let name = f.next()?.to_string();
                let state = f.next().unwrap_or_default().to_string();
                Some((name, (state, f.next().unwrap_or_default().to_string())))
            })
            .filter(|(_, (s, _))| !s.is_empty())
            .collect(),
    })
}

/// Task ids of the stack right now (the baseline before a deploy).
pub fn task_ids(sh: &Shell, runner: &Runner, stack: &str) -> BTreeSet<String> {
    snapshot(sh, runner, stack)
        .map(|s| s.tasks.into_iter().map(|t| t.id).collect())
        .unwrap_or_default()
}

/// What [`wait`] waits for.
pub struct Goal<'a> {
    /// Compose names of the services that must converge.
    pub services: &'a [String],
    /// Those of them that run once and complete.
    pub one_shots: &'a [String],
    /// Task ids from before the change (their failures are old).
    pub baseline: &'a BTreeSet<String>,
    pub timeout: Duration,
    /// A rollback was asked for: `rollback_completed` is success.
    pub rolling_back: bool,
}

/// Wait until every service of the goal converged.
pub fn wait(sh: &Shell, runner: &Runner, stack: &str, goal: &Goal<'_>) -> Result<Duration> {
    let Goal {
        services,
        one_shots,
        baseline,
        timeout,
        rolling_back,
    } = *goal;
    let started = Instant::now();
    if runner.dry_run {
        println!(
            "# would wait up to {}s for {} service(s) of stack {stack} to converge",
            timeout.as_secs(),
            services.len()
        );
        return Ok(started.elapsed());
    }
    let bar = ProgressBar::new(services.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} converged: {msg} ({elapsed})")
            .expect("static template"),
    );
    let interactive = std::io::stderr().is_terminal();
    if interactive {
        bar.enable_steady_tick(Duration::from_millis(120));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_logged = String::new();
    let mut ready_twice = false;
    let result = loop {
        let snap = snapshot(sh, runner, stack)?;
        let mut ready = 0;
        let mut waiting = Vec::new();
        let mut failed = None;
        for name in services {
            let full = format!("{stack}_{name}");
            let update = snap
                .updates
                .get(&full)
                .map(|(s, m)| (s.as_str(), m.as_str()))
                // A rollback asked for is the goal, not a failed update.
                .map(|(s, m)| match s {
                    "rollback_completed" if rolling_back => ("completed", m),
                    s => (s, m),
                });
            match standing(
                &full,
                one_shots.contains(name),
                snap.replicas.get(&full).copied(),
                update,
                &snap.tasks,
                baseline,
            ) {
                Standing::Ready => ready += 1,
                Standing::Waiting(why) => waiting.push(format!("{name} ({why})")),
                Standing::Failed(why) => {
                    failed = Some((name.clone(), why));
                    break;
                }
            }
        }
        bar.set_position(ready);
        if let Some((name, why)) = failed {
            break Err((name, why));
        }
        if waiting.is_empty() {
            // Two ready polls in a row: an update the engine has not started
            // yet cannot pass for a converged one.
            if ready_twice {
                break Ok(());
            }
            ready_twice = true;
        } else {
            ready_twice = false;
        }
        let message = format!("waiting for {}", waiting.join(", "));
        if !interactive && !waiting.is_empty() && message != last_logged {
            eprintln!("{ready}/{} converged: {message}", services.len());
            last_logged = message.clone();
        }
        bar.set_message(message);
        if started.elapsed() >= timeout {
            break Err((
                "stack".into(),
                format!(
                    "not converged after {}s (raise --timeout): {}",
                    timeout.as_secs(),
                    waiting.join("; ")
                ),
            ));
        }
        std::thread::sleep(POLL);
    };
    bar.finish_and_clear();
    match result {
        Ok(()) => Ok(started.elapsed()),
        Err((name, why)) => {
            let full = format!("{stack}_{name}");
            let logs = if name == "stack" {
                String::new()
            } else {
                service_logs(sh, runner, &full)
            };
            Err(anyhow!(
                "stack {stack}: service `{name}` did not converge: {why}{logs}\n(see `cargo xtask deploy status --stack {stack}`)"
            ))
        }
    }
}

/// The last log lines of a service, its stdout and stderr together
/// (`docker service logs` splits them; a shell joins them).
fn service_logs(sh: &Shell, runner: &Runner, full: &str) -> String {
    let script = "docker service logs --raw --tail 10 \"$0\" 2>&1";
    runner
        .probe(cmd!(sh, "sh -c {script} {full}"))
        .filter(|l| !l.is_empty())
        .map(|l| format!("\nlast log lines of {full}:\n{l}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, name: &str, desired: &str, current: &str, error: &str) -> Task {
        Task {
            id: id.into(),
            name: name.into(),
            node: "vm".into(),
            desired: desired.into(),
            current: current.into(),
            error: error.into(),
        }
    }

    #[test]
    fn parses_stack_ps_and_services() {
        let ps = "abc\ts_a.1\tvm\tRunning\tRunning 5 seconds ago\t\n\
                  def\t \\_ s_a.1\tvm\tShutdown\tRejected 9 seconds ago\t\"No such image: x:1\"\n\
                  short line\n";
        let tasks = parse_tasks(ps);
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1].name, "s_a.1");
        assert_eq!(tasks[1].service(), "s_a");
        assert_eq!(tasks[1].error, "No such image: x:1");
        assert_eq!(tasks[1].state(), "Rejected");
        let svc = parse_services("s_a\t2/3\tx:1\ns_b\t0/1 (max 1 per node)\tx:1\ngarbage\n");
        assert_eq!(svc["s_a"], (2, 3));
        assert_eq!(svc["s_b"], (0, 1));
        assert_eq!(svc.len(), 2);
    }

    #[test]
    fn standing_names_the_failing_task() {
        let none = BTreeSet::new();
        let tasks = vec![
            task("n", "s_a.1", "Ready", "Preparing 1 second ago", ""),
            task(
                "f1",
                "s_a.1",
                "Shutdown",
                "Rejected 2 seconds ago",
                "No such image: x:1",
            ),
            task(
                "f2",
                "s_a.1",
                "Shutdown",
                "Rejected 5 seconds ago",
                "No such image: x:1",
            ),
        ];
        let s = standing("s_a", false, Some((0, 1)), None, &tasks, &none);
        assert!(
            matches!(&s, Standing::Waiting(w) if w.contains("s_a.1")),
            "{s:?}"
        );
        let mut more = tasks.clone();
        more.push(task(
            "f3",
            "s_a.1",
            "Shutdown",
            "Failed 9 seconds ago",
            "task: non-zero exit (2)",
        ));
        match standing("s_a", false, Some((0, 1)), None, &more, &none) {
            Standing::Failed(why) => {
                assert!(why.contains("task s_a.1 (f1) on node vm"), "{why}");
                assert!(why.contains("No such image: x:1"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // The same failures before the deploy do not count.
        let baseline: BTreeSet<String> = ["f1", "f2", "f3"].map(String::from).into();
        assert!(matches!(
            standing("s_a", false, Some((0, 1)), None, &more, &baseline),
            Standing::Waiting(_)
        ));
    }

    #[test]
    fn ready_needs_all_replicas_and_no_update() {
        let none = BTreeSet::new();
        let tasks = vec![task("a", "s_a.1", "Running", "Running 1 second ago", "")];
        assert_eq!(
            standing("s_a", false, Some((1, 1)), None, &tasks, &none),
            Standing::Ready
        );
        assert!(matches!(
            standing(
                "s_a",
                false,
                Some((1, 1)),
                Some(("updating", "")),
                &tasks,
                &none
            ),
            Standing::Waiting(_)
        ));
        assert!(matches!(
            standing("s_a", false, Some((1, 1)), Some(("rollback_completed", "update rolled back")), &tasks, &none),
            Standing::Failed(w) if w.contains("rolled back")
        ));
        let failed = vec![
            tasks[0].clone(),
            task(
                "x",
                "s_a.1",
                "Shutdown",
                "Failed 3 seconds ago",
                "task: non-zero exit (3)",
            ),
        ];
        assert!(matches!(
            standing("s_a", false, Some((1, 1)), Some(("rollback_completed", "done")), &failed, &none),
            Standing::Failed(w) if w.contains("task s_a.1 (x) on node vm: Failed 3 seconds ago: task: non-zero exit (3)")
        ));
        let starting = vec![
            tasks[0].clone(),
            task("b", "s_a.2", "Running", "Starting 1 second ago", ""),
        ];
        assert!(matches!(
            standing("s_a", false, Some((1, 2)), None, &starting, &none),
            Standing::Waiting(_)
        ));
        let done = vec![task(
            "m",
            "s_migrate.1",
            "Shutdown",
            "Complete 3 seconds ago",
            "",
        )];
        assert_eq!(
            standing("s_migrate", true, Some((0, 1)), None, &done, &none),
            Standing::Ready
        );
    }
}
