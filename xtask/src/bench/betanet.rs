//! `cargo xtask bench betanet`: brings up the compose betanet (PostgreSQL
//! and the three mixnodes, base.yml + betanet.yml) as a throwaway project of
//! its own (`fogmix-bench-<pid>`: own networks, subnets in 10.234.250.0/23
//! by default, free 127.0.0.1 ports, a 0600 env file in a temp directory),
//! runs the `loadgen` profile at rising `--rate`s inside the betanet
//! network, and prints for each rate the packets sent and lost and the
//! p50/p99 latency, and the highest rate with zero loss. The project is
//! removed (`down --volumes`) when the bench ends, fails or is interrupted
//! with Ctrl-C, so it can run beside a developer's own stack.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xshell::Shell;

use crate::dotenv::{random_secret, DotEnv, EnvFile};
use crate::engine::{compose::Compose, health, Engine};
use crate::process::Runner;

const MIXNODES: [&str; 3] = ["mixnode-1", "mixnode-2", "mixnode-3"];
/// Image variables taken from the user's environment (process env first,
/// then their env file), so the bench runs the images they built.
const IMAGE_VARS: [&str; 2] = ["MIXNODE_IMAGE", "POSTGRES_IMAGE"];

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask bench betanet\n  cargo xtask bench betanet --rates 5000,10000,15000 --seconds 2 --json\n  MIXNODE_IMAGE=fog-compute/mixnode:dev POSTGRES_IMAGE=fog-offline/postgres:15.18-bookworm cargo xtask bench betanet"
)]
pub struct Cmd {
    /// Offered rates in packets/s, tried in rising order.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,15000,20000")]
    rates: Vec<u32>,
    /// Seconds of traffic per rate (packets = rate x seconds).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Subnets of the bench's fog and betanet networks.
    #[arg(long, default_value = "10.234.250.0/24")]
    fog_subnet: String,
    #[arg(long, default_value = "10.234.251.0/24")]
    betanet_subnet: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One loadgen run.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    rate: u32,
    sent: u64,
    delivered: u64,
    p50_ms: f64,
    p99_ms: f64,
    throughput_pps: f64,
}

/// Removes the bench's project and temp directory when dropped.
struct Teardown<'a> {
    sh: &'a Shell,
    runner: Runner,
    compose: Compose,
    dir: PathBuf,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let down = self.compose.cmd(
            self.sh,
            &["down", "--volumes", "--remove-orphans", "-t", "2"],
        );
        if let Err(e) = self.runner.run(down) {
            eprintln!(
                "warning: cleaning up {} failed: {e:#}",
                self.compose.project
            );
        }
        if !self.runner.dry_run {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> Result<()> {
        if self.rates.is_empty()
            || self.rates.contains(&0)
            || !(0.1..=600.0).contains(&self.seconds)
        {
            return Err(crate::UsageError(
                "--rates needs positive packets/s values and --seconds 0.1 to 600".into(),
            )
            .into());
        }
        crate::interrupt::catch("removing the bench's containers, networks and volumes");
        let runner = Runner::new(global);
        let root = crate::project_root();
        let engine = Engine::detect(global.verbose)?;
        let project = format!("fogmix-bench-{}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        std::fs::create_dir_all(&dir)?;
        let env_file = dir.join("bench.env");
        let ports = self.write_env(&root, &project, &env_file)?;
        let compose = Compose::new(
            engine,
            &root,
            project.clone(),
            &env_file,
            vec!["compose/base.yml".into(), "compose/betanet.yml".into()],
        );
        sh.change_dir(&root);
        let teardown = Teardown {
            sh,
            runner,
            compose: compose.clone(),
            dir,
        };
        eprintln!("bringing up {project} (postgres + 3 mixnodes)...");
        let mut up = vec!["up", "-d"];
        up.extend(MIXNODES);
        let services: Vec<String> = MIXNODES.iter().map(|s| s.to_string()).collect();
        let timeout = Duration::from_secs(300);
        if let Err(err) = runner.run(compose.cmd(sh, &up)) {
            let all: Vec<String> = std::iter::once("postgres".to_string())
                .chain(services.iter().cloned())
                .collect();
            return Err(health::explain_up_failure(
                sh, &runner, &project, &all, timeout, err,
            ));
        }
        health::wait_ready(sh, &runner, &project, &services, timeout)?;
        let mut steps = Vec::new();
        let mut rates = self.rates.clone();
        rates.sort_unstable();
        for rate in rates {
            if crate::interrupt::interrupted() {
                bail!("interrupted; removed {project}");
            }
            let packets = ((rate as f64 * self.seconds).ceil() as u64)
                .max(1)
                .to_string();
            let rate_arg = rate.to_string();
            eprintln!("loadgen: {packets} packets at {rate} packets/s...");
            let cmd = compose.cmd(
                sh,
                &[
                    "--profile",
                    "loadgen",
                    "run",
                    "--rm",
                    "-T",
                    "loadgen",
                    "--nodes",
                    "http://mixnode-1:8080,http://mixnode-2:8080,http://mixnode-3:8080",
                    "--packets",
                    &packets,
                    "--rate",
                    &rate_arg,
                    "--json",
                    "--timeout",
                    "30",
                ],
            );
            if runner.dry_run {
                runner.run(cmd)?;
                continue;
            }
            // loadgen exits 1 when packets were lost: still a measurement.
            let output = runner.output(cmd)?;
            let text = String::from_utf8_lossy(&output.stdout);
            let step = parse_step(rate, &text).with_context(|| {
                format!(
                    "loadgen at {rate} packets/s printed no report: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            })?;
            steps.push(step);
        }
        // Where packets went, per node, over all rates (from each /status).
        let nodes: Vec<(String, Value)> = if runner.dry_run {
            Vec::new()
        } else {
            MIXNODES
                .iter()
                .zip(&ports)
                .filter_map(|(name, port)| Some((name.to_string(), node_counters(*port)?)))
                .collect()
        };
        drop(teardown);
        if runner.dry_run {
            return Ok(());
        }
        if self.json {
            let mut report = report_json(&steps);
            report["nodes"] = nodes.into_iter().collect::<serde_json::Map<_, _>>().into();
            println!("{report}");
        } else {
            print!("{}", table(&steps));
            for (name, counters) in &nodes {
                println!("{name}: {}", summarize(counters));
            }
        }
        Ok(())
    }

    /// The bench's env file: `.env.example` with the user's image choices,
    /// a fresh password, its own network names, subnets and host ports.
    /// Returns the mixnodes' published HTTP ports.
    fn write_env(
        &self,
        root: &std::path::Path,
        project: &str,
        path: &std::path::Path,
    ) -> Result<Vec<u16>> {
        let mut env = EnvFile::read(&root.join(".env.example"))?;
        let user = EnvFile::read(&DotEnv::locate(root)).ok();
        for var in IMAGE_VARS {
            let chosen = std::env::var(var)
                .ok()
                .or_else(|| user.as_ref().and_then(|u| u.get(var).map(str::to_string)));
            if let Some(image) = chosen.filter(|i| !i.is_empty()) {
                env.set(var, &image);
            }
        }
        env.set("COMPOSE_PROJECT_NAME", project);
        env.set("POSTGRES_PASSWORD", &random_secret(32)?);
        env.set("FOG_NETWORK_NAME", &format!("{project}-fog"));
        env.set("BETANET_NETWORK_NAME", &format!("{project}-betanet"));
        env.set("FOG_NETWORK_SUBNET", &self.fog_subnet);
        env.set("BETANET_NETWORK_SUBNET", &self.betanet_subnet);
        env.set("RUST_LOG", "warn");
        let mut ports = Vec::new();
        for var in [
            "MIXNODE1_PORT",
            "MIXNODE2_PORT",
            "MIXNODE3_PORT",
            "POSTGRES_PORT",
        ] {
            let port = free_port()?;
            env.set(var, &port.to_string());
            ports.push(port);
        }
        env.write(path)?;
        Ok(ports)
    }
}

/// `counters` of a node's `/status` on 127.0.0.1:`port`.
fn node_counters(port: u16) -> Option<Value> {
    let response = attohttpc::get(format!("http://127.0.0.1:{port}/status"))
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    if !response.is_success() {
        return None;
    }
    serde_json::from_str::<Value>(&response.text().ok()?)
        .ok()?
        .get("counters")
        .cloned()
}

/// `received 100, forwarded 98, dropped overload 2` from a node's counters.
fn summarize(counters: &Value) -> String {
    let n = |k: &str| counters.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!(
        "received {}, forwarded {}, delivered {}",
        n("received"),
        n("forwarded"),
        n("delivered")
    );
    if let Some(dropped) = counters.get("dropped").and_then(Value::as_object) {
        for (reason, count) in dropped {
            if count.as_u64().unwrap_or(0) > 0 {
                out.push_str(&format!(", dropped {reason} {count}"));
            }
        }
    }
    out
}

/// The last JSON line of loadgen's output as a [`Step`].
fn parse_step(rate: u32, text: &str) -> Option<Step> {
    let report: Value = text.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l.trim())
            .ok()
            .filter(Value::is_object)
    })?;
    let num = |k: &str| report.get(k).and_then(Value::as_f64);
    let latency = |k: &str| {
        report
            .get("latency_ms")
            .and_then(|l| l.get(k))
            .and_then(Value::as_f64)
            .or_else(|| num(&format!("{k}_ms")))
    };
    Some(Step {
        rate,
        sent: num("sent")? as u64,
        delivered: num("delivered")? as u64,
        p50_ms: latency("p50").unwrap_or(f64::NAN),
        p99_ms: latency("p99").unwrap_or(f64::NAN),
        throughput_pps: num("throughput_pps").unwrap_or(0.0),
    })
}

/// The highest offered rate that lost nothing.
fn highest_zero_loss(steps: &[Step]) -> Option<u32> {
    steps
        .iter()
        .filter(|s| s.sent > 0 && s.delivered >= s.sent)
        .map(|s| s.rate)
        .max()
}

fn report_json(steps: &[Step]) -> Value {
    json!({
        "highest_zero_loss_pps": highest_zero_loss(steps),
        "steps": steps.iter().map(|s| json!({
            "rate_pps": s.rate, "sent": s.sent, "delivered": s.delivered,
            "lost": s.sent.saturating_sub(s.delivered),
            "throughput_pps": s.throughput_pps, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
        })).collect::<Vec<_>>(),
    })
}

fn table(steps: &[Step]) -> String {
    use crate::table::{render, Align::Right};
    let rows: Vec<[String; 7]> = steps
        .iter()
        .map(|s| {
            [
                s.rate.to_string(),
                s.sent.to_string(),
                s.delivered.to_string(),
                s.sent.saturating_sub(s.delivered).to_string(),
                format!("{:.0}", s.throughput_pps),
                format!("{:.1}", s.p50_ms),
                format!("{:.1}", s.p99_ms),
            ]
        })
        .collect();
    let header = [
        "RATE/s",
        "SENT",
        "DELIVERED",
        "LOST",
        "THROUGHPUT/s",
        "P50 ms",
        "P99 ms",
    ];
    let mut out = render(&header, &[Right; 7], &rows);
    match highest_zero_loss(steps) {
        Some(rate) => out.push_str(&format!("highest rate with zero loss: {rate} packets/s\n")),
        None => out.push_str("no rate ran without loss\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loadgen_reports_and_finds_the_highest_zero_loss_rate() {
        let a = parse_step(
            5000,
            "noise\n{\"sent\":100,\"delivered\":100,\"throughput_pps\":4990.0,\"latency_ms\":{\"p50\":3.5,\"p99\":20.0}}\n",
        )
        .unwrap();
        assert_eq!(
            (a.sent, a.delivered, a.p50_ms, a.p99_ms),
            (100, 100, 3.5, 20.0)
        );
        let b = parse_step(9000, "{\"sent\":100,\"delivered\":99}").unwrap();
        let c = parse_step(7000, "{\"sent\":50,\"delivered\":50}").unwrap();
        assert!(parse_step(1, "no json").is_none());
        assert_eq!(highest_zero_loss(&[a.clone(), b.clone(), c]), Some(7000));
        assert_eq!(highest_zero_loss(&[b]), None);
        let t = table(&[a]);
        assert!(t.contains("highest rate with zero loss: 5000"), "{t}");
        let counters = serde_json::json!({"received": 5, "forwarded": 3, "delivered": 0,
            "dropped": {"overload": 2, "replay": 0}});
        assert_eq!(
            summarize(&counters),
            "received 5, forwarded 3, delivered 0, dropped overload 2"
        );
    }
}
