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

/// Poll until every service in `services` is ready, or fail naming the service.
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
        let mut failed = None;
        for service in services {
            let mine: Vec<&Container> = all.iter().filter(|c| &c.service == service).collect();
            match standing(&mine) {
                Standing::Ready => ready += 1,
                Standing::Pending(why) => waiting.push((service.clone(), why)),
                Standing::Failed(why) => {
                    failed = Some((service.clone(), why, mine.first().map(|c| c.id.clone())));
                    break;
                }
            }
        }
        bar.set_position(ready);
        if let Some((service, why, id)) = failed {
            break Err((service, why, id));
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
            let (service, why) = waiting.swap_remove(0);
            let id = all
                .iter()
                .find(|c| c.service == service)
                .map(|c| c.id.clone());
            break Err((
                service,
                format!("still {why} after {}s (raise --timeout)", timeout.as_secs()),
                id,
            ));
        }
        std::thread::sleep(POLL);
    };
    bar.finish_and_clear();
    match result {
        Ok(()) => Ok(started.elapsed()),
        Err((service, why, id)) => Err(failure(sh, runner, &service, &why, id.as_deref())),
    }
}

/// After `compose up` itself failed (v1 stops at a dependency that is not
/// healthy): the first failed service with its logs, if the engine shows one.
pub fn diagnose(
    sh: &Shell,
    runner: &Runner,
    project: &str,
    services: &[String],
) -> Option<anyhow::Error> {
    let all = containers::list(sh, runner, project).ok()?;
    services.iter().find_map(|service| {
        let mine: Vec<&Container> = all.iter().filter(|c| &c.service == service).collect();
        match standing(&mine) {
            Standing::Failed(why) => Some(failure(
                sh,
                runner,
                service,
                &why,
                mine.first().map(|c| c.id.as_str()),
            )),
            _ => None,
        }
    })
}

/// Print the service's last log lines and make the one-line error.
fn failure(
    sh: &Shell,
    runner: &Runner,
    service: &str,
    why: &str,
    id: Option<&str>,
) -> anyhow::Error {
    let logs = id
        .map(|id| containers::tail_logs(sh, runner, id, FAILURE_LOG_LINES))
        .unwrap_or_default();
    if !logs.trim().is_empty() {
        eprintln!("--- last {FAILURE_LOG_LINES} log lines of {service} ---");
        eprint!("{logs}");
        if !logs.ends_with('\n') {
            eprintln!();
        }
        eprintln!("---");
    }
    anyhow::anyhow!(
        "service `{service}` is {why}; see its logs above or `cargo xtask logs {service}`"
    )
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
