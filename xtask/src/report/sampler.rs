//! Sampling the engine's stats: one `docker stats --format '{{json .}}'`
//! stream for the run's containers, read on a thread that keeps the latest
//! figures of each container; the caller takes a snapshot once a second.
//! Memory is `docker stats`' MEM USAGE, which the CLI computes as usage minus
//! `total_inactive_file` (cgroup v1) or `inactive_file` (cgroup v2), the
//! working set, not raw usage; CPU is its CPU % (Δcontainer / Δsystem ×
//! online CPUs × 100, so it can exceed 100). [`summarise`] turns snapshots
//! into per-service mean/max and per-sample totals with their spread.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::units::{parse_docker_size, parse_percent};
use crate::process::{Cmd, Guard, Io, Runner};

/// Memory (bytes) and CPU (%) of one container at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub memory: f64,
    pub cpu: f64,
}

/// One `docker stats` JSON line: the container name and its reading.
pub fn parse_line(line: &str) -> Option<(String, Reading)> {
    let start = line.find('{')?;
    let end = line.rfind('}')?;
    let v: serde_json::Value = serde_json::from_str(line.get(start..=end)?).ok()?;
    let name = v["Name"].as_str()?.to_string();
    let used = v["MemUsage"].as_str()?.split('/').next()?;
    Some((
        name,
        Reading {
            memory: parse_docker_size(used)?,
            cpu: parse_percent(v["CPUPerc"].as_str()?)?,
        },
    ))
}

/// Latest reading per container and how many frames each has had.
type Latest = Arc<Mutex<HashMap<String, (Reading, u64)>>>;

/// A running `docker stats` stream; killed on drop.
pub struct Stream {
    _child: Guard,
    latest: Latest,
}

impl Stream {
    pub fn start(containers: &[String], runner: &Runner) -> Result<Stream> {
        let mut cmd = Cmd::new("docker");
        cmd.args(["stats", "--format", "{{json .}}"])
            .args(containers);
        let mut child = runner
            .spawn(cmd.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Null))
            .context("cannot run `docker stats`")?;
        let stdout = child.stdout.take().context("docker stats has no stdout")?;
        let latest: Latest = Arc::default();
        let sink = Arc::clone(&latest);
        std::thread::spawn(move || {
            // Frames are separated by terminal control codes, not always by newlines.
            for chunk in BufReader::new(stdout).split(b'\n') {
                let Ok(chunk) = chunk else { break };
                let text = String::from_utf8_lossy(&chunk);
                for part in text.split('\x1b') {
                    if let Some((name, reading)) = parse_line(part) {
                        let mut map = sink.lock().unwrap_or_else(|e| e.into_inner());
                        let entry = map.entry(name).or_insert((reading, 0));
                        *entry = (reading, entry.1 + 1);
                    }
                }
            }
        });
        Ok(Stream {
            _child: child.guard(),
            latest,
        })
    }

    /// Wait until every container has had `frames` frames (the first frame's
    /// CPU has no previous sample), at most `limit`; `stop` aborts the wait.
    pub fn warm_up(
        &self,
        containers: &[String],
        frames: u64,
        limit: Duration,
        stop: &dyn Fn() -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !stop() {
            let map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            if containers
                .iter()
                .all(|c| map.get(c).is_some_and(|(_, n)| *n >= frames))
            {
                return;
            }
            drop(map);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The latest reading of every container seen so far.
    pub fn snapshot(&self) -> HashMap<String, Reading> {
        let map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, (r, _))| (k.clone(), *r)).collect()
    }
}

/// Figures of one service over the samples (replicas summed per sample).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceFigures {
    pub memory_mean: f64,
    pub memory_max: f64,
    pub cpu_mean: f64,
    pub cpu_max: f64,
    pub samples: usize,
}

/// Figures of a whole side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub services: BTreeMap<String, ServiceFigures>,
    pub memory_mean: f64,
    pub memory_max: f64,
    pub memory_stddev: f64,
    pub cpu_mean: f64,
    pub cpu_max: f64,
    pub samples: usize,
}

/// Per-service and total figures from `snapshots` (container -> reading),
/// with `owner` mapping each container to its service.
pub fn summarise(
    snapshots: &[HashMap<String, Reading>],
    owner: &HashMap<String, String>,
) -> Summary {
    let mut per_service: BTreeMap<String, Vec<Reading>> = BTreeMap::new();
    let mut totals: Vec<Reading> = Vec::new();
    for snap in snapshots {
        let mut by_service: BTreeMap<&str, Reading> = BTreeMap::new();
        for (container, reading) in snap {
            let Some(service) = owner.get(container) else {
                continue;
            };
            let e = by_service.entry(service).or_insert(Reading {
                memory: 0.0,
                cpu: 0.0,
            });
            e.memory += reading.memory;
            e.cpu += reading.cpu;
        }
        let total = by_service.values().fold(
            Reading {
                memory: 0.0,
                cpu: 0.0,
            },
            |a, r| Reading {
                memory: a.memory + r.memory,
                cpu: a.cpu + r.cpu,
            },
        );
        for (service, r) in by_service {
            per_service.entry(service.to_string()).or_default().push(r);
        }
        totals.push(total);
    }
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let max = |xs: &[f64]| xs.iter().copied().fold(0.0, f64::max);
    let services: BTreeMap<String, ServiceFigures> = per_service
        .into_iter()
        .map(|(name, rs)| {
            let mem: Vec<f64> = rs.iter().map(|r| r.memory).collect();
            let cpu: Vec<f64> = rs.iter().map(|r| r.cpu).collect();
            // Rounding can put the mean of equal readings one ulp above them.
            let fig = ServiceFigures {
                memory_mean: mean(&mem).min(max(&mem)),
                memory_max: max(&mem),
                cpu_mean: mean(&cpu).min(max(&cpu)),
                cpu_max: max(&cpu),
                samples: rs.len(),
            };
            (name, fig)
        })
        .collect();
    let mem: Vec<f64> = totals.iter().map(|r| r.memory).collect();
    let cpu: Vec<f64> = totals.iter().map(|r| r.cpu).collect();
    let m = mean(&mem);
    let variance = mean(&mem.iter().map(|x| (x - m).powi(2)).collect::<Vec<_>>());
    Summary {
        memory_mean: services.values().map(|s| s.memory_mean).sum(),
        cpu_mean: services.values().map(|s| s.cpu_mean).sum(),
        services,
        memory_max: max(&mem),
        memory_stddev: variance.sqrt(),
        cpu_max: max(&cpu),
        samples: snapshots.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_of_equal_readings_never_exceeds_their_max() {
        // (0.1 + 0.1 + 0.1) / 3 is 0.10000000000000002 in f64.
        let reading = Reading {
            memory: 0.1,
            cpu: 0.1,
        };
        let snaps: Vec<HashMap<String, Reading>> = (0..3)
            .map(|_| HashMap::from([("c".to_string(), reading)]))
            .collect();
        let owner = HashMap::from([("c".to_string(), "s".to_string())]);
        let fig = &summarise(&snaps, &owner).services["s"];
        assert!(
            fig.memory_mean <= fig.memory_max,
            "{} > {}",
            fig.memory_mean,
            fig.memory_max
        );
        assert!(fig.cpu_mean <= fig.cpu_max);
    }

    #[test]
    fn reads_stream_lines_with_control_codes() {
        let line = "\x1b[H{\"BlockIO\":\"0B / 0B\",\"CPUPerc\":\"1.50%\",\"Container\":\"p-db-1\",\"MemUsage\":\"20MiB / 23.54GiB\",\"Name\":\"p-db-1\"} \x1b[K";
        let (name, r) = parse_line(line.split('\x1b').nth(1).unwrap()).unwrap();
        assert_eq!(name, "p-db-1");
        assert_eq!(
            r,
            Reading {
                memory: 20.0 * 1048576.0,
                cpu: 1.5
            }
        );
        assert!(parse_line("[K").is_none());
        assert!(parse_line("{\"Name\":\"x\",\"MemUsage\":\"--\",\"CPUPerc\":\"--\"}").is_none());
        assert!(parse_line("{truncated").is_none());
    }

    #[test]
    fn sums_replicas_and_computes_spread() {
        let owner: HashMap<String, String> = [("a-1", "a"), ("a-2", "a"), ("b-1", "b")]
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect();
        let r = |memory, cpu| Reading { memory, cpu };
        let snaps: Vec<HashMap<String, Reading>> = vec![
            [
                ("a-1".into(), r(10.0, 1.0)),
                ("a-2".into(), r(10.0, 1.0)),
                ("b-1".into(), r(5.0, 0.0)),
            ]
            .into(),
            [
                ("a-1".into(), r(20.0, 3.0)),
                ("a-2".into(), r(10.0, 1.0)),
                ("b-1".into(), r(5.0, 2.0)),
            ]
            .into(),
            [("stray".into(), r(999.0, 99.0))].into(),
        ];
        let s = summarise(&snaps[..2], &owner);
        assert_eq!(s.samples, 2);
        assert_eq!(s.services["a"].memory_mean, 25.0);
        assert_eq!(s.services["a"].memory_max, 30.0);
        assert_eq!(s.services["a"].cpu_mean, 3.0);
        assert_eq!(s.services["b"].cpu_max, 2.0);
        assert_eq!(s.memory_mean, 30.0);
        assert_eq!(s.memory_max, 35.0);
        assert_eq!(s.memory_stddev, 5.0);
        assert_eq!(s.cpu_max, 6.0);
        let stray = summarise(&snaps[2..], &owner);
        assert!(stray.services.is_empty());
        assert_eq!(stray.memory_max, 0.0);
    }
}
