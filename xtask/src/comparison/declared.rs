//! The static half of a side: what the merged compose model declares.
//! Services that start by default and their containers (`deploy.replicas` or
//! `scale`), instances per image repository (so a second Prometheus stands
//! out), published ports, networks (the implicit `default` counted when a
//! service uses it), named volumes, memory and CPU limits and reservations
//! (`deploy.resources` or `mem_limit`/`cpus`/`mem_reservation`, times
//! replicas), image sizes of the images present in the local engine, and the
//! side's `cargo xtask check` findings per rule.

use std::collections::BTreeMap;

use serde_yaml::Value;
use xshell::Shell;

use super::model::{Declared, Findings, ImageRow, ServiceRow, Side};
use super::spec::Loaded;
use super::units::parse_ram;
use crate::compose::{types::scalar_string, Service};
use crate::lint::{self, Severity};
use crate::process::Runner;

/// Declared resources of one container of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub memory_limit: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub memory_reservation: Option<u64>,
    pub cpu_reservation: Option<f64>,
}

/// `deploy.resources` first, the service-level keys as the fallback.
pub fn resources(svc: &Service) -> Resources {
    let raw = &svc.raw;
    let res = raw.get("deploy").and_then(|d| d.get("resources"));
    let part = |kind: &str, key: &str| res.and_then(|r| r.get(kind)).and_then(|k| k.get(key));
    let ram = |v: Option<&Value>| v.map(scalar_string).and_then(|s| parse_ram(&s));
    let cpus = |v: Option<&Value>| {
        v.map(scalar_string)
            .and_then(|s| s.trim().parse::<f64>().ok())
    };
    Resources {
        memory_limit: ram(part("limits", "memory")).or_else(|| ram(raw.get("mem_limit"))),
        cpu_limit: cpus(part("limits", "cpus")).or_else(|| cpus(raw.get("cpus"))),
        memory_reservation: ram(part("reservations", "memory"))
            .or_else(|| ram(raw.get("mem_reservation"))),
        cpu_reservation: cpus(part("reservations", "cpus")),
    }
}

/// Containers a service runs: `deploy.replicas`, else `scale`, else 1.
pub fn replicas(svc: &Service) -> usize {
    let raw = &svc.raw;
    raw.get("deploy")
        .and_then(|d| d.get("replicas"))
        .or_else(|| raw.get("scale"))
        .map(scalar_string)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// `prom/prometheus:v2.53.2` -> `prom/prometheus` (the check's reading).
pub fn repository(image: &str) -> String {
    lint::image_repository(image).to_string()
}

/// Host ports a service publishes, each port of a range counted.
fn published_ports(svc: &Service) -> usize {
    svc.ports
        .iter()
        .map(|p| usize::from(p.target.end - p.target.start) + 1)
        .sum()
}

/// The static side of a loaded spec. `runner` asks the engine for image
/// sizes (no engine: every image counts as missing).
pub fn side(sh: &Shell, runner: &Runner, loaded: &Loaded) -> Side {
    let project = &loaded.project;
    let (running, optional): (Vec<&Service>, Vec<&Service>) = project
        .services()
        .iter()
        .partition(|s| s.profiles.is_empty());
    let mut side = Side {
        spec: loaded.spec.clone(),
        label: loaded.label.clone(),
        files: loaded.files.clone(),
        optional_services: optional.iter().map(|s| s.name.clone()).collect(),
        ..Side::default()
    };
    let mut repos: BTreeMap<String, ImageRow> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut declared = Declared::default();
    for svc in &running {
        let n = replicas(svc);
        let res = resources(svc);
        side.containers += n;
        if n > 0 {
            side.ports += published_ports(svc);
        }
        declared.memory_limit_bytes += res.memory_limit.unwrap_or(0) * n as u64;
        declared.cpu_limit += res.cpu_limit.unwrap_or(0.0) * n as f64;
        declared.memory_reservation_bytes += res.memory_reservation.unwrap_or(0) * n as u64;
        declared.cpu_reservation += res.cpu_reservation.unwrap_or(0.0) * n as f64;
        if res.memory_limit.is_none() {
            declared.containers_without_memory_limit += n;
        }
        let repo = svc.image.as_deref().map(repository);
        if let Some(repo) = &repo {
            let row = repos.entry(repo.clone()).or_insert_with(|| ImageRow {
                repository: repo.clone(),
                instances: 0,
                services: Vec::new(),
                duplicated: false,
            });
            row.instances += n;
            row.services.push(svc.name.clone());
            let group = lint::instance_group(svc).unwrap_or_else(|| svc.name.clone());
            let seen = groups.entry(repo.clone()).or_default();
            if !seen.contains(&group) {
                seen.push(group);
            }
            row.duplicated = seen.len() > 1;
        }
        side.services.push(ServiceRow {
            name: svc.name.clone(),
            image: svc.image.clone(),
            repository: repo,
            containers: n,
            ports: published_ports(svc),
            memory_limit_bytes: res.memory_limit,
            cpu_limit: res.cpu_limit,
            memory_reservation_bytes: res.memory_reservation,
            cpu_reservation: res.cpu_reservation,
            status: "static",
            ..ServiceRow::default()
        });
    }
    side.service_count = running.len();
    side.declared = declared;
    let uses_default = running.iter().any(|s| s.networks.is_empty());
    side.networks = project.network_names().len() + usize::from(uses_default);
    side.volumes = project.volume_names().len();
    let mut images: Vec<ImageRow> = repos.into_values().collect();
    images.sort_by(|a, b| {
        b.instances
            .cmp(&a.instances)
            .then(a.repository.cmp(&b.repository))
    });
    side.images = images;
    let mut distinct: Vec<&str> = running.iter().filter_map(|s| s.image.as_deref()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let mut total = None;
    for image in distinct {
        match image_size(sh, runner, image) {
            Some(size) => *total.get_or_insert(0) += size,
            None => side.images_missing.push(image.to_string()),
        }
    }
    side.images_bytes = total;
    side.findings = findings(loaded);
    side
}

fn image_size(_sh: &Shell, runner: &Runner, image: &str) -> Option<u64> {
    crate::docker::image_size(runner, image)
}

/// The side's check findings, counted per rule.
fn findings(loaded: &Loaded) -> Findings {
    let reports = lint::check_all(std::slice::from_ref(&loaded.selection));
    let mut out = Findings::default();
    for f in reports.iter().flat_map(|r| &r.findings) {
        match f.severity {
            Severity::Error => out.errors += 1,
            Severity::Warning => out.warnings += 1,
        }
        *out.by_rule.entry(f.rule.to_string()).or_default() += 1;
    }
    out
}

/// A path relative to the repository root (or the current directory) when below it.
pub fn short_path(path: &std::path::Path) -> String {
    let root = crate::project_root();
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&root)
        .or_else(|_| path.strip_prefix(&cwd))
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{EnvSource, Project};

    fn project(yaml: &str) -> Project {
        let dir = std::env::temp_dir().join(format!("fogrep-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("c{}.yml", yaml.len()));
        std::fs::write(&file, yaml).unwrap();
        let p = Project::load(std::slice::from_ref(&file), &EnvSource::empty()).unwrap();
        let _ = std::fs::remove_file(file);
        p
    }

    #[test]
    fn limits_replicas_and_fallback_keys() {
        let p = project(
            "services:\n  a:\n    image: x:1\n    deploy:\n      replicas: 3\n      resources:\n        limits: {memory: 512M, cpus: '0.5'}\n        reservations: {memory: 128m, cpus: '0.25'}\n  b:\n    image: y:1\n    mem_limit: 1g\n    cpus: 2\n    scale: 2\n  c:\n    image: z:1\n",
        );
        let a = p.service("a").unwrap();
        assert_eq!(replicas(a), 3);
        assert_eq!(
            resources(a),
            Resources {
                memory_limit: Some(512 << 20),
                cpu_limit: Some(0.5),
                memory_reservation: Some(128 << 20),
                cpu_reservation: Some(0.25),
            }
        );
        let b = p.service("b").unwrap();
        assert_eq!((replicas(b), resources(b).memory_limit), (2, Some(1 << 30)));
        assert_eq!(resources(b).cpu_limit, Some(2.0));
        let c = p.service("c").unwrap();
        assert_eq!((replicas(c), resources(c)), (1, Resources::default()));
    }
}
