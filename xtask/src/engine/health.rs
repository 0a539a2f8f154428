//! Waiting until a project's services are up: polls the engine itself (Compose
//! v1 has no `up --wait`), shows "3/5 healthy: waiting for mixnode-2", and on
//! failure or timeout names the service and shows its last log lines.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use xshell::Shell;

use super::containers::{self, Container};
use crate::process::Runner;

/// Log lines shown for a service that failed.
pub const FAILURE_LOG_LINES: usize = 20;
/// Restarts after which a failing container counts as crash-looping.
const CRASH_LOOP_RESTARTS: i64 = 3;
const POLL: Duration = Duration::from_millis(500);

/// Where one expected service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Running and healthy, or running without a healthcheck (not a one-shot),
    /// or finished with 0.
    Ready,
    /// Not created yet, starting, or restarting.
    Pending(String),
    /// Exited with an error, dead, or reported unhealthy.
    Failed(String),
}

/// Judge one service from its containers.
pub fn standing(containers: &[&Container]) -> Standing {
    if containers.is_empty() {
        return Standing::Pending("not created yet".into());
    }
    let mut pending = None;
    for c in containers {
        if c.restart_count >= CRASH_LOOP_RESTARTS && c.exit_code != 0 {
            return Standing::Failed(format!(
                "crash-looping (restarted {} times, last exit code {})",
                c.restart_count, c.exit_code
            ));
        }
        match (c.state.as_str(), c.health.as_deref()) {
            ("exited", _) if c.health.is_none() && c.exit_code == 0 => {}
            ("exited" | "dead", _) => {
                return Standing::Failed(format!("{} (exit code {})", c.state, c.exit_code))
            }
            ("running", Some("unhealthy")) => return Standing::Failed("unhealthy".into()),
            ("running", None) if c.one_shot => {
                pending = Some("running (runs once: waiting for it to finish)".into())
            }
            ("running", None | Some("healthy")) => {}
            (state, health) => {
                pending = Some(match health {
                    Some(h) => format!("{state}, {h}"),
                    None => state.to_string(),
                })
            }
        }
    }
    pending.map_or(Standing::Ready, Standing::Pending)
}

/// Poll until every service in `services` is ready, or fail naming every
/// service that is failing at that moment (see [`explain`]).
pub fn wait_ready(
    sh: &Shell,
    runner: &Runner,
    project: &str,
    services: &[String],
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    if runner.dry_run {
        println!(
            "# would wait up to {}s for: {}",
            timeout.as_secs(),
            services.join(", ")
        );
        return Ok(started.elapsed());
    }
    let bar = ProgressBar::new(services.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} healthy: {msg} ({elapsed})")
            .expect("static template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let interactive = std::io::stderr().is_terminal();
    let mut last_logged: Option<String> = None;
    let result = loop {
        let all = containers::list(sh, runner, project)?;
        let mut ready = 0;
        let mut waiting: Vec<(String, String)> = Vec::new();
        let mut any_failed = false;
        for service in services {
            match standing(&of_service(&all, service)) {
                Standing::Ready => ready += 1,
                Standing::Pending(why) => waiting.push((service.clone(), why)),
                Standing::Failed(_) => any_failed = true,
            }
        }
        bar.set_position(ready);
        if any_failed {
            break Err(failures(&all, services, None));
        }
        if waiting.is_empty() {
            break Ok(());
        }
        let message = format!(
            "waiting for {}",
            waiting
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Without a terminal the bar is hidden: log each change as one line.
        if !interactive && last_logged.as_deref() != Some(message.as_str()) {
            eprintln!("{ready}/{} healthy: {message}", services.len());
            last_logged = Some(message.clone());
        }
        bar.set_message(message);
        if started.elapsed() >= timeout {
            break Err(failures(&all, services, Some(timeout)));
        }
        std::thread::sleep(POLL);
    };
    bar.finish_and_clear();
    match result {
        Ok(()) => Ok(started.elapsed()),
        Err(failed) => Err(explain(sh, runner, &failed, None)),
    }
}

/// After `compose up` itself failed: both flavours wait for `depends_on`
/// conditions themselves (v1 with `service_healthy`, v2 for every condition,
/// and v2 may give up while the dependency is still restarting), so Compose's
/// own error names a container, not a cause. Keep polling until every service
/// that has a container has settled (ready, failed, or never started), at most
/// `timeout`, then name every failing service with its logs and health output;
/// Compose's error follows as detail.
pub fn explain_up_failure(
    sh: &Shell,
    runner: &Runner,
    project: &str,
    services: &[String],
    timeout: Duration,
    compose_error: anyhow::Error,
) -> anyhow::Error {
    if runner.dry_run {
        return compose_error;
    }
    let started = Instant::now();
    let last = loop {
        let Ok(all) = containers::list(sh, runner, project) else {
            return compose_error;
        };
        let settled = services
            .iter()
            .all(|service| settled(&of_service(&all, service)));
        if settled || started.elapsed() >= timeout {
            break all;
        }
        std::thread::sleep(POLL);
    };
    let timed_out = (started.elapsed() >= timeout).then_some(timeout);
    let failed = failures(&last, services, timed_out);
    if failed.is_empty() {
        return compose_error.context("compose up failed, yet no service shows a failure");
    }
    explain(sh, runner, &failed, Some(&compose_error))
}

/// The containers of one service.
fn of_service<'a>(all: &'a [Container], service: &str) -> Vec<&'a Container> {
    all.iter().filter(|c| c.service == service).collect()
}

/// Whether a service has reached a verdict after `compose up` failed: ready,
/// failed, no container, or containers that were created but never started
/// (a dependency failed first). Restarting and starting ones are not settled.
fn settled(containers: &[&Container]) -> bool {
    if containers.iter().all(|c| c.state == "created") {
        return true;
    }
    !matches!(standing(containers), Standing::Pending(_))
}

/// One service that did not come up, as the engine shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub service: String,
    pub why: String,
    pub container: Option<String>,
    pub health_log: Option<String>,
}

/// Every service in `services` that is unhealthy, exited, dead or restarting
/// now; with `timed_out`, also those still pending after it.
pub fn failures(
    all: &[Container],
    services: &[String],
    timed_out: Option<Duration>,
) -> Vec<Failure> {
    let mut out = Vec::new();
    for service in services {
        let mine = of_service(all, service);
        let why = match standing(&mine) {
            Standing::Failed(why) => why,
            Standing::Pending(_) if mine.iter().any(|c| c.state == "restarting") => {
                let c = mine
                    .iter()
                    .find(|c| c.state == "restarting")
                    .expect("found");
                format!(
                    "restarting (restarted {} times, last exit code {})",
                    c.restart_count, c.exit_code
                )
            }
            Standing::Pending(why) => match timed_out {
                Some(t) => format!("still {why} after {}s (raise --timeout)", t.as_secs()),
                None => continue,
            },
            Standing::Ready => continue,
        };
        let first = mine.first();
        out.push(Failure {
            service: service.clone(),
            why,
            container: first.map(|c| c.id.clone()),
            health_log: first.and_then(|c| c.health_log.clone()),
        });
    }
    out
}

/// Print each failed service's last log lines and last health check, and make
/// the error: one clause per service, then `detail` (Compose's own error).
pub fn explain(
    sh: &Shell,
    runner: &Runner,
    failed: &[Failure],
    detail: Option<&anyhow::Error>,
) -> anyhow::Error {
    for f in failed {
        let logs = f
            .container
            .as_deref()
            .map(|id| containers::tail_logs(sh, runner, id, FAILURE_LOG_LINES))
            .unwrap_or_default();
        if !logs.trim().is_empty() {
            eprintln!(
                "--- last {FAILURE_LOG_LINES} log lines of {} ---",
                f.service
            );
            eprint!("{logs}");
            if !logs.ends_with('\n') {
                eprintln!();
            }
            eprintln!("---");
        }
        if let Some(check) = &f.health_log {
            eprintln!("last health check of {}: {check}", f.service);
        }
    }
    anyhow::anyhow!("{}", message(failed, detail))
}

/// The one-line error of [`explain`].
fn message(failed: &[Failure], detail: Option<&anyhow::Error>) -> String {
    let clauses: Vec<String> = failed
        .iter()
        .map(|f| format!("service `{}` is {}", f.service, f.why))
        .collect();
    let hint = match failed {
        [one] => format!("see its logs above or `cargo xtask logs {}`", one.service),
        _ => "see their logs above or `cargo xtask logs SERVICE`".to_string(),
    };
    let mut text = format!("{}; {hint}", clauses.join("; "));
    if let Some(detail) = detail {
        text.push_str(&format!(" (Compose said: {detail:#})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: &str, health: Option<&str>, code: i64) -> Container {
        Container {
            service: "s".into(),
            name: "n".into(),
            id: "i".into(),
            state: state.into(),
            health: health.map(String::from),
            health_log: None,
            exit_code: code,
            restart_count: 0,
            ports: vec![],
            one_shot: false,
        }
    }

    #[test]
    fn a_one_shot_is_ready_only_once_it_exited_0() {
        let running = Container {
            one_shot: true,
            ..c("running", None, 0)
        };
        assert!(matches!(standing(&[&running]), Standing::Pending(_)));
        let done = Container {
            one_shot: true,
            ..c("exited", None, 0)
        };
        assert_eq!(standing(&[&done]), Standing::Ready);
        let failed = Container {
            one_shot: true,
            ..c("exited", None, 1)
        };
        assert!(matches!(standing(&[&failed]), Standing::Failed(_)));
    }

    fn failure(service: &str, why: &str) -> Failure {
        Failure {
            service: service.into(),
            why: why.into(),
            container: None,
            health_log: None,
        }
    }

    #[test]
    fn every_failing_service_is_named_restarting_ones_too() {
        let mut pg = c("restarting", None, 3);
        pg.service = "postgres".into();
        pg.restart_count = 1;
        let mut grafana = c("running", Some("unhealthy"), 0);
        grafana.service = "grafana".into();
        grafana.health_log = Some("exit code 1: connection refused".into());
        let mut prom = c("running", Some("starting"), 0);
        prom.service = "prometheus".into();
        let all = [pg, grafana, prom];
        let names: Vec<String> = ["postgres", "grafana", "prometheus"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let failed = failures(&all, &names, None);
        assert_eq!(
            failed
                .iter()
                .map(|f| f.service.as_str())
                .collect::<Vec<_>>(),
            ["postgres", "grafana"]
        );
        assert_eq!(
            failed[0].why,
            "restarting (restarted 1 times, last exit code 3)"
        );
        assert_eq!(
            failed[1].health_log.as_deref(),
            Some("exit code 1: connection refused")
        );
        let timed_out = failures(&all, &names, Some(Duration::from_secs(9)));
        assert_eq!(
            timed_out[2].why,
            "still running, starting after 9s (raise --timeout)"
        );
    }

    #[test]
    fn a_service_created_but_never_started_has_settled() {
        assert!(settled(&[&c("created", None, 0)]));
        assert!(settled(&[&c("exited", None, 1)]));
        assert!(!settled(&[&c("restarting", None, 1)]));
        assert!(!settled(&[&c("running", Some("starting"), 0)]));
    }

    #[test]
    fn the_error_names_each_service_and_ends_with_composes_message() {
        let compose = anyhow::anyhow!("dependency failed to start");
        let one = message(&[failure("postgres", "crash-looping")], Some(&compose));
        assert_eq!(
            one,
            "service `postgres` is crash-looping; see its logs above or `cargo xtask logs postgres` (Compose said: dependency failed to start)"
        );
        let two = message(
            &[
                failure("a", "unhealthy"),
                failure("b", "exited (exit code 1)"),
            ],
            None,
        );
        assert_eq!(
            two,
            "service `a` is unhealthy; service `b` is exited (exit code 1); see their logs above or `cargo xtask logs SERVICE`"
        );
    }

    #[test]
    fn judges_state_and_health() {
        assert_eq!(standing(&[]), Standing::Pending("not created yet".into()));
        assert_eq!(
            standing(&[&c("running", Some("healthy"), 0)]),
            Standing::Ready
        );
        assert_eq!(standing(&[&c("running", None, 0)]), Standing::Ready);
        assert_eq!(standing(&[&c("exited", None, 0)]), Standing::Ready);
        assert_eq!(
            standing(&[&c("running", Some("starting"), 0)]),
            Standing::Pending("running, starting".into())
        );
        assert_eq!(
            standing(&[&c("running", Some("unhealthy"), 0)]),
            Standing::Failed("unhealthy".into())
        );
        assert_eq!(
            standing(&[&c("exited", None, 3)]),
            Standing::Failed("exited (exit code 3)".into())
        );
        assert_eq!(
            standing(&[&c("created", None, 0)]),
            Standing::Pending("created".into())
        );
    }
}
