//! The report's data, which is also its JSON schema (`fog-compute/report/v1`):
//! a [`Report`] has a `before` and an `after` [`Side`] and a [`Delta`]; each
//! side carries the totals (`containers`, `memory_bytes`, `cpu_percent`,
//! `images_bytes`, `ports`, ...) and one [`ServiceRow`] per service. Live
//! figures are `null` in a static report. [`metrics`] lists every comparable
//! figure once, so the markdown and HTML tables, the delta and the budgets
//! all read the same numbers.

use std::collections::BTreeMap;

use serde::Serialize;

/// The `schema` value of the JSON output.
pub const SCHEMA: &str = "fog-compute/report/v1";

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// Whether the figures include live measurements.
    pub live: bool,
    /// How memory was counted in the live figures, e.g. "usage - total_inactive_file (cgroup v1)".
    pub memory_counting: Option<String>,
    pub before: Side,
    pub after: Side,
    pub delta: Delta,
    /// `--claims`: the design's figures beside the measured ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
    /// `--fail-on` budgets and whether each held.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetResult>,
}

/// One side (before or after) of the comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// The spec as given: `betanet`, `main:dev`, `a.yml,b.yml`.
    pub spec: String,
    /// A human name for it.
    pub label: String,
    pub files: Vec<String>,
    /// Services that start by default (no profile).
    pub service_count: usize,
    /// Containers those services run (replicas counted).
    pub containers: usize,
    /// Services behind a profile (not started by default, not counted above).
    pub optional_services: Vec<String>,
    /// Live: sum over services of the mean memory (bytes); `null` when static.
    pub memory_bytes: Option<f64>,
    /// Live: the largest per-sample total memory (bytes).
    pub memory_max_bytes: Option<f64>,
    /// Live: standard deviation of the per-sample total memory (bytes).
    pub memory_stddev_bytes: Option<f64>,
    /// Live: sum over services of the mean CPU (% of one core; may exceed 100).
    pub cpu_percent: Option<f64>,
    /// Live: the largest per-sample total CPU.
    pub cpu_max_percent: Option<f64>,
    /// Live: seconds from `up` until the last measured service was ready.
    pub time_to_healthy_s: Option<f64>,
    /// Live: samples taken (one per second).
    pub samples: Option<usize>,
    /// Live: the compose project the side ran as (removed afterwards).
    pub project: Option<String>,
    /// Sum of the sizes of the distinct images present in the local engine.
    pub images_bytes: Option<u64>,
    /// Images the side names that are not in the local engine.
    pub images_missing: Vec<String>,
    /// Published host ports (each port of a range counted).
    pub ports: usize,
    pub networks: usize,
    pub volumes: usize,
    pub declared: Declared,
    pub findings: Findings,
    /// Instances per image repository, most instances first.
    pub images: Vec<ImageRow>,
    /// Services with no live figures, and why (live reports only).
    pub not_measured: Vec<NotMeasured>,
    pub services: Vec<ServiceRow>,
}

/// Declared resources, replicas counted. Containers without a limit add nothing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Declared {
    pub memory_limit_bytes: u64,
    pub cpu_limit: f64,
    pub memory_reservation_bytes: u64,
    pub cpu_reservation: f64,
    /// Containers with no memory limit at all.
    pub containers_without_memory_limit: usize,
}

/// `cargo xtask check` findings of one side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub errors: usize,
    pub warnings: usize,
    /// Findings per rule id.
    pub by_rule: BTreeMap<String, usize>,
}

/// Instances of one image repository (`prom/prometheus`).
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub repository: String,
    pub instances: usize,
    pub services: Vec<String>,
    /// Instances of different services (not replicas or numbered
    /// siblings such as `mixnode-1..3`): duplicated infrastructure.
    pub duplicated: bool,
}

/// A service the live run could not measure.
#[derive(Debug, Clone, Serialize)]
pub struct NotMeasured {
    pub service: String,
    pub reason: String,
}

/// One service of one side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub image: Option<String>,
    /// Live: the image that ran (an offline build when the declared one is missing).
    pub measured_image: Option<String>,
    pub repository: Option<String>,
    pub containers: usize,
    pub ports: usize,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub memory_reservation_bytes: Option<u64>,
    pub cpu_reservation: Option<f64>,
    /// `static`, `measured` or `not-measured`.
    pub status: &'static str,
    /// Live: mean memory over the samples (bytes, all replicas).
    pub memory_bytes: Option<f64>,
    pub memory_max_bytes: Option<f64>,
    /// Live: mean CPU over the samples (%, all replicas).
    pub cpu_percent: Option<f64>,
    pub cpu_max_percent: Option<f64>,
    /// Live: seconds from `up` until it was ready.
    pub time_to_healthy_s: Option<f64>,
    pub samples: Option<usize>,
}

/// After minus before, with percentages of before.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    pub service_count: f64,
    pub containers: f64,
    pub memory_bytes: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub images_bytes: Option<f64>,
    pub ports: f64,
    pub networks: f64,
    pub volumes: f64,
    pub declared_memory_limit_bytes: f64,
    pub declared_cpu_limit: f64,
    pub check_errors: f64,
    /// Percentage change of every metric above, by metric key (`null`
    /// when before is 0 or a side has no figure).
    pub percent: BTreeMap<&'static str, Option<f64>>,
    /// Rules with findings before and none after.
    pub findings_fixed: Vec<String>,
    /// Rules with findings after and none before.
    pub findings_introduced: Vec<String>,
    pub services: Vec<ServiceDelta>,
}

/// One service name across both sides.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceDelta {
    pub name: String,
    pub containers_before: usize,
    pub containers_after: usize,
    pub containers: f64,
    pub memory_bytes: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// One claim of the design's savings table beside the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub claim: String,
    pub claimed_bytes: f64,
    pub measured_bytes: Option<f64>,
    /// How the measured figure was made, or why there is none.
    pub basis: String,
    /// `holds`, `overstated`, `understated` or `not measured`.
    pub verdict: String,
}

/// One `--fail-on` budget and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetResult {
    pub budget: String,
    pub metric: &'static str,
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub exceeded: bool,
    pub detail: String,
}

/// The unit of a metric, for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Percent,
    Cpus,
    Seconds,
}

/// One comparable figure: its key (used by `--fail-on` and `delta.percent`),
/// label, unit and the two values (`None`: not available on that side).
#[derive(Debug, Clone)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub before: Option<f64>,
    pub after: Option<f64>,
    /// Only meaningful with `--live`.
    pub live: bool,
}

impl Metric {
    pub fn delta(&self) -> Option<f64> {
        Some(self.after? - self.before?)
    }

    /// Change in percent of before; `None` when before is 0 or missing.
    pub fn percent(&self) -> Option<f64> {
        let before = self.before?;
        (before != 0.0).then(|| self.delta().map(|d| d / before * 100.0))?
    }
}

/// Every comparable figure of two sides, in table order.
pub fn metrics(before: &Side, after: &Side) -> Vec<Metric> {
    let count = |x: usize| Some(x as f64);
    let m = |key, label, unit, f: &dyn Fn(&Side) -> Option<f64>, live| Metric {
        key,
        label,
        unit,
        before: f(before),
        after: f(after),
        live,
    };
    vec![
        m(
            "services",
            "services",
            Unit::Count,
            &|s| count(s.service_count),
            false,
        ),
        m(
            "containers",
            "containers (replicas counted)",
            Unit::Count,
            &|s| count(s.containers),
            false,
        ),
        m(
            "ports",
            "published host ports",
            Unit::Count,
            &|s| count(s.ports),
            false,
        ),
        m(
            "networks",
            "networks",
            Unit::Count,
            &|s| count(s.networks),
            false,
        ),
        m(
            "volumes",
            "named volumes",
            Unit::Count,
            &|s| count(s.volumes),
            false,
        ),
        m(
            "images",
            "image size, local images",
            Unit::Bytes,
            &|s| s.images_bytes.map(|b| b as f64),
            false,
        ),
        m(
            "memory-limit",
            "declared memory limits",
            Unit::Bytes,
            &|s| Some(s.declared.memory_limit_bytes as f64),
            false,
        ),
        m(
            "cpu-limit",
            "declared CPU limits",
            Unit::Cpus,
            &|s| Some(s.declared.cpu_limit),
            false,
        ),
        m(
            "memory-reservation",
            "declared memory reservations",
            Unit::Bytes,
            &|s| Some(s.declared.memory_reservation_bytes as f64),
            false,
        ),
        m(
            "cpu-reservation",
            "declared CPU reservations",
            Unit::Cpus,
            &|s| Some(s.declared.cpu_reservation),
            false,
        ),
        m(
            "errors",
            "check errors",
            Unit::Count,
            &|s| count(s.findings.errors),
            false,
        ),
        m(
            "warnings",
            "check warnings",
            Unit::Count,
            &|s| count(s.findings.warnings),
            false,
        ),
        m(
            "memory",
            "memory, mean (measured services)",
            Unit::Bytes,
            &|s| s.memory_bytes,
            true,
        ),
        m(
            "memory-max",
            "memory, largest sample total",
            Unit::Bytes,
            &|s| s.memory_max_bytes,
            true,
        ),
        m(
            "cpu",
            "CPU, mean (measured services)",
            Unit::Percent,
            &|s| s.cpu_percent,
            true,
        ),
        m(
            "cpu-max",
            "CPU, largest sample total",
            Unit::Percent,
            &|s| s.cpu_max_percent,
            true,
        ),
        m(
            "time-to-healthy",
            "time to healthy",
            Unit::Seconds,
            &|s| s.time_to_healthy_s,
            true,
        ),
    ]
}

/// The delta of two sides.
pub fn delta(before: &Side, after: &Side) -> Delta {
    let all = metrics(before, after);
    let get = |key: &str| all.iter().find(|m| m.key == key).and_then(Metric::delta);
    let percent = all
        .iter()
        .filter(|m| m.before.is_some() || m.after.is_some())
        .map(|m| (m.key, m.percent()))
        .collect();
    let rules_before: Vec<&String> = before.findings.by_rule.keys().collect();
    let rules_after: Vec<&String> = after.findings.by_rule.keys().collect();
    let mut names: Vec<String> = before.services.iter().map(|s| s.name.clone()).collect();
    for s in &after.services {
        if !names.contains(&s.name) {
            names.push(s.name.clone());
        }
    }
    let services = names
        .into_iter()
        .map(|name| {
            let b = before.services.iter().find(|s| s.name == name);
            let a = after.services.iter().find(|s| s.name == name);
            let live = |f: fn(&ServiceRow) -> Option<f64>| {
                Some(a.and_then(f).unwrap_or(0.0) - b.and_then(f).unwrap_or(0.0))
                    .filter(|_| a.and_then(f).is_some() || b.and_then(f).is_some())
            };
            let containers_before = b.map_or(0, |s| s.containers);
            let containers_after = a.map_or(0, |s| s.containers);
            ServiceDelta {
                containers: containers_after as f64 - containers_before as f64,
                containers_before,
                containers_after,
                memory_bytes: live(|s| s.memory_bytes),
                cpu_percent: live(|s| s.cpu_percent),
                name,
            }
        })
        .collect();
    Delta {
        service_count: get("services").unwrap_or(0.0),
        containers: get("containers").unwrap_or(0.0),
        memory_bytes: get("memory"),
        cpu_percent: get("cpu"),
        images_bytes: get("images"),
        ports: get("ports").unwrap_or(0.0),
        networks: get("networks").unwrap_or(0.0),
        volumes: get("volumes").unwrap_or(0.0),
        declared_memory_limit_bytes: get("memory-limit").unwrap_or(0.0),
        declared_cpu_limit: get("cpu-limit").unwrap_or(0.0),
        check_errors: get("errors").unwrap_or(0.0),
        percent,
        findings_fixed: rules_before
            .iter()
            .filter(|r| !rules_after.contains(r))
            .map(|r| r.to_string())
            .collect(),
        findings_introduced: rules_after
            .iter()
            .filter(|r| !rules_before.contains(r))
            .map(|r| r.to_string())
            .collect(),
        services,
    }
}

/// Repositories of both sides in a stable order: most instances before, then after.
/// Rows are `(repository, before, after, duplicated on either side)`.
pub fn repositories(before: &Side, after: &Side) -> Vec<(String, usize, usize, bool)> {
    let mut out: Vec<(String, usize, usize, bool)> = Vec::new();
    for (side, is_after) in [(before, false), (after, true)] {
        for row in &side.images {
            let i = match out.iter().position(|r| r.0 == row.repository) {
                Some(i) => i,
                None => {
                    out.push((row.repository.clone(), 0, 0, false));
                    out.len() - 1
                }
            };
            if is_after {
                out[i].2 = row.instances;
            } else {
                out[i].1 = row.instances;
            }
            out[i].3 |= row.duplicated;
        }
    }
    out.sort_by(|a, b| (b.1.max(b.2)).cmp(&a.1.max(a.2)).then(a.0.cmp(&b.0)));
    out
}
